"""The ``datafree`` plugin: eight data-free distillation methods end to end (smoke profile, tiny
data), and the parts they add: the ``pixels`` and ``generators`` strategies, pairing by label,
the contrastive term, moving-average BatchNorm statistics and generator re-initialisation."""

import json
import math
import subprocess
import sys
from types import SimpleNamespace

from dfbench.api.rng import Streams

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import dfbench.app.cli
from dfbench.train import terms as T
from dfbench.api.datasets import MODALITIES
from dfbench.api.options import component_options
from dfbench.train.models import build_classifier, freeze
from dfbench.api.perf import Perf
from dfbench.app.records import METRIC_KEYS
from dfbench.api.teachers import TeacherSet
from dfbench.api.modalities import DEFAULT_PAIR
from dfbench_inversions.common import EmaBatchNormStatsHooks, jitter_flip, pair_by_label, paired_batch, random_resized_crop, sample_targets
from dfbench_inversions.generators import ModalityGenerators
from dfbench_inversions.pixels import PixelInversion
from dfbench_datafree.plugin import METHODS

NAMES = sorted(METHODS)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these tiny models run faster without thread barriers, and the file
    stays well under its time budget on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- end to end ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_method_smoke_run(tmp_path, name):
    argv = [
        "run", "--quiet", "--results", str(tmp_path), "--method", name, "--profile", "smoke",
        "--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12",
    ]
    res = CliRunner().invoke(dfbench.app.cli.cli, argv)
    assert res.exit_code == 0, res.output
    [path] = sorted((tmp_path / "shapes" / name).glob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed"
    assert set(rec["metrics"]) == set(METRIC_KEYS)
    assert all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in rec["metrics"].values()), rec["metrics"]
    params = rec["config"]["params"]
    assert params["variant"] == "independent" and params["alignment"]["loss"] == "proxy-anchor"
    assert set(rec["teachers"]) == {"photo", "sketch"}
    curves = (path.parent / rec["run_id"] / "curves.csv").read_text().splitlines()
    header = curves[0].split(",")
    for term in params["weights"]:
        assert f"term/{term}" in header, (term, header)
    assert len(curves) > 1


def test_descriptions_name_the_paper_and_plugin_does_not_import_torch():
    for name, (_, description) in METHODS.items():
        assert any(str(year) in description for year in (2019, 2020, 2021, 2022)), name
        assert "here" in description  # says how it is adapted
    code = "import sys, dfbench_datafree.plugin; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- a tiny context for the strategies ---------------------------------------------------------

C, SIZE = 4, 16


def _ctx(seed=0):
    torch.manual_seed(seed)
    models = {}
    for m in MODALITIES:
        clf = build_classifier("cnn", C, image_size=SIZE, width=4, feature_dim=8)
        # BatchNorm statistics of "data" that noise does not match: smooth, bright images
        for layer in clf.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.momentum = None  # cumulative average
        clf.train()
        with torch.no_grad():
            for _ in range(4):
                coarse = torch.rand(64, 3, 4, 4) * 0.8 - 0.1
                clf(nn.functional.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False))
        models[m] = freeze(clf)
    streams = Streams(seed)
    return SimpleNamespace(teachers=TeacherSet(models), device=torch.device("cpu"), seed=seed, image_size=SIZE, num_classes=C,
                           perf=Perf(), rng=streams.generator)


def _pixels(ctx, weights, **options):
    return PixelInversion(ctx, component_options(PixelInversion, options, "strategy", "params.inversion"), weights, "independent")


def _generators(ctx, weights, **options):
    return ModalityGenerators(
        ctx, component_options(ModalityGenerators, {"z_dim": 8, "width": 4, "batch_size": 8, **options}, "strategy", "params.inversion"), weights, "independent"
    )


