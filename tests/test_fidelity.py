"""The config keys of dfsbir's divergences from the public DF-SBIR release (docs/methods.md,
"Differences from the release"): each setting computes what it claims, and the ``paper`` profile
resolves to the release's values while the other profiles keep dfbench's (hash-neutral) defaults."""

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dfbench.train import terms as T
from dfbench.api.errors import ConfigError
from dfbench.train.models import ConvTransposeEstimator, Estimator, build_classifier
from dfbench.train.students import Students
from dfbench.api.teachers import TeacherSet

REPO = Path(__file__).resolve().parent.parent


def _teachers(num_classes=5, feature_dim=8, seed=0):
    torch.manual_seed(seed)
    unified = build_classifier("cnn", num_classes, image_size=16, width=4, feature_dim=feature_dim)
    with torch.no_grad():
        unified.head.bias.copy_(torch.linspace(-2.0, 2.0, num_classes))  # a bias that matters
    return TeacherSet({"unified": unified.eval()})


def _ctx(teachers, embedding_layer=True, feature_dim=8, params=None):
    students = {"arch": "cnn", "width": 4, "feature_dim": feature_dim, "embedding_layer": embedding_layer}
    return SimpleNamespace(config={"students": students}, teachers=teachers, image_size=16, device="cpu", params=params or {})


# 1. the entropy term's logarithm -------------------------------------------------------------


_LOGITS = torch.tensor([[3.0, 0.0, 1.0], [0.5, 2.0, 0.0], [3.0, 0.2, 0.1]])


class _FixedTeacher(torch.nn.Module):
    """A teacher whose features are given logits and whose head is the identity."""

    feature_dim = 3

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Identity()

    def features(self, x):
        return _LOGITS


def _entropy_state(log_base):
    images = {"photo": torch.zeros(3, 3, 16, 16)}
    return T.SynthesisState(images, TeacherSet({"photo": _FixedTeacher()}), "independent", entropy_log_base=log_base)


def test_entropy_in_log10_is_the_natural_one_over_ln10():
    natural = T.entropy(_entropy_state("e")).item()
    p = F.softmax(_LOGITS, 1).mean(0)
    assert natural == pytest.approx((p * p.log()).sum().item(), rel=1e-6)
    assert T.entropy(_entropy_state(10)).item() == pytest.approx(natural / math.log(10), rel=1e-6)
    assert T.entropy(_entropy_state(10)).item() == pytest.approx((p * torch.log10(p)).sum().item(), rel=1e-6)


def test_strategies_pass_the_methods_entropy_log_base_to_the_terms():
    from dfbench.api.inversion import InversionStrategy

    assert InversionStrategy(SimpleNamespace(params={}), {}, {}, "unified").term_inputs == {"entropy_log_base": "e"}
    strategy = InversionStrategy(SimpleNamespace(params={"entropy_log_base": 10}), {}, {}, "unified")
    assert strategy.term_inputs == {"entropy_log_base": 10}
    state = T.SynthesisState({}, None, "unified", **strategy.term_inputs)
    assert state.entropy_log_base == 10.0


# 2. the students' class logits: cosine or the teacher's linear head ----------------------------


def test_linear_head_is_the_teachers_fc_with_its_bias_on_the_raw_embedding():
    teachers = _teachers()
    head = teachers["unified"].head
    emb = torch.randn(6, 8) * 3
    linear = Students(_ctx(teachers), "unified", head="linear")
    cosine = Students(_ctx(teachers), "unified", head="cosine", scale=32.0)
    for m in ("photo", "sketch"):
        got = linear.class_logits_from_embedding(emb, m)
        assert torch.allclose(got, emb @ head.weight.t() + head.bias, atol=1e-5)
        # the bias is the teacher's, not zero
        assert torch.allclose(got - emb @ head.weight.t(), head.bias.expand(6, -1), atol=1e-5)
        expected = 32.0 * F.normalize(emb, dim=1) @ F.normalize(head.weight, dim=1).t()
        assert torch.allclose(cosine.class_logits_from_embedding(emb, m), expected, atol=1e-5)
        # the proxy readout stays the scaled cosines whatever the head
        assert torch.allclose(linear.cosine_logits(emb, m), expected, atol=1e-5)
    with pytest.raises(ConfigError, match="student head"):
        Students(_ctx(teachers), "unified", head="softmax")


def test_adversarial_term_goes_through_the_students_head():
    teachers = _teachers()
    images = {m: torch.randn(4, 3, 16, 16) for m in ("photo", "sketch")}
    for head in ("cosine", "linear"):
        students = Students(_ctx(teachers), "unified", head=head).eval()
        state = T.SynthesisState(images, teachers, "unified", students=students)
        with torch.no_grad():
            expected = -sum(
                F.cross_entropy(students.class_logits_from_embedding(students(images[m], m), m), state.labels(m))
                for m in ("photo", "sketch")
            )
            assert T.adversarial(state).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_loop_builds_students_with_params_student_head():
    from dfbench.train.engine import DataFreeOptions

    assert DataFreeOptions().student_head == "cosine"
    assert DataFreeOptions.from_data({"student_head": "linear"}, "params").student_head == "linear"
    with pytest.raises(ConfigError, match="student_head"):
        DataFreeOptions.from_data({"student_head": "fc"}, "params")
    with pytest.raises(ConfigError, match="entropy_log_base"):
        DataFreeOptions.from_data({"entropy_log_base": 2}, "params")


