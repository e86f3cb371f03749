"""The paper's baselines and the supervised bound: end-to-end smoke runs and their pieces."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dfbench.app.cli import cli
from dfbench.api.context import RunContext
from dfbench.api.datasets import MODALITIES, Benchmark, ImageSet, TensorImageSet
from dfbench.api.errors import ConfigError
from dfbench.api.inversion import ReplayPool, SynthBatch, concat_batches
from dfbench.train.models import build_classifier, freeze
from dfbench.api.teachers import TeacherSet

BASELINES = ["classifier-only", "unimodal-kd", "gaussian-prior", "avg-weights", "meta-data", "alt-data", "supervised"]
TEACHERS = {
    "classifier-only": {"photo", "sketch"},
    "avg-weights": {"photo", "sketch"},
    "unimodal-kd": {"photo", "sketch"},
    "gaussian-prior": {"photo", "sketch"},
    "meta-data": {"photo", "sketch"},
    "alt-data": {"photo", "sketch"},
    "supervised": {"unified"},
}


@pytest.fixture(autouse=True)
def _honour_omp_threads():
    """conftest gives torch two threads; OMP_NUM_THREADS, when set, wins here (on a shared, loaded
    machine two spinning threads make these runs several times slower)."""
    n = os.environ.get("OMP_NUM_THREADS", "")
    if n.isdigit() and int(n) > 0:
        torch.set_num_threads(int(n))
    yield


def _registered(kind: str, name: str) -> bool:
    from dfbench.api.plugins import registry

    try:
        registry(kind).get(name)
        return True
    except Exception:
        return False


# -- every baseline runs end to end ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", BASELINES)
def test_smoke_run(name, tmp_path):
    from dfbench.api.plugins import registry

    strategy = registry("methods").load(name).profiles["base"]["params"].get("inversion", {}).get("strategy")
    if strategy and not _registered("inversions", strategy):  # 'pixels'/'generators' come from the datafree plugin
        pytest.skip(f"{name} needs the '{strategy}' inversion strategy of the datafree plugin, which is not installed")
    argv = [
        "run", "--quiet", "--results", str(tmp_path), "--method", name, "--profile", "smoke",
        "--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12",
    ]
    res = CliRunner().invoke(cli, argv)
    assert res.exit_code == 0, res.output + repr(res.exception)
    [path] = sorted((tmp_path / "shapes" / name).glob("*.json"))
    rec = json.loads(path.read_text())
    assert rec["status"] == "completed"
    assert rec["metrics"] and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in rec["metrics"].values())
    assert set(rec["teachers"]) == TEACHERS[name]


def test_only_the_bound_reads_train_data():
    from dfbench.api.plugins import registry

    flags = {name: registry("methods").load(name).uses_train_data for name in BASELINES}
    assert flags == {name: name == "supervised" for name in BASELINES}


# -- helpers for unit tests -----------------------------------------------------------------------

def _teacher(num_classes=4, size=16, seed=0, width=4, arch="cnn"):
    torch.manual_seed(seed)
    return freeze(build_classifier(arch, num_classes, image_size=size, width=width, feature_dim=8))


def _teachers(num_classes=4, size=16):
    return TeacherSet({"photo": _teacher(num_classes, size, 0), "sketch": _teacher(num_classes, size, 1), "unified": _teacher(num_classes, size, 2)})


class _Forbidden(ImageSet):
    """An image set that fails on any read: stands in for the benchmark's train split."""

    def __init__(self, n):
        self._n = n

    def __len__(self):
        return self._n

    @property
    def labels(self):
        raise AssertionError("the benchmark's train split was read")

    def load_uint8(self, indices):
        raise AssertionError("the benchmark's train split was read")


def _tensor_set(labels, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels)
    images = torch.randint(0, 256, (len(labels), 3, size, size), generator=g, dtype=torch.uint8)
    return TensorImageSet(images, labels)


def _ctx(tmp_path, benchmark, method="gaussian-prior", dataset="shapes", data_options=None, size=16, teachers=None):
    cfg = {
        "method": method,
        "dataset": dataset,
        "seed": 0,
        "data": {"root": None, "image_size": size, "seed": 0, "options": data_options or {}},
        "params": {},
    }
    ctx = RunContext(config=cfg, device=torch.device("cpu"), benchmark=benchmark, cache_dir=Path(tmp_path))
    ctx.teachers = teachers or _teachers(benchmark.num_classes, size)
    return ctx