def test_pixels_reduce_the_bn_loss_without_targets():
    ctx = _ctx()
    # the Meta-Data use: BatchNorm statistics only, no class targets (teacher argmax labels)
    first = _pixels(ctx, {"bn": 1.0}, targets="none", steps=1, batch_size=16, jitter=0, flip=False, optimizer={"lr": 0.05})
    first.synthesize(None)
    many = _pixels(ctx, {"bn": 1.0}, targets="none", steps=40, batch_size=16, jitter=0, flip=False, optimizer={"lr": 0.05})
    batch = many.synthesize(None)
    assert many.last_parts["bn"].item() < 0.7 * first.last_parts["bn"].item()
    assert batch.images["photo"].shape == batch.images["sketch"].shape == (16, 3, SIZE, SIZE)
    assert batch.images["photo"].abs().max() <= 1.0
    assert torch.equal(batch.images["sketch"][:, 0], batch.images["sketch"][:, 1])  # grey sketches
    teacher = ctx.teachers["photo"]
    with torch.no_grad():
        assert torch.equal(batch.labels["photo"], teacher(batch.images["photo"]).argmax(1))


@pytest.mark.parametrize("kind", ["pixels", "generators", "conditional"])
def test_class_targets_are_shared_by_both_modalities(kind):
    ctx = _ctx()
    weights = {"one_hot": 1.0, "bn": 1.0}
    if kind == "pixels":
        strategy = _pixels(ctx, weights, targets="balanced", steps=2, batch_size=8)
    else:
        strategy = _generators(ctx, weights, targets="balanced", steps=2, learnable_z=True, conditional=kind == "conditional")
    batch = strategy.synthesize(None)
    assert torch.equal(batch.labels["photo"], batch.labels["sketch"])
    assert torch.bincount(batch.labels["photo"], minlength=C).tolist() == [2, 2, 2, 2]  # balanced
    if kind == "conditional":
        assert strategy.generators["photo"].fc.in_features == 8 + C


def test_conditional_without_targets_is_a_config_error():
    from dfbench.api.errors import ConfigError

    with pytest.raises(ConfigError, match="needs class targets"):
        _generators(_ctx(), {"one_hot": 1.0}, conditional=True)


def test_sample_targets():
    gen = torch.Generator().manual_seed(0)
    y = sample_targets(10, 4, "balanced", gen)
    assert sorted(torch.bincount(y, minlength=4).tolist()) == [2, 2, 3, 3]
    assert sample_targets(10, 4, "none", gen) is None
    assert sample_targets(50, 4, "random", gen).max() < 4


# -- pairing by teacher argmax -----------------------------------------------------------------

def test_argmax_pairing_pairs_equal_labels():
    photo = torch.tensor([0, 1, 2, 1, 3, 1])
    sketch = torch.tensor([1, 0, 1, 2, 4, 4])
    idx, matched = pair_by_label(photo, sketch, 5)
    assert matched.tolist() == [True, True, True, True, False, True]
    assert torch.equal(sketch[idx][matched], photo[matched])
    # photos of class 1 (three) cycle through the two class-1 sketches: both are used
    assert set(idx[photo == 1].tolist()) == {0, 2}
    batch, agree = paired_batch(
        DEFAULT_PAIR, {"photo": torch.arange(6.0)[:, None], "sketch": torch.arange(6.0)[:, None] + 10}, {"photo": photo, "sketch": sketch}, num_classes=5
    )
    assert agree.item() == pytest.approx(5 / 6)
    assert torch.equal(batch.images["sketch"][:, 0] - 10, idx.float())  # images follow their labels


def test_generators_without_targets_pair_by_argmax():
    ctx = _ctx()
    strategy = _generators(ctx, {"one_hot": 1.0, "entropy": 5.0}, batch_size=32, samples=2)
    batch = strategy.synthesize(None)
    assert len(batch) == 64
    photo_classes = set(batch.labels["photo"].tolist())
    sketch_classes = set(batch.labels["sketch"].tolist())
    for p, s in zip(batch.labels["photo"].tolist(), batch.labels["sketch"].tolist()):
        assert p == s or p not in sketch_classes
    assert photo_classes  # labels are the teachers' argmax of the returned images
    with torch.no_grad():
        assert torch.equal(batch.labels["sketch"], ctx.teachers["sketch"](batch.images["sketch"]).argmax(1))
    assert 0.0 <= strategy.last_parts["paired"].item() <= 1.0


# -- contrastive term ----------------------------------------------------------------------------

class _Flat(nn.Module):
    def forward(self, x):
        return x.flatten(1)


