"""``dfbench data fetch`` (offline: staged QuickDraw bitmaps, a stubbed CIFAR-10, no network)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from conftest import test_data_root
from click.testing import CliRunner
from PIL import Image

from dfbench.api.datasets import DatasetOptions
from dfbench.api.errors import DataError, UnknownNameError
from dfbench_datasets import fetch as fetch_module
from dfbench_datasets.commands import data
from dfbench_datasets.qd_cifar10 import CLASSES, CLASS_NAMES, QDCifar10Dataset

SHARED_DATA = test_data_root()  # $DFBENCH_TEST_DATA, else $DFBENCH_DATA, else ../shared/data
BITMAPS = SHARED_DATA / "quickdraw-bitmap"


@pytest.fixture
def bitmaps():
    if not BITMAPS.is_dir():
        pytest.skip(f"the staged QuickDraw bitmaps {BITMAPS} are not there")
    return BITMAPS


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Any download attempt fails at once as if offline; caches and data go to tmp_path."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", offline)
    monkeypatch.setenv("DFBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DFBENCH_DATA", str(tmp_path / "data"))


def fake_cifar(monkeypatch, per_class=1000):
    """Stub the CIFAR-10 test split: class k's i-th image is filled with value (k * 20 + i) % 256."""
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    targets = [k for _ in range(per_class) for k in range(10)]  # interleaved, like the real file
    images = np.zeros((len(targets), 32, 32, 3), np.uint8)
    seen = [0] * 10
    for n, k in enumerate(targets):
        images[n] = (k * 20 + seen[k]) % 256
        seen[k] += 1
    calls = []

    def stub(cifar_root, quiet=False):
        calls.append(cifar_root)
        return images, targets, names

    monkeypatch.setattr(fetch_module, "cifar10_test", stub)
    return calls


def invoke(*args):
    return CliRunner().invoke(data, ["fetch", *map(str, args)])


def test_fetch_sketches_offline(bitmaps, tmp_path):
    dest = tmp_path / "qd"
    result = invoke("qd-cifar10", "--dest", dest, "--source-bitmaps", bitmaps, "--no-photos", "-q")
    assert result.exit_code == 0, result.output
    assert "Built qd-cifar10" in result.output
    assert sorted(p.name for p in (dest / "train" / "sketch").iterdir()) == sorted(CLASS_NAMES)
    assert not (dest / "train" / "photo").exists()
    for cls, category, _ in CLASSES:
        train = sorted((dest / "train" / "sketch" / cls).iterdir())
        test = sorted((dest / "test" / "sketch" / cls).iterdir())
        assert len(train) == 70 and len(test) == 30
        assert train[0].name == "qd_0000.png" and test[0].name == "qd_0070.png"
        source = np.load(bitmaps / f"{category}.npy", mmap_mode="r")
        for path, row in ((train[0], 0), (test[-1], 99)):
            with Image.open(path) as im:
                assert im.size == (28, 28) and im.mode == "L"
                pixels = np.asarray(im)
            assert np.array_equal(pixels, 255 - source[row].reshape(28, 28))
            assert pixels[0, 0] == 255 and np.median(pixels) == 255 and pixels.min() < 50  # black on white
    assert (dest / "fetch-info.json").is_file()
    assert not list(tmp_path.glob(".qd.*"))  # no temporary folders left


def test_fetch_counts_and_full_round_trip(bitmaps, tmp_path, monkeypatch):
    calls = fake_cifar(monkeypatch)
    dest = tmp_path / "qd"
    result = invoke(
        "qd-cifar10", "--dest", dest, "--source-bitmaps", bitmaps, "--cifar-root", tmp_path,
        "--train-sketches", 4, "--test-sketches", 2, "--train-photos", 3, "--test-photos", 2, "-q",
    )
    assert result.exit_code == 0, result.output
    assert calls == [tmp_path]
    car = sorted(p.name for p in (dest / "test" / "photo" / "car").iterdir())
    assert car == ["cifar_0003.jpg", "cifar_0004.jpg"]  # car <- CIFAR 'automobile' (class 1)
    with Image.open(dest / "train" / "photo" / "car" / "cifar_0001.jpg") as im:
        assert im.size == (32, 32) and im.mode == "RGB" and abs(int(np.asarray(im).mean()) - 21) <= 2
    with Image.open(dest / "train" / "photo" / "ship" / "cifar_0000.jpg") as im:  # ship <- CIFAR class 8
        assert abs(int(np.asarray(im).mean()) - 160) <= 2
    bench = QDCifar10Dataset().load(DatasetOptions(data_root=dest, cache_dir=tmp_path / "cache"))
    assert bench.num_classes == 9
    assert bench.counts() == {"train/photo": 27, "train/sketch": 36, "test/photo": 18, "test/sketch": 18}