def _bench(name="shapes", num_classes=4, size=16, train=None):
    test = {m: _tensor_set(torch.arange(num_classes).repeat(2), size) for m in MODALITIES}
    train = train or {m: _Forbidden(8) for m in MODALITIES}
    sets = {("train", m): train[m] for m in train} | {("test", m): test[m] for m in test}
    return Benchmark(name=name, classes=[f"c{i}" for i in range(num_classes)], image_size=size, sets=sets)


# -- gaussian prior -----------------------------------------------------------------------------------

@pytest.mark.parametrize("squash,resolution", [("tanh", None), ("clamp", None), ("tanh", 4)])
def test_prior_images_in_range_and_grey_sketches(tmp_path, squash, resolution):
    from dfbench_inversions.prior import GaussianPrior

    ctx = _ctx(tmp_path, _bench())
    opts = {**GaussianPrior.defaults, "batch_size": 20, "std": 2.0, "squash": squash, "resolution": resolution}
    strat = GaussianPrior(ctx, opts, {}, "independent")
    b = strat.synthesize(None)
    assert b.images["photo"].shape == b.images["sketch"].shape == (20, 3, 16, 16)
    for x in (b.images["photo"], b.images["sketch"]):
        assert x.min() >= -1.0 and x.max() <= 1.0 and torch.isfinite(x).all()
    assert torch.equal(b.images["sketch"][:, 0], b.images["sketch"][:, 1]) and torch.equal(b.images["sketch"][:, 0], b.images["sketch"][:, 2])
    assert not torch.equal(b.images["photo"][:, 0], b.images["photo"][:, 1])  # photos are colour
    # labels are the judging teachers' argmax, and the logits come along
    assert torch.equal(b.labels["photo"], ctx.teachers["photo"](b.images["photo"]).argmax(1))
    assert torch.equal(b.labels["sketch"], ctx.teachers["sketch"](b.images["sketch"]).argmax(1))
    assert torch.allclose(b.logits["sketch"], ctx.teachers["sketch"](b.images["sketch"]))


def test_prior_rejects_synthesis_terms_and_bad_options(tmp_path):
    from dfbench_inversions.prior import GaussianPrior

    ctx = _ctx(tmp_path, _bench())
    with pytest.raises(ConfigError, match="weights"):
        GaussianPrior(ctx, dict(GaussianPrior.defaults), {"one_hot": 1.0}, "independent")
    with pytest.raises(ConfigError, match="squash"):
        GaussianPrior(ctx, {**GaussianPrior.defaults, "squash": "sigmoid"}, {}, "independent")
    with pytest.raises(ConfigError, match="resolution"):
        GaussianPrior(ctx, {**GaussianPrior.defaults, "resolution": 64}, {}, "independent")


def test_pair_by_labels_matches_where_possible():
    from dfbench_inversions.common import pair_by_labels

    photo = torch.tensor([0, 1, 1, 2, 3, 3])
    sketch = torch.tensor([1, 3, 0, 0, 1, 2])
    perm = pair_by_labels(photo, sketch, torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(6))  # a permutation
    matched = (sketch[perm] == photo).sum().item()
    assert matched == 5  # classes 0, 1, 1, 2 and one 3 can be matched; the second 3 cannot


# -- averaging weights ------------------------------------------------------------------------------

def test_average_classifiers_is_exact():
    from dfbench_baselines.embedders import ClassifierEmbedder, average_classifiers

    a, b = _teacher(seed=0), _teacher(seed=1)
    with torch.no_grad():
        for net, value in ((a, 1.0), (b, 3.0)):
            for k, t in net.state_dict().items():
                if t.is_floating_point():
                    t.fill_(value)
                else:
                    t.fill_(4 if value == 1.0 else 7)
    avg = average_classifiers(a, b)
    for k, t in avg.state_dict().items():
        if t.is_floating_point():
            assert torch.all(t == 2.0), k  # weights, biases and BatchNorm running stats
        else:
            assert torch.all(t == 5), k  # (4 + 7) // 2
    # random weights: the mean, tensor by tensor, and the inputs untouched
    a, b = _teacher(seed=3), _teacher(seed=4)
    a.backbone.proj[1].running_mean.normal_()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    avg = average_classifiers(a, b)
    sa, sb = a.state_dict(), b.state_dict()
    for k, t in avg.state_dict().items():
        if t.is_floating_point():
            assert torch.allclose(t, (sa[k] + sb[k]) / 2), k
        assert torch.equal(sa[k], before[k])
    assert not any(p.requires_grad for p in avg.parameters()) and not avg.training
    e = ClassifierEmbedder(avg, "probs").embed(torch.zeros(2, 3, 16, 16), "sketch")
    assert torch.allclose(e.sum(1), torch.ones(2))