def _feature_state(images, views, memory=None):
    teacher = build_classifier("cnn", 2, image_size=8, width=2, feature_dim=2)
    teacher.backbone = _Flat()  # features are the images themselves
    teacher.head = nn.Linear(12, 2)
    teachers = TeacherSet({"photo": teacher, "sketch": teacher})
    return T.SynthesisState({"photo": images}, teachers, "independent", views={"photo": views}, memory=memory, temperature=0.1)


def test_contrastive_lowest_when_the_two_views_match():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 2, 2)
    matched = T.contrastive(_feature_state(x, x.clone())).item()
    noisy = T.contrastive(_feature_state(x, x + 0.5 * torch.randn_like(x))).item()
    shuffled = T.contrastive(_feature_state(x, x[torch.roll(torch.arange(16), 1)])).item()
    assert matched < noisy < shuffled
    # memory features equal to the positives are hard negatives: the loss rises
    bank = torch.nn.functional.normalize(x.flatten(1), dim=1)
    assert T.contrastive(_feature_state(x, x.clone(), {"photo": bank})).item() > matched + 0.5
    from dfbench.api.plugins import registry

    assert registry("terms").load("contrastive") is T.contrastive


def test_contrastive_view_pass_adds_nothing_to_the_bn_penalty():
    ctx = _ctx()
    teacher = ctx.teachers["photo"]
    x = torch.randn(8, 3, SIZE, SIZE)
    with T.BatchNormStatsHooks([teacher]) as hooks:
        plain = T.SynthesisState({"photo": x}, ctx.teachers, "independent", bn_hooks=hooks)
        bn_plain = T.bn(plain).item()
        both = T.SynthesisState({"photo": x}, ctx.teachers, "independent", bn_hooks=hooks, views={"photo": x.flip(3) * 3})
        bn_both = T.bn(both).item()
        T.contrastive(both)
        assert hooks.collect() is None
    assert bn_both == pytest.approx(bn_plain)


def test_augmented_views_keep_shape_and_gradients():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, SIZE, SIZE, requires_grad=True)
    for view in (jitter_flip(x, 2, True, gen), random_resized_crop(x, 0.25, gen)):
        assert view.shape == x.shape
        view.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        x.grad = None
    full = random_resized_crop(x, 1.0, gen, flip=False)  # area 1 and ratio 1 at most: close to x
    assert full.shape == x.shape


# -- moving-average BatchNorm statistics ---------------------------------------------------------

def test_ema_bn_hooks_match_the_moving_average():
    bn = nn.BatchNorm1d(3).eval()
    net = nn.Sequential(bn)
    a, b = torch.randn(64, 3) + 1.0, torch.randn(64, 3) - 1.0
    hooks = EmaBatchNormStatsHooks([net], momentum=0.5)
    with hooks:
        net(a)
        first = hooks.collect().item()
        hooks.update_ema()
        net(b)
        second = hooks.collect().item()
    mean = 0.5 * a.mean(0) + 0.5 * b.mean(0)
    var = 0.5 * a.var(0, unbiased=False) + 0.5 * b.var(0, unbiased=False)
    expected = (torch.norm(mean - bn.running_mean) + torch.norm(var - bn.running_var)).item()
    assert second == pytest.approx(expected, rel=1e-5)
    assert first == pytest.approx((torch.norm(a.mean(0)) + torch.norm(a.var(0, unbiased=False) - 1)).item(), rel=1e-5)


# -- generators: re-initialisation and meta-learning ----------------------------------------------

def _weights(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}


def test_generator_reinitialisation_resets_weights():
    ctx = _ctx()
    trained = _generators(ctx, {"one_hot": 1.0, "bn": 1.0}, steps=3, optimizer={"lr": 0.05})
    trained.synthesize(None)
    before = _weights(trained.generators)
    trained.reinitialise()
    after = _weights(trained.generators)
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("weight"))
    conv = trained.generators["photo"].net[2].weight
    assert abs(conv.std().item() - 0.02) < 0.005 and trained.generators["photo"].fc.bias.abs().max() == 0
    # with reinit, every round starts from fresh weights: a zero learning rate leaves exactly them
    frozen = _generators(ctx, {"one_hot": 1.0}, reinit=True, learnable_z=True, optimizer={"lr": 0.0}, z_lr=0.0)
    w0 = _weights(frozen.generators)
    frozen.synthesize(None)
    w1 = _weights(frozen.generators)
    frozen.synthesize(None)
    w2 = _weights(frozen.generators)
    assert not torch.equal(w0["photo.fc.weight"], w1["photo.fc.weight"])
    assert not torch.equal(w1["photo.fc.weight"], w2["photo.fc.weight"])
    # without reinit the weights persist across rounds
    kept = _generators(ctx, {"one_hot": 1.0}, optimizer={"lr": 0.0})
    w0 = _weights(kept.generators)
    kept.synthesize(None)
    assert all(torch.equal(w0[k], v) for k, v in _weights(kept.generators).items() if "running" not in k)


