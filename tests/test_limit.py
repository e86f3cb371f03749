"""``--limit N``: the first N images per class of every split, for any dataset, part of the run's identity."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dfbench.app import config as cfgmod
from dfbench.train import subset
from dfbench.app.cli import cli
from dfbench.api.datasets import Benchmark, TensorImageSet
from dfbench.api.imageio import FileImageSet
from dfbench.app.runner import RunRequest, resolve_request

TINY = ["--set", "data.options.train_per_class=16", "--set", "data.options.test_per_class=8"]


def _file_set(tmp_path, labels):
    files = []
    for i, label in enumerate(labels):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (10 * i, 20 * label, 0)).save(path)
        files.append(path)
    return FileImageSet(files, labels, image_size=8, modality="photo")


def test_limit_keeps_the_first_n_per_class_of_every_set(tmp_path):
    labels = [0, 1, 0, 2, 1, 0, 2, 2, 1, 0]
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).clone()
    in_memory = TensorImageSet(images, labels)
    on_disk = _file_set(tmp_path, labels)
    sets = {("train", "photo"): in_memory, ("train", "sketch"): in_memory, ("test", "photo"): on_disk, ("test", "sketch"): in_memory}
    bench = subset.apply(Benchmark("toy", ["a", "b", "c"], 2, dict(sets)), 2)
    assert bench.counts() == {"train/photo": 6, "train/sketch": 6, "test/photo": 6, "test/sketch": 6}
    assert bench.get("train", "photo").labels.tolist() == [0, 1, 0, 2, 1, 2]
    # the images are the originals at the kept positions [0, 1, 2, 3, 4, 6]
    assert bench.get("train", "photo").load_uint8([0, 5])[:, 0, 0, 0].tolist() == [0, 6]
    assert bench.get("test", "photo").files == [str(on_disk.files[i]) for i in (0, 1, 2, 3, 4, 6)]
    assert torch.equal(bench.get("test", "photo").load_uint8([5]), on_disk.load_uint8([6]))
    assert bench.info["limit"] == {"per_class": 2, "counts": bench.counts()}
    assert subset.apply(Benchmark("toy", ["a"], 2, {}), None).info == {}


def test_limit_is_part_of_the_runs_identity():
    plain, _ = resolve_request(RunRequest(method="classifier-only", profile="smoke"))
    limited, _ = resolve_request(RunRequest(method="classifier-only", profile="smoke", limit=5))
    assert "limit" not in plain["data"] and limited["data"]["limit"] == 5
    assert cfgmod.config_hash(plain) != cfgmod.config_hash(limited)
    assert cfgmod.config_hash(plain) == cfgmod.config_hash({**limited, "data": plain["data"]})


def test_run_with_limit_records_it(tmp_path):
    res = CliRunner().invoke(
        cli, ["run", "--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet", "--json",
              "--limit", "3", "--results", str(tmp_path), *TINY],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    [record] = json.loads(res.stdout)
    classes = len(record["data"]["classes"])
    assert record["config"]["data"]["limit"] == 3
    counts = record["data"]["counts"]
    assert {k: counts[k] for k in ("test/photo", "test/sketch")} == {"test/photo": 3 * classes, "test/sketch": 3 * classes}
    # the validation split (one image per class here) comes out of the limited train split
    assert all(counts[f"train/{m}"] + counts[f"val/{m}"] == 3 * classes and counts[f"val/{m}"] == classes for m in ("photo", "sketch"))
    assert record["data"]["info"]["limit"]["per_class"] == 3
    # teachers trained on the subset are cached under their own key
    plain, _ = resolve_request(RunRequest(method="classifier-only", profile="smoke", overrides=TINY[1::2]))
    assert record["config_hash"] != cfgmod.config_hash(plain)
    res = CliRunner().invoke(cli, ["run", "--method", "classifier-only", "--limit", "0"])
    assert res.exit_code == 2 and "--limit" in res.output


@pytest.mark.parametrize("bad", ["0", "-1", "true", "three"])
def test_a_limit_that_is_not_a_positive_count_is_refused(bad):
    from dfbench.api.errors import ConfigError

    with pytest.raises(ConfigError, match="data.limit"):
        resolve_request(RunRequest(method="classifier-only", profile="smoke", overrides=[f"data.limit={bad}"]))