# 3. Proxy-Anchor: one loss over both modalities, or one per modality ---------------------------


def test_per_modality_proxy_anchor_is_the_sum_of_two_calls():
    from dfbench_alignment.proxy_anchor import ProxyAnchor, ProxyAnchorOptions, proxy_anchor_loss

    torch.manual_seed(1)
    proxies = torch.randn(4, 6)
    students = SimpleNamespace(variant="unified", proxies=lambda m: proxies)
    e_p, e_s = torch.randn(5, 6), torch.randn(5, 6)
    l_p, l_s = torch.tensor([0, 1, 1, 2, 0]), torch.tensor([3, 3, 1, 2, 0])
    opts = lambda **kw: ProxyAnchorOptions.from_data({"margin": 0.1, "alpha": 32.0, **kw}, "params.alignment")  # noqa: E731
    per = ProxyAnchor(None, opts(reduction="per-modality"), students)(e_p, e_s, l_p, l_s)
    joint = ProxyAnchor(None, opts(), students)(e_p, e_s, l_p, l_s)
    two = proxy_anchor_loss(e_p, l_p, proxies, 0.1, 32.0) + proxy_anchor_loss(e_s, l_s, proxies, 0.1, 32.0)
    one = proxy_anchor_loss(torch.cat([e_p, e_s]), torch.cat([l_p, l_s]), proxies, 0.1, 32.0)
    assert per.item() == pytest.approx(two.item(), rel=1e-6)
    assert joint.item() == pytest.approx(one.item(), rel=1e-6)
    assert abs(per.item() - joint.item()) > 1e-3  # the two reductions really differ
    assert ProxyAnchorOptions().reduction == "joint"


# 4. the students' embedding layer --------------------------------------------------------------


@pytest.mark.parametrize("embedding_layer", [True, False])
def test_embedding_layer_and_init_from_teachers(embedding_layer):
    teachers = _teachers(feature_dim=8)
    students = Students(_ctx(teachers, embedding_layer=embedding_layer), "unified", init_from_teachers=True).eval()
    x = torch.randn(3, 3, 16, 16)
    for m in ("photo", "sketch"):
        enc = students.encoders[m]
        assert (enc.embed is not None) == embedding_layer
        emb = students(x, m)
        assert emb.shape == (3, 8)  # the teacher's feature size, with or without the layer
        with torch.no_grad():  # identity layer (or none): the students start as the teacher's features
            assert torch.allclose(emb, teachers["unified"].features(x), atol=1e-5)
    if not embedding_layer:
        n_layer = sum(p.numel() for p in Students(_ctx(teachers), "unified").parameters())
        assert sum(p.numel() for p in students.parameters()) == n_layer - 2 * (8 * 8 + 8)


def test_no_embedding_layer_needs_the_teachers_feature_size():
    teachers = _teachers(feature_dim=8)
    students = Students(_ctx(teachers, embedding_layer=False, feature_dim=8), "unified")
    assert students(torch.randn(2, 3, 16, 16), "photo").shape == (2, 8)
    with pytest.raises(ConfigError, match="embedding_layer"):
        Students(_ctx(teachers, embedding_layer=False, feature_dim=12), "unified")
    # with the layer any backbone size maps to the teachers' feature size
    assert Students(_ctx(teachers, feature_dim=12), "unified")(torch.randn(2, 3, 16, 16), "photo").shape == (2, 8)


# 5. estimators: architecture and sketch channels -----------------------------------------------


@pytest.mark.parametrize("size", [8, 32, 64])
def test_convtranspose_estimator_shape_range_and_structure(size):
    torch.manual_seed(0)
    g = ConvTransposeEstimator(z_dim=16, image_size=size, channels=3, width=4)
    x = g(torch.randn(5, 16) * 10)
    assert x.shape == (5, 3, size, size)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0
    convs = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert all(isinstance(m, torch.nn.ConvTranspose2d) for m in convs)
    assert not any(isinstance(m, (torch.nn.Upsample, torch.nn.Conv2d)) for m in g.modules())
    assert convs[0].kernel_size == (4, 4) and convs[0].in_channels == 16  # z projected to 4x4
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs[1:])
    assert convs[-2].out_channels == 4  # the last hidden layer has ngf channels
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) == len(convs) - 1
    assert isinstance(list(g.modules())[-1], torch.nn.Tanh)