def test_fetch_is_atomic_on_failure(bitmaps, tmp_path):
    partial = tmp_path / "bitmaps"
    partial.mkdir()
    for cls, category, _ in CLASSES[:4]:  # 'cat' onwards is missing
        (partial / f"{category}.npy").symlink_to(bitmaps / f"{category}.npy")
    dest = tmp_path / "qd"
    result = invoke("qd-cifar10", "--dest", dest, "--source-bitmaps", partial, "--no-photos", "-q")
    assert result.exit_code != 0
    assert isinstance(result.exception, DataError) and "'dog'" in str(result.exception)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fetch_keeps_existing_tree_unless_forced(bitmaps, tmp_path):
    dest = tmp_path / "qd"
    assert invoke("qd-cifar10", "--dest", dest, "--source-bitmaps", bitmaps, "--no-photos", "-q").exit_code == 0
    marker = dest / "mine.txt"
    marker.write_text("keep")
    again = invoke("qd-cifar10", "--dest", dest, "--source-bitmaps", bitmaps, "--no-photos", "-q")
    assert again.exit_code == 0 and "already" in again.output and marker.exists()
    forced = invoke("qd-cifar10", "--dest", dest, "--source-bitmaps", bitmaps, "--no-photos", "--force", "-q")
    assert forced.exit_code == 0 and not marker.exists()
    assert len(list((dest / "test" / "sketch" / "cat").iterdir())) == 30
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fetch_default_dest_is_dfbench_data(bitmaps, tmp_path):
    result = invoke(
        "qd-cifar10", "--source-bitmaps", bitmaps, "--no-photos", "-q", "--train-sketches", 1, "--test-sketches", 1
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "qd-cifar10" / "test" / "sketch" / "truck" / "qd_0001.png").is_file()


def test_fetch_unknown_and_manual_names():
    result = invoke("qd-cifar")
    assert isinstance(result.exception, UnknownNameError)
    assert "Did you mean 'qd-cifar10'?" in str(result.exception)
    result = invoke("sketchy")
    assert isinstance(result.exception, DataError)
    assert "sketchy.eye.gatech.edu" in str(result.exception) and "--data-root" in str(result.exception)


def test_fetch_without_network_is_a_clear_error(tmp_path):
    result = invoke("qd-cifar10", "--dest", tmp_path / "qd", "--no-photos", "-q")
    assert isinstance(result.exception, DataError)
    message = str(result.exception)
    url = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/airplane.npy"
    assert f"Could not download {url}" in message
    assert "--source-bitmaps" in message and "\n" not in message
    assert not (tmp_path / "qd").exists()


def test_fetch_downloads_only_a_prefix(bitmaps, tmp_path, monkeypatch):
    """The network path: a ranged read of the .npy file, parsed without the rest of the file."""
    requested = []

    class Response(io.BytesIO):
        length = None

    def urlopen(request, timeout=None):
        requested.append((request.full_url, request.get_header("Range")))
        category = Path(request.full_url).name.replace("%20", " ")
        return Response((bitmaps / category).read_bytes())

    monkeypatch.setattr(fetch_module.urllib.request, "urlopen", urlopen)
    dest = tmp_path / "qd"
    result = invoke("qd-cifar10", "--dest", dest, "--no-photos", "-q", "--train-sketches", 2, "--test-sketches", 1)
    assert result.exit_code == 0, result.output
    assert len(requested) == 9 and any(url.endswith("/numpy_bitmap/cruise%20ship.npy") for url, _ in requested)
    assert all(r == "bytes=0-6447" for _, r in requested)  # 4096 + 3 * 784 - 1
    source = np.load(bitmaps / "cruise ship.npy")
    with Image.open(dest / "test" / "sketch" / "ship" / "qd_0002.png") as im:
        assert np.array_equal(np.asarray(im), 255 - source[2].reshape(28, 28))


def test_fetch_rejects_bad_bitmaps_and_cifar_root(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for _, category, _ in CLASSES:
        np.save(bad / f"{category}.npy", np.zeros((5, 10), np.uint8))
    result = invoke("qd-cifar10", "--dest", tmp_path / "qd", "--source-bitmaps", bad, "--no-photos")
    assert isinstance(result.exception, DataError) and "not the uint8 (N, 784)" in str(result.exception)
    with pytest.raises(DataError, match="no cifar-10-batches-py"):
        fetch_module.cifar10_test(tmp_path)
    with pytest.raises(DataError, match="CIFAR-10 test split has 1000 photos per class"):
        fetch_module.fetch_qd_cifar10(tmp_path / "x", train_photos=600, test_photos=500)


def test_commands_module_does_not_import_torch():
    code = (
        "import sys, dfbench_datasets.commands; "
        "print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]"