def test_average_classifiers_needs_one_architecture():
    from dfbench_baselines.embedders import average_classifiers

    with pytest.raises(ConfigError, match="architecture"):
        average_classifiers(_teacher(width=4), _teacher(width=8))
    with pytest.raises(ConfigError, match="architecture"):
        average_classifiers(_teacher(), _teacher(arch="resnet18"))


def test_teacher_embedder_readouts():
    from dfbench_baselines.embedders import TeacherEmbedder

    t = _teachers()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    probs = TeacherEmbedder(t, "independent", "probs").embed(x, "photo")
    logits = TeacherEmbedder(t, "independent", "logits").embed(x, "sketch")
    assert torch.allclose(probs, torch.softmax(t["photo"](x), 1))
    assert torch.allclose(logits, t["sketch"](x))
    feats = TeacherEmbedder(t, "independent", "features").embed(x, "photo")  # the penultimate features, unit length
    assert torch.allclose(feats, torch.nn.functional.normalize(t["photo"].features(x), dim=1))
    with pytest.raises(ConfigError):
        TeacherEmbedder(t, "independent", "embedding")


# -- knowledge distillation -------------------------------------------------------------------------

from dfbench.api.modalities import DEFAULT_PAIR  # noqa: E402


class _Students:
    """What the kd loss uses of dfbench.train.students.Students: scaled cosines to the proxies."""

    variant = "independent"
    scale = 32.0
    modalities = DEFAULT_PAIR

    def __init__(self, proxies):
        self._proxies = proxies

    def proxies(self, m):
        return self._proxies[m]

    def class_logits_from_embedding(self, emb, m):
        from dfbench.train.students import Students

        return Students.class_logits_from_embedding(self, emb, m)


def test_kd_is_zero_when_student_equals_teacher():
    from dfbench_baselines.kd import KnowledgeDistillation

    torch.manual_seed(0)
    students = _Students({"photo": torch.randn(5, 8), "sketch": torch.randn(5, 8)})
    e_p, e_s = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    t_p = students.class_logits_from_embedding(e_p, "photo").detach()
    t_s = students.class_logits_from_embedding(e_s, "sketch").detach()
    labels = torch.zeros(6, dtype=torch.long)
    for temperature in (1.0, 4.0):
        loss = KnowledgeDistillation(None, {"temperature": temperature}, students)
        same = loss(e_p, e_s, labels, labels, gallery_logits=t_p, query_logits=t_s)
        assert same.item() == pytest.approx(0.0, abs=1e-5)
        other = loss(e_p, e_s, labels, labels, gallery_logits=torch.randn(6, 5), query_logits=t_s)
        assert other.item() > 0.01
        other.backward()
        assert e_p.grad is not None and e_p.grad.abs().sum() > 0
        e_p.grad = None
    with pytest.raises(ConfigError):
        KnowledgeDistillation(None, {"temperature": 0.0}, students)
    assert KnowledgeDistillation.uses_teacher_logits


def test_engine_supplies_missing_teacher_logits(tmp_path):
    from dfbench.train.engine import teacher_logits

    ctx = _ctx(tmp_path, _bench())
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    zeros = torch.zeros(4, dtype=torch.long)
    b = SynthBatch({"photo": x, "sketch": x.flip(0)}, {"photo": zeros, "sketch": zeros})
    out = teacher_logits(ctx, b, "independent")
    assert torch.allclose(out["photo"], ctx.teachers["photo"](x))
    assert torch.allclose(out["sketch"], ctx.teachers["sketch"](x.flip(0)))
    given = torch.randn(4, 4)
    b.logits = {"photo": given, "sketch": None}
    assert teacher_logits(ctx, b, "unified")["photo"] is given