def test_convtranspose_estimator_reaches_224_and_refuses_odd_sizes():
    g = ConvTransposeEstimator(z_dim=8, image_size=224, channels=3, width=2)
    assert g.init_size == 7 and g(torch.randn(2, 8)).shape == (2, 3, 224, 224)
    with pytest.raises(ConfigError, match="cannot be reached"):
        ConvTransposeEstimator(z_dim=8, image_size=36 * 3, width=2)


def _paired(arch, sketch_channels, size=32, **extra):
    from dfbench_inversions.estimators import EstimatorOptions, PairedEstimators

    options = EstimatorOptions.from_data({"arch": arch, "sketch_channels": sketch_channels, "z_dim": 16, "width": 4, **extra}, "params.inversion")
    ctx = SimpleNamespace(image_size=size, device="cpu", perf=None, teachers=None, params={}, num_classes=4,
                          rng=lambda name: torch.Generator().manual_seed(0))
    return PairedEstimators(ctx, options, {"one_hot": 1.0}, "unified")


@pytest.mark.parametrize("arch", ["upsample", "convtranspose"])
def test_sketch_channels(arch):
    torch.manual_seed(0)
    grey = _paired(arch, 1).sample(4)
    assert grey["sketch"].shape == (4, 3, 32, 32)
    assert torch.equal(grey["sketch"][:, 0], grey["sketch"][:, 1]) and torch.equal(grey["sketch"][:, 0], grey["sketch"][:, 2])
    colour = _paired(arch, 3).sample(4)
    assert colour["sketch"].shape == (4, 3, 32, 32)
    s = colour["sketch"]
    assert not torch.allclose(s[:, 0], s[:, 1]) and not torch.allclose(s[:, 1], s[:, 2]) and not torch.allclose(s[:, 0], s[:, 2])
    expected = ConvTransposeEstimator if arch == "convtranspose" else Estimator
    assert all(type(g) is expected for g in _paired(arch, 3).estimators.values())


def test_estimator_options_refuse_other_values():
    from dfbench_inversions.estimators import EstimatorOptions

    with pytest.raises(ConfigError, match="sketch_channels"):
        EstimatorOptions.from_data({"sketch_channels": 2}, "params.inversion")
    with pytest.raises(ConfigError, match="arch"):
        EstimatorOptions.from_data({"arch": "dcgan"}, "params.inversion")


# 6 and the profiles -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dfsbir", "dfsbir-plus"])
def test_paper_profile_resolves_to_the_release(method):
    import yaml

    proc = subprocess.run(
        [sys.executable, "-m", "dfbench", "run", "--method", method, "--profile", "paper", "--print-config"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(proc.stdout)
    p = cfg["params"]
    assert p["entropy_log_base"] == 10
    assert p["student_head"] == "linear"
    assert p["alignment"]["reduction"] == "per-modality"
    assert cfg["students"]["embedding_layer"] is False
    inv = p["inversion"]
    assert (inv["arch"], inv["width"], inv["sketch_channels"]) == ("convtranspose", 224, 3)
    assert cfg["teachers"]["modality_arch"] == cfg["teachers"]["arch"] == "resnet34"


@pytest.mark.parametrize("method", ["dfsbir", "dfsbir-plus", "dafl"])
@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_other_profiles_keep_todays_behaviour_and_hash(method, profile):
    from dfbench.app.config import hashed_view, resolve
    from dfbench.api.plugins import registry

    cls = registry("methods").load(method)
    cfg = resolve(method=method, dataset="shapes", profile=profile, seed=0, device="cpu",
                  method_profiles=cls.profiles, method_cls=cls)
    p = cfg["params"]
    assert p["entropy_log_base"] == "e" and p["student_head"] == "cosine"
    assert cfg["students"]["embedding_layer"] is True
    assert "reduction" not in p.get("alignment", {}) or p["alignment"]["reduction"] == "joint"
    for key in ("arch", "sketch_channels"):
        assert key not in p.get("inversion", {})
    assert cfg["teachers"]["modality_arch"] == "cnn" and cfg["teachers"]["modality_width"] == 8
    view = hashed_view(cfg)  # at today's values the new keys stay out of the hash (records keep their ids)
    assert "entropy_log_base" not in view["params"] and "student_head" not in view["params"]
    assert "embedding_layer" not in view["students"]


def test_conditional_estimators_give_both_sides_of_a_pair_one_balanced_class():
    """params.inversion.conditional: the noise carries a one-hot class (balanced over the batch),
    both estimators receive the same input, and the class labels the pair."""
    strategy = _paired("upsample", 1, conditional=True)
    z, y = strategy.noise(8)
    assert z.shape == (8, 16 + 4) and torch.equal(z[:, 16:].argmax(1), y)
    assert sorted(torch.bincount(y, minlength=4).tolist()) == [2, 2, 2, 2]
    assert strategy.estimators["photo"](z).shape == (8, 3, 32, 32)
    plain = _paired("upsample", 1)
    z, y = plain.noise(8)
    assert z.shape == (8, 16) and y is None