def test_output_norm_standardises_every_generated_batch():
    """DAFL's output BatchNorm: in training mode each batch's last pre-activation has mean 0 and
    variance 1 per channel, over the batch and its pixels, whatever the weights; off by default."""
    from dfbench.train.models import Estimator

    torch.manual_seed(0)
    z = torch.randn(16, 8)
    plain, normed = Estimator(8, 16, channels=1, width=4), Estimator(8, 16, channels=1, width=4, output_norm=True)
    normed.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        normed.net[-3].bias.fill_(5.0)  # a last layer driven into saturation: plain tanh gives white images
        plain.net[-2].bias.fill_(5.0)
    x_plain, x_normed = plain.train()(z), normed.train()(z)
    assert x_normed.abs().max() <= 1.0 and x_normed.shape == x_plain.shape == (16, 3, 16, 16)
    pre = torch.atanh(x_normed[:, 0].clamp(-0.999999, 0.999999))
    assert abs(pre.mean().item()) < 1e-3 and abs(pre.std().item() - 1.0) < 0.05  # standardised over the batch
    assert x_plain.min() > 0.99 and x_normed.std() > 0.3 and x_normed.mean().abs() < 0.2  # saturated without, spread with
    # off by default: the generators strategy builds exactly the networks it built before the option
    ctx = _ctx()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and not m.affine for m in _generators(ctx, {"one_hot": 1.0}).generators.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) and not m.affine
               for m in _generators(ctx, {"one_hot": 1.0}, output_norm=True).generators.modules())


@pytest.mark.parametrize("meta", ["reptile", "fomaml"])
def test_meta_generators_adapt_a_copy_and_move_towards_it(meta):
    ctx = _ctx()
    strategy = _generators(ctx, {"one_hot": 1.0, "bn": 10.0}, targets="random", learnable_z=True, meta=meta, steps=3, bn_momentum=0.9)
    w0 = _weights(strategy.generators)
    batch = strategy.synthesize(None)
    w1 = _weights(strategy.generators)
    assert not torch.equal(w0["photo.fc.weight"], w1["photo.fc.weight"])  # the meta update happened
    assert torch.equal(batch.labels["photo"], batch.labels["sketch"])
    assert strategy.hooks.ema  # the moving average has started
    strategy.synthesize(None)  # a second round uses the averages


def test_memory_bank_fills_up_to_its_size():
    ctx = _ctx()
    strategy = _generators(ctx, {"contrastive": 1.0, "one_hot": 1.0}, targets="random", memory_size=12, negatives=5)
    strategy.synthesize(None)
    assert strategy.memory["photo"].shape[0] == 8
    strategy.synthesize(None)
    assert strategy.memory["photo"].shape[0] == 12
    assert torch.allclose(strategy.memory["sketch"].norm(dim=1), torch.ones(12))


# -- decision-adversarial term --------------------------------------------------------------------

def test_masked_adversarial_counts_only_samples_the_students_get_right():
    class S:
        def __init__(self, lg):
            self.lg = lg

        def class_logits(self, x, m):
            return self.lg

    lg = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    state = _feature_state(torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2))
    state._cache["teacher"] = ({"photo": torch.zeros(2, 12)}, {"photo": lg}, None)
    # row 0 agrees (argmax 0 on both sides, softer student), row 1 disagrees
    student = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    state.students = S(student)
    kl = torch.nn.functional.kl_div(torch.log_softmax(student, 1), torch.softmax(lg, 1), reduction="none").sum(1)
    assert T.adversarial_kl_masked(state).item() == pytest.approx(-kl[0].item() / 2)
    assert T.adversarial_kl(state).item() < T.adversarial_kl_masked(state).item() < 0
    assert T.adversarial_kl_masked.needs == {"students"}