def test_optional_logits_travel_through_batches_and_pool():
    def batch(n, logits=True):
        z = torch.zeros(n, dtype=torch.long)
        lg = torch.randn(n, 3) if logits else None
        return SynthBatch.of(("photo", "sketch"), {"photo": torch.randn(n, 3, 2, 2), "sketch": torch.randn(n, 3, 2, 2)},
                             {"photo": z, "sketch": z}, {"photo": lg, "sketch": lg})

    a = batch(3)
    assert a.index(torch.tensor([2, 0])).logits["photo"].shape == (2, 3)
    assert concat_batches(a, batch(2)).logits["sketch"].shape == (5, 3)
    assert concat_batches(a, batch(2, logits=False)).logits is None
    pool = ReplayPool(4)
    pool.add(a)
    pool.add(batch(3))
    s = pool.sample(5, torch.Generator().manual_seed(0))
    assert s.logits["photo"].shape == (5, 3) and len(pool) == 4
    restored = ReplayPool(4)
    restored.load_state_dict(pool.state_dict(), "cpu")
    assert torch.equal(restored.sample(2, torch.Generator().manual_seed(1)).logits["photo"], pool.sample(2, torch.Generator().manual_seed(1)).logits["photo"])
    pool.add(batch(2, logits=False))  # a batch without logits: the pool stops keeping them
    assert pool.sample(2, torch.Generator()).logits is None
    # a batch without logits at all
    old = batch(2, logits=False)
    assert old.logits is None and len(old.index(torch.tensor([1]))) == 1
    # a batch keyed by another pair's modalities travels the same way
    other = SynthBatch({"written": torch.randn(3, 3, 2, 2), "spoken": torch.randn(3, 3, 2, 2)}, {"written": torch.zeros(3, dtype=torch.long), "spoken": torch.ones(3, dtype=torch.long)})
    pool = ReplayPool(4)
    pool.add(other)
    assert set(pool.sample(2, torch.Generator()).images) == {"written", "spoken"}


# -- alternative data ---------------------------------------------------------------------------------

def test_alt_data_never_reads_the_benchmark_train_split(tmp_path):
    from dfbench_inversions.alt_data import AlternativeData

    bench = _bench("shapes", num_classes=4)
    ctx = _ctx(tmp_path, bench, "alt-data", data_options={"train_per_class": 2, "test_per_class": 1})
    opts = {**AlternativeData.defaults, "batch_size": 10, "max_images": 30}
    strat = AlternativeData(ctx, opts, {}, "independent")
    # shapes on shapes: the source is shapes drawn with another seed and the benchmark's data options
    assert strat.spec["name"] == "shapes" and strat.spec["seed"] == 1000
    assert strat.spec["options"] == {"train_per_class": 2, "test_per_class": 1}
    assert strat.source.info["seed"] == 1000
    b = strat.synthesize(None)
    assert b.images["photo"].shape == b.images["sketch"].shape == (10, 3, 16, 16)
    assert b.images["photo"].min() >= -1 and b.images["photo"].max() <= 1
    # the photo teacher labels the photos, the sketch teacher the sketches
    assert torch.equal(b.labels["photo"], ctx.teachers["photo"](b.images["photo"]).argmax(1))
    assert torch.equal(b.labels["sketch"], ctx.teachers["sketch"](b.images["sketch"]).argmax(1))
    # pairs share their label wherever the source has a sketch of the photo's label
    have = set(strat.labels["sketch"].tolist())
    for yp, ys in zip(b.labels["photo"].tolist(), b.labels["sketch"].tolist()):
        if yp in have:
            assert yp == ys
    balanced = AlternativeData(ctx, {**opts, "balanced": True}, {}, "independent").synthesize(None)
    assert len(balanced) == 10


def test_alt_data_refuses_the_benchmark_itself(tmp_path):
    from dfbench_inversions.alt_data import AlternativeData

    ctx = _ctx(tmp_path, _bench("shapes"), "alt-data", data_options={"train_per_class": 2, "test_per_class": 1})
    with pytest.raises(ConfigError, match="own seed"):
        AlternativeData(ctx, {**AlternativeData.defaults, "source_seed": 0}, {}, "independent")
    disk = _ctx(tmp_path, _bench("folder"), "alt-data", dataset="folder")
    with pytest.raises(ConfigError, match="must not see"):
        AlternativeData(disk, {**AlternativeData.defaults, "source": "folder"}, {}, "independent")
    with pytest.raises(ConfigError, match="weights"):
        AlternativeData(ctx, dict(AlternativeData.defaults), {"bn": 1.0}, "independent")


# -- supervised bound -------------------------------------------------------------------------------

