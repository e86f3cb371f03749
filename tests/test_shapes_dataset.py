"""The embedded ``shapes`` dataset: sizes, determinism, caching, looks, option checking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dfbench.api.datasets import MODALITIES, Benchmark, DatasetOptions, TensorImageSet
from dfbench.api.errors import ConfigError
from dfbench_datasets import shapes
from dfbench_datasets.shapes import ShapesDataset

SMALL = {"train_per_class": 3, "test_per_class": 2}
KEYS = [("train", "photo"), ("train", "sketch"), ("test", "photo"), ("test", "sketch")]


def load(cache_dir, seed=0, size=32, extra=None) -> Benchmark:
    extra = dict(SMALL) if extra is None else extra
    return ShapesDataset().load(DatasetOptions(image_size=size, seed=seed, cache_dir=Path(cache_dir), extra=extra))


def images(bench: Benchmark) -> dict:
    return {key: bench.get(*key).images for key in KEYS}


def test_plugin_attributes():
    assert ShapesDataset.name == "shapes"
    assert ShapesDataset.needs_data_root is False
    assert len(shapes.CLASSES) >= 10
    assert len(set(shapes.CLASSES)) == len(shapes.CLASSES)


def test_shapes_dtypes_labels_and_counts(tmp_path):
    bench = load(tmp_path)
    assert bench.name == "shapes"
    assert bench.classes == list(shapes.CLASSES) and bench.num_classes == 12
    assert bench.image_size == 32 and bench.split_manifest is None
    per_class = {"train": 3, "test": 2}
    for split, modality in KEYS:
        s = bench.get(split, modality)
        assert isinstance(s, TensorImageSet)
        n = 12 * per_class[split]
        assert tuple(s.images.shape) == (n, 3, 32, 32) and s.images.dtype == torch.uint8
        assert s.labels.dtype == torch.int64 and len(s.labels) == n
        assert int(s.labels.min()) == 0 and int(s.labels.max()) == 11
        assert s.labels.bincount(minlength=12).tolist() == [per_class[split]] * 12
        assert torch.equal(s.labels, s.labels.sort().values)  # class after class, in class order
        x = s.batch([0, 1])
        assert x.dtype == torch.float32 and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert bench.info["generator"] == "shapes-v1" and bench.info["seed"] == 0
    assert bench.info["counts"] == {"train/photo": 36, "train/sketch": 36, "test/photo": 24, "test/sketch": 24}


def test_default_counts_and_full_generation(tmp_path):
    bench = load(tmp_path, extra={})
    assert bench.counts() == {"train/photo": 1440, "train/sketch": 1440, "test/photo": 720, "test/sketch": 720}
    assert (tmp_path / "datasets" / "shapes-v1-s0-32px-120-60.npz").is_file()


@pytest.mark.parametrize("size", [64, 224])
def test_other_image_sizes(tmp_path, size):
    bench = load(tmp_path, size=size, extra={"train_per_class": 1, "test_per_class": 1})
    assert bench.image_size == size
    for key, x in images(bench).items():
        assert tuple(x.shape) == (12, 3, size, size), key


def test_same_seed_gives_identical_images(tmp_path):
    a = images(load(tmp_path / "a", seed=7))
    b = images(load(tmp_path / "b", seed=7))  # separate caches: both generated from scratch
    for key in KEYS:
        assert torch.equal(a[key], b[key]), key


def test_different_seed_gives_different_images(tmp_path):
    a = images(load(tmp_path, seed=0))
    b = images(load(tmp_path, seed=1))
    for key in KEYS:
        differs = (a[key] != b[key]).flatten(1).any(1)
        assert bool(differs.all()), key  # every single image differs


def test_train_and_test_never_coincide(tmp_path):
    x = images(load(tmp_path, extra={"train_per_class": 2, "test_per_class": 2}))
    for modality in MODALITIES:
        assert not torch.equal(x[("train", modality)], x[("test", modality)])
        assert bool((x[("train", modality)] != x[("test", modality)]).flatten(1).any(1).all())


def test_raising_a_count_keeps_the_existing_images(tmp_path):
    small = images(load(tmp_path, extra={"train_per_class": 2, "test_per_class": 1}))
    large = images(load(tmp_path, extra={"train_per_class": 3, "test_per_class": 2}))
    for (split, modality), x in small.items():
        pc_small, pc_large = (2, 3) if split == "train" else (1, 2)
        y = large[(split, modality)].view(12, pc_large, 3, 32, 32)[:, :pc_small].reshape(x.shape)
        assert torch.equal(x, y)


def test_cache_is_written_and_reused(tmp_path, monkeypatch):
    first = images(load(tmp_path))
    path = tmp_path / "datasets" / "shapes-v1-s0-32px-3-2.npz"
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind

    def no_generation(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(shapes, "generate_arrays", no_generation)
    mtime = path.stat().st_mtime_ns
    second = images(load(tmp_path))
    assert path.stat().st_mtime_ns == mtime
    for key in KEYS:
        assert torch.equal(first[key], second[key])


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an npz file")


def _wrong_shapes(path: Path) -> None:
    np.savez(path, generator=np.array("shapes-v1"), train_photo=np.zeros((1, 3, 32, 32), np.uint8))


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(255 - b for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _garbage, _wrong_shapes, _flip_bytes])
def test_corrupt_cache_is_regenerated(tmp_path, damage):
    fresh = images(load(tmp_path / "fresh"))
    load(tmp_path)
    path = tmp_path / "datasets" / "shapes-v1-s0-32px-3-2.npz"
    damage(path)
    with pytest.warns(RuntimeWarning, match="regenerating"):
        again = images(load(tmp_path))
    for key in KEYS:
        assert torch.equal(fresh[key], again[key])
    with np.load(path) as data:  # the damaged file was replaced by a good one
        assert data["train_photo"].shape == (36, 3, 32, 32)


def test_unwritable_cache_still_loads(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(RuntimeWarning, match="could not write"):
        bench = load(blocker)
    assert len(bench.get("train", "photo")) == 36


def test_sketches_are_grey_on_white_and_photos_are_coloured(tmp_path):
    x = images(load(tmp_path, extra={"train_per_class": 4, "test_per_class": 1}))
    for split in ("train", "test"):
        sk = x[(split, "sketch")].float()
        assert torch.equal(sk[:, 0], sk[:, 1]) and torch.equal(sk[:, 0], sk[:, 2])
        white = (sk[:, 0] > 200).float().mean(dim=(1, 2))
        assert float(white.min()) > 0.6  # every sketch is mostly white paper
        dark = (sk[:, 0] < 128).float().sum(dim=(1, 2))
        assert float(dark.min()) >= 10  # ... with visible strokes
        ph = x[(split, "photo")].float()
        chroma = (ph.max(dim=1).values - ph.min(dim=1).values).mean(dim=(1, 2))
        assert float(chroma.min()) > 8  # every photo has colour
        white_ph = (ph.min(dim=1).values > 200).float().mean(dim=(1, 2))
        assert float(white_ph.max()) < 0.5  # and no white paper


def test_photo_colours_vary_within_a_class(tmp_path):
    ph = images(load(tmp_path, extra={"train_per_class": 8, "test_per_class": 1}))[("train", "photo")].float()
    means = ph.mean(dim=(2, 3)).view(12, 8, 3)
    assert float(means.std(dim=1).mean()) > 10  # hues are random, not tied to the class


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"train_per_clas": 5}, "train_per_clas"),
        ({"colour": "red"}, "'train_per_class', 'test_per_class'"),
        ({"train_per_class": 0}, "positive integer"),
        ({"test_per_class": "3"}, "positive integer"),
        ({"test_per_class": True}, "positive integer"),
    ],
)
def test_bad_extra_options_are_config_errors(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, extra=extra)


def test_bad_image_size_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="image_size"):
        load(tmp_path, size=2)


def test_module_import_is_light():
    env = dict(os.environ)
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "plugins"), env.get("PYTHONPATH", "")])
    code = "import sys, dfbench_datasets.shapes; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