def _labelled_train(num_classes=4, per_class=(3, 2, 0, 5), sketch_per_class=(2, 0, 4, 3), size=8):
    """Train sets whose every image encodes its own label in its pixels."""
    def make(counts):
        labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
        images = (labels * 40 + 20).to(torch.uint8)[:, None, None, None].expand(-1, 3, size, size).contiguous()
        return TensorImageSet(images, labels)

    return {"photo": make(per_class), "sketch": make(sketch_per_class)}


def test_supervised_pairs_share_true_labels(tmp_path):
    from dfbench_inversions.real import RealPairs

    bench = _bench("shapes", num_classes=4, size=8, train=_labelled_train())
    ctx = _ctx(tmp_path, bench, "supervised", size=8)
    strat = RealPairs(ctx, {"batch_size": 200, "augment": False}, {}, "unified")
    b = strat.synthesize(None)
    assert torch.equal(b.labels["photo"], b.labels["sketch"])
    # classes 0 and 3 are the only ones with both photos and sketches
    assert set(b.labels["photo"].tolist()) == {0, 3}
    # the labels are the images' true labels
    decode = lambda x: torch.round(((x[:, 0, 0, 0] + 1) * 127.5 - 20) / 40).long()  # noqa: E731
    assert torch.equal(decode(b.images["photo"]), b.labels["photo"]) and torch.equal(decode(b.images["sketch"]), b.labels["sketch"])
    aug = RealPairs(ctx, {"batch_size": 16, "augment": True}, {}, "unified").synthesize(None)
    assert torch.equal(decode(aug.images["photo"]), aug.labels["photo"])  # shifts and flips keep the content


def test_real_pairs_refuse_data_free_methods(tmp_path):
    from dfbench_inversions.real import RealPairs

    bench = _bench("shapes", num_classes=4, size=8, train=_labelled_train())
    with pytest.raises(ConfigError, match="data-free"):
        RealPairs(_ctx(tmp_path, bench, "gaussian-prior", size=8), {"batch_size": 4, "augment": False}, {}, "unified")


def test_shift_flip_moves_content():
    from dfbench_inversions.real import _shift_flip

    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    moved = 0
    for seed in range(20):
        y = _shift_flip(x, torch.Generator().manual_seed(seed), pad=1)
        assert y.shape == x.shape
        moved += not torch.equal(y, x)
        # every output pixel is a pixel of the same image and channel
        for i in range(2):
            for c in range(3):
                assert set(y[i, c].flatten().tolist()) <= set(x[i, c].flatten().tolist())
    assert moved > 10


def test_alt_data_source_defaults_for_another_benchmark(tmp_path):
    from types import SimpleNamespace

    from dfbench_inversions.alt_data import AlternativeData

    ctx = _ctx(tmp_path, _bench("folder"), "alt-data", dataset="folder", data_options={"in_memory": True})
    fake = SimpleNamespace(options=dict(AlternativeData.defaults), ctx=ctx, SAME_SOURCE_SEED_OFFSET=1000)
    spec = AlternativeData.source_spec(fake)
    # another benchmark: shapes with the run's data seed and shapes' own default sizes
    assert (spec["name"], spec["seed"], spec["options"]) == ("shapes", 0, {})


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_profile_resolves_to_known_options(profile):
    from dfbench.app import config as cfgmod
    from dfbench.api.options import component_options
    from dfbench.api.plugins import registry
    from dfbench.train.terms import check_weights

    for name in BASELINES:
        method = registry("methods").load(name)
        cfg = cfgmod.resolve(method=name, dataset="shapes", profile=profile, seed=0, device="cpu", method_profiles=method.profiles)
        p = cfg["params"]
        roles = method().teacher_roles(p)
        assert roles == TEACHERS[name], (name, profile)
        if "inversion" not in p:
            continue
        if not _registered("inversions", p["inversion"]["strategy"]):
            continue  # meta-data without the datafree plugin (skipped above with its reason)
        component_options(registry("inversions").load(p["inversion"]["strategy"]), p["inversion"], "strategy", "params.inversion")
        component_options(registry("losses").load(p["alignment"]["loss"]), p["alignment"], "loss", "params.alignment")
        check_weights(p["weights"])
        assert p["readout"] in ("raw", "proxy") and int(p["rounds"]) >= 1
        if p["variant"] == "independent":
            assert p["readout"] == "proxy", (name, profile)  # raw embeddings of two teachers share no space
