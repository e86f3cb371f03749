"""The folder-based datasets: ``folder``, ``qd-cifar10`` and the real-benchmark readers."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from conftest import test_data_root
import torch
from PIL import Image

from dfbench.api.datasets import MODALITIES, SPLITS, DatasetOptions, TensorImageSet
from dfbench.api.imageio import FileImageSet
from dfbench.api.errors import ConfigError, DataError
from dfbench.api.imageio import BadImageWarning, read_image, scan_image_tree
from dfbench_datasets.extended import QuickDrawExtended, SketchyExtended, TUBerlinExtended, class_key
from dfbench_datasets.folder import FolderDataset, UnpairedClassWarning
from dfbench_datasets.qd_cifar10 import CLASS_NAMES, QDCifar10Dataset

SHARED_DATA = test_data_root()  # $DFBENCH_TEST_DATA, else $DFBENCH_DATA, else ../shared/data


# -- helpers ------------------------------------------------------------------------------------


def write_image(path: Path, modality: str, seed: int = 0, size=(12, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if modality == "photo":
        im = Image.new("RGB", size, ((40 * seed) % 256, (90 + 17 * seed) % 256, 200))
    else:
        im = Image.new("L", size, 255)
        for i in range(min(size)):
            im.putpixel((i, (i + seed) % size[1]), 0)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    im.save(path, fmt)
    return path


def make_tree(root: Path, classes=("cat", "dog"), per=3, splits=SPLITS, modalities=MODALITIES) -> Path:
    for split in splits:
        for modality in modalities:
            for c, name in enumerate(classes):
                for i in range(per):
                    suffix = ".jpg" if modality == "photo" else ".png"
                    write_image(root / split / modality / name / f"{name}_{i}{suffix}", modality, seed=c * 10 + i)
    return root


def options(root=None, tmp_path=None, **kw) -> DatasetOptions:
    cache = kw.pop("cache_dir", None) or (tmp_path / "cache" if tmp_path is not None else None)
    return DatasetOptions(data_root=root, image_size=kw.pop("image_size", 16), cache_dir=cache, **kw)


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "data")


# -- imageio ------------------------------------------------------------------------------------


def test_read_image_photo_crops_non_square_to_centre(tmp_path):
    im = Image.new("RGB", (30, 10), (255, 0, 0))
    im.paste((0, 0, 255), (10, 0, 20, 10))  # the centre third is blue
    im.save(tmp_path / "wide.png")
    x = read_image(tmp_path / "wide.png", 8, "photo")
    assert x.dtype == torch.uint8 and x.shape == (3, 8, 8)
    assert x[2].float().mean() > 240 and x[0].float().mean() < 20  # the blue centre (filter edges aside)


def test_read_image_sketch_pads_with_white_and_flattens_transparency(tmp_path):
    im = Image.new("RGBA", (20, 10), (0, 0, 0, 0))  # transparent paper
    for i in range(20):
        im.putpixel((i, 5), (0, 0, 0, 255))  # a black stroke
    im.save(tmp_path / "stroke.png")
    x = read_image(tmp_path / "stroke.png", 10, "sketch")
    assert x.shape == (3, 10, 10)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey replicated
    assert x[:, 0, :].min() == 255  # padding and transparent pixels are white
    rows = x[0].float().mean(dim=1)
    assert rows.min() < 200 and int(rows.argmin()) in (4, 5)  # the stroke survives, centred


def test_read_image_grey_photo_becomes_rgb(tmp_path):
    Image.new("L", (8, 8), 100).save(tmp_path / "g.png")
    x = read_image(tmp_path / "g.png", 8, "photo")
    assert x.shape == (3, 8, 8) and int(x.min()) == int(x.max()) == 100


def test_read_image_applies_exif_orientation(tmp_path):
    im = Image.new("RGB", (20, 10), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 10, 10))  # blue left half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    x = read_image(tmp_path / "phone.jpg", 10, "photo")
    assert x[2, 0, 5] > 200 and x[0, 9, 5] > 200  # blue on top, red at the bottom once upright


def test_read_image_corrupt_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg is not a readable image") as err:
        read_image(bad, 8, "photo")
    assert "--skip-bad-images" in str(err.value)


def test_scan_ignores_non_images_and_hidden_files(tmp_path):
    folder = tmp_path / "sketch"
    write_image(folder / "cat" / "a.PNG", "sketch")
    write_image(folder / "cat" / "b.JpG", "sketch")
    (folder / "cat" / "notes.txt").write_text("hello")
    (folder / "cat" / ".DS_Store").write_bytes(b"\0\0")
    (folder / "cat" / "._a.PNG").write_bytes(b"resource fork")
    (folder / "filelist.txt").write_text("x")
    tree = scan_image_tree(folder)
    assert [Path(f.path).name for f in tree.classes["cat"]] == ["a.PNG", "b.JpG"]
    assert sorted(Path(p).name for p in tree.ignored) == ["filelist.txt", "notes.txt"]


# -- folder: loading ----------------------------------------------------------------------------


def test_folder_loads_tree(tree, tmp_path):
    bench = FolderDataset().load(options(tree, tmp_path))
    assert bench.classes == ["cat", "dog"] and bench.num_classes == 2
    assert bench.counts() == {"train/photo": 6, "train/sketch": 6, "test/photo": 6, "test/sketch": 6}
    photos = bench.get("train", "photo")
    assert isinstance(photos, TensorImageSet)
    assert photos.labels.tolist() == [0, 0, 0, 1, 1, 1]
    x = photos.batch([0, 5])
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    assert bench.split_manifest["test"]["sketch"][0] == "test/sketch/cat/cat_0.png"
    assert set(bench.split_manifest) == {"train", "test"}
    assert bench.info["root"] == str(tree) and bench.info["cache"] == "miss"


def test_folder_cache_hit_change_and_corruption(tree, tmp_path):
    opts = options(tree, tmp_path)
    first = FolderDataset().load(opts)
    second = FolderDataset().load(opts)
    assert second.info["cache"] == "hit"
    for key in first.sets:
        assert torch.equal(first.sets[key].images, second.sets[key].images)
        assert torch.equal(first.sets[key].labels, second.sets[key].labels)
    assert first.split_manifest == second.split_manifest

    # a changed file invalidates the cache
    changed = tree / "train" / "photo" / "dog" / "dog_0.jpg"
    write_image(changed, "photo", seed=99)
    os.utime(changed, ns=(1, 1))
    third = FolderDataset().load(opts)
    assert third.info["cache"] == "miss"
    assert len(list((tmp_path / "cache" / "datasets").glob("*.pt"))) == 1  # the stale entry is gone

    # a corrupt cache file is rebuilt, not fatal
    (cache_file,) = (tmp_path / "cache" / "datasets").glob("*.pt")
    cache_file.write_bytes(b"garbage")
    fourth = FolderDataset().load(opts)
    assert fourth.info["cache"] == "miss"
    assert torch.equal(fourth.get("train", "photo").images, third.get("train", "photo").images)
    assert FolderDataset().load(opts).info["cache"] == "hit"


def test_folder_lazy_matches_in_memory(tree, tmp_path):
    mem = FolderDataset().load(options(tree, tmp_path))
    lazy = FolderDataset().load(options(tree, tmp_path, extra={"in_memory": False}))
    assert isinstance(lazy.get("test", "photo"), FileImageSet)
    assert lazy.split_manifest == mem.split_manifest
    for key in mem.sets:
        n = len(mem.sets[key])
        assert torch.equal(mem.sets[key].load_uint8(list(range(n))), lazy.sets[key].load_uint8(list(range(n))))


def test_folder_non_image_files_are_ignored(tree, tmp_path):
    (tree / "train" / "photo" / "cat" / "README.txt").write_text("about cats")
    (tree / "train" / "photo" / "cat" / ".DS_Store").write_bytes(b"\0")
    (tree / "test" / "sketch" / "Thumbs.db").write_bytes(b"\0")
    bench = FolderDataset().load(options(tree, tmp_path))
    assert bench.counts()["train/photo"] == 6
    assert bench.info["ignored_files"] == 2
    assert "train/photo/cat/README.txt" in bench.info["ignored_examples"]


# -- folder: bad input --------------------------------------------------------------------------


def test_folder_without_data_root():
    with pytest.raises(DataError, match="--data-root") as err:
        FolderDataset().load(DatasetOptions(data_root=None))
    assert "{train,test}/{photo,sketch}/<class>" in str(err.value)


def test_folder_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        FolderDataset().load(options(tmp_path / "nowhere", tmp_path))


def test_folder_missing_test_split(tmp_path):
    root = make_tree(tmp_path / "data", splits=("train",))
    with pytest.raises(DataError, match="no 'test' folder"):
        FolderDataset().load(options(root, tmp_path))


def test_folder_unsplit_tree_is_explained(tmp_path):
    root = tmp_path / "data"
    write_image(root / "photo" / "cat" / "a.jpg", "photo")
    write_image(root / "sketch" / "cat" / "a.png", "sketch")
    with pytest.raises(DataError, match="split the images into train/ and test/"):
        FolderDataset().load(options(root, tmp_path))


def test_folder_root_one_level_too_high(tmp_path):
    make_tree(tmp_path / "data" / "mine")
    with pytest.raises(DataError, match="Did you mean --data-root .*mine"):
        FolderDataset().load(options(tmp_path / "data", tmp_path))


def test_folder_missing_modality_with_case_hint(tmp_path):
    root = make_tree(tmp_path / "data")
    (root / "train" / "sketch").rename(root / "train" / "Sketch")
    with pytest.raises(DataError, match="no 'sketch' folder.*rename it to 'sketch'"):
        FolderDataset().load(options(root, tmp_path))


def test_folder_empty_class_folder(tree, tmp_path):
    for split in SPLITS:
        for modality in MODALITIES:
            (tree / split / modality / "emu").mkdir()
    (tree / "test" / "photo" / "emu" / "notes.txt").write_text("todo")
    with pytest.raises(DataError, match=r"class folder .*emu contains no image files") as err:
        FolderDataset().load(options(tree, tmp_path))
    assert "\n" not in str(err.value)


def test_folder_class_in_one_modality_only(tree, tmp_path):
    write_image(tree / "train" / "photo" / "owl" / "a.jpg", "photo")
    write_image(tree / "test" / "photo" / "owl" / "a.jpg", "photo")
    expected = "class 'owl' has train/photo and test/photo but no train/sketch and test/sketch"
    with pytest.raises(DataError, match=expected):
        FolderDataset().load(options(tree, tmp_path))
    with pytest.warns(UnpairedClassWarning, match="owl"):
        bench = FolderDataset().load(options(tree, tmp_path, extra={"unpaired_classes": "drop"}))
    assert bench.classes == ["cat", "dog"] and "owl" in bench.info["dropped_classes"]


def test_folder_no_classes(tmp_path):
    root = tmp_path / "data"
    for split in SPLITS:
        for modality in MODALITIES:
            (root / split / modality).mkdir(parents=True)
    with pytest.raises(DataError, match="holds no class folders"):
        FolderDataset().load(options(root, tmp_path))


def test_folder_corrupt_image_fails_or_is_skipped(tree, tmp_path):
    bad = tree / "test" / "photo" / "dog" / "dog_1.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match="dog_1.jpg is not a readable image"):
        FolderDataset().load(options(tree, tmp_path))
    with pytest.warns(BadImageWarning, match="dog_1.jpg"):
        bench = FolderDataset().load(options(tree, tmp_path, skip_bad_images=True))
    assert bench.counts()["test/photo"] == 5
    assert bench.info["skipped_images"] == ["test/photo/dog/dog_1.jpg"]
    assert "test/photo/dog/dog_1.jpg" not in bench.split_manifest["test"]["photo"]
    assert bench.get("test", "photo").labels.tolist() == [0, 0, 0, 1, 1]


def test_folder_corrupt_image_skipped_lazily(tree, tmp_path):
    bad = tree / "train" / "sketch" / "cat" / "cat_2.png"
    bad.write_bytes(b"\x89PNG broken")
    lazy = FolderDataset().load(options(tree, tmp_path, extra={"in_memory": False}))
    with pytest.raises(DataError, match="cat_2.png"):
        lazy.get("train", "sketch").load_uint8([2])
    with pytest.warns(BadImageWarning, match="cat_2.png"):  # every file checked once, when the set is made
        tolerant = FolderDataset().load(options(tree, tmp_path, skip_bad_images=True, extra={"in_memory": False}))
    sketches = tolerant.get("train", "sketch")
    assert len(sketches) == len(lazy.get("train", "sketch")) - 1  # left out, never a blank stand-in under its label
    assert not any(f.endswith("cat_2.png") for f in sketches.files)
    assert tolerant.info["skipped_images"] == ["train/sketch/cat/cat_2.png"]
    assert sketches.load_uint8(list(range(len(sketches)))).shape == (len(sketches), 3, 16, 16)


def test_folder_unknown_extra_key(tree, tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'in_memory'"):
        FolderDataset().load(options(tree, tmp_path, extra={"in_memroy": True}))


# -- qd-cifar10 ---------------------------------------------------------------------------------


@pytest.fixture
def shared_qd(monkeypatch, tmp_path):
    if not (SHARED_DATA / "qd-cifar10").is_dir():
        pytest.skip(f"the staged data {SHARED_DATA}/qd-cifar10 is not there")
    monkeypatch.setenv("DFBENCH_DATA", str(SHARED_DATA))
    monkeypatch.setenv("DFBENCH_CACHE", str(tmp_path / "cache"))
    return SHARED_DATA / "qd-cifar10"


def test_qd_cifar10_from_dfbench_data(shared_qd, tmp_path):
    bench = QDCifar10Dataset().load(DatasetOptions(image_size=32))  # root and cache from the environment
    assert bench.classes == sorted(CLASS_NAMES) and bench.num_classes == 9
    assert bench.info["root"] == str(shared_qd)
    # README: per class 70/30 sketches and 500/500 photos
    assert bench.counts() == {"train/photo": 4500, "train/sketch": 630, "test/photo": 4500, "test/sketch": 270}
    per_class = {("train", "sketch"): 70, ("test", "sketch"): 30, ("train", "photo"): 500, ("test", "photo"): 500}
    for (split, modality), per in per_class.items():
        assert torch.bincount(bench.get(split, modality).labels).tolist() == [per] * 9
    sketches = bench.get("test", "sketch").load_uint8(range(5))
    assert int(sketches[:, :, 0, 0].min()) > 200  # black on white
    assert bench.split_manifest["train"]["photo"][0] == "train/photo/airplane/cifar_0000.jpg"
    assert (tmp_path / "cache" / "datasets").is_dir()


def test_qd_cifar10_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("DFBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    with pytest.raises(DataError, match="dfbench data fetch qd-cifar10") as err:
        QDCifar10Dataset().load(DatasetOptions())
    assert "DFBENCH_DATA" in str(err.value) and "--data-root" in str(err.value)


def test_qd_cifar10_wrong_classes(tmp_path):
    root = make_tree(tmp_path / "qd", classes=("airplane", "car", "emu"), per=1)
    expected = "lacks the classes bird, cat, dog.*has classes qd-cifar10 does not define \\(emu\\)"
    with pytest.raises(DataError, match=expected):
        QDCifar10Dataset().load(options(root, tmp_path))


# -- the real-benchmark readers -----------------------------------------------------------------


def make_release(root: Path, sketch_dir: str, photo_dir: str, sketch_classes, photo_classes, per=5) -> Path:
    for c, name in enumerate(sketch_classes):
        for i in range(per):
            write_image(root / sketch_dir / name / f"{i}.png", "sketch", seed=c + i)
    for c, name in enumerate(photo_classes):
        for i in range(per + 2):
            write_image(root / photo_dir / name / f"img_{i}.jpg", "photo", seed=c + i)
    return root


def test_sketchy_official_layout(tmp_path):
    root = make_release(
        tmp_path / "sketchy", "256x256/sketch/tx_000000000000", "EXTEND_image_sketchy",
        ["airplane", "hot-air_balloon", "zebra"], ["airplane", "hot-air_balloon", "wine_bottle"],
    )
    (root / "256x256" / "sketch" / "tx_000000000010" / "airplane").mkdir(parents=True)  # other variants: ignored
    bench = SketchyExtended().load(options(root, tmp_path, seed=3))
    assert bench.classes == ["airplane", "hot-air_balloon"]
    assert isinstance(bench.get("train", "photo"), FileImageSet)
    # per class 5 sketches -> 1 test, 7 photos -> 1 test (20%)
    assert bench.counts() == {"train/photo": 12, "train/sketch": 8, "test/photo": 2, "test/sketch": 2}
    assert bench.info["split"]["test_fraction"] == 0.2 and bench.info["split"]["seed"] == 3
    warnings_text = " ".join(bench.info["warnings"])
    assert "zebra" in warnings_text and "wine_bottle" in warnings_text
    assert bench.split_manifest["test"]["sketch"][0].startswith("256x256/sketch/tx_000000000000/airplane/")
    x = bench.get("test", "photo").batch([0])
    assert x.shape == (1, 3, 16, 16)


def test_sketchy_falls_back_to_original_photos(tmp_path):
    root = make_release(tmp_path / "s", "sketch/tx_000000000000", "photo/tx_000000000000", ["cat"], ["cat"])
    bench = SketchyExtended().load(options(root, tmp_path))
    assert "extended photo set was not found" in " ".join(bench.info["warnings"])


def test_tuberlin_matches_spaces_and_underscores(tmp_path):
    root = make_release(tmp_path / "tub", "png", "ImageResized", ["alarm clock", "bear"], ["alarm_clock", "bear"])
    (root / "png" / "filelist.txt").write_text("alarm clock/1.png\n")
    bench = TUBerlinExtended().load(options(root, tmp_path))
    assert bench.classes == ["alarm clock", "bear"]
    assert class_key("Alarm-Clock") == class_key("alarm clock")
    assert "warnings" not in bench.info and bench.info["ignored_files"] == 1


def test_quickdraw_layout_under_alias_and_deterministic_split(tmp_path, monkeypatch):
    monkeypatch.setenv("DFBENCH_DATA", str(tmp_path / "data"))
    make_release(
        tmp_path / "data" / "quickdraw" / "QuickDraw", "QuickDraw_sketches_final", "QuickDraw_images_final",
        ["bat", "cow"], ["bat", "cow"], per=10,
    )
    a = QuickDrawExtended().load(options(None, tmp_path, seed=1))
    b = QuickDrawExtended().load(options(None, tmp_path, seed=1))
    c = QuickDrawExtended().load(options(None, tmp_path, seed=2))
    assert a.split_manifest == b.split_manifest
    assert a.split_manifest != c.split_manifest
    assert a.counts() == {"train/photo": 20, "train/sketch": 16, "test/photo": 4, "test/sketch": 4}
    for modality in MODALITIES:  # stratified: every class in both splits, no file in both
        for split in SPLITS:
            assert sorted(set(a.get(split, modality).labels.tolist())) == [0, 1]
        assert not set(a.split_manifest["train"][modality]) & set(a.split_manifest["test"][modality])
    fixed = QuickDrawExtended().load(options(None, tmp_path, seed=2, extra={"split_seed": 1}))
    assert fixed.split_manifest == a.split_manifest
    half = QuickDrawExtended().load(options(None, tmp_path, extra={"test_fraction": 0.5}))
    assert half.counts()["test/sketch"] == 10


def test_extended_explicit_dirs_and_split_file(tmp_path):
    root = make_release(tmp_path / "mine", "my sketches", "my photos", ["a", "b"], ["a", "b"])
    extra = {"sketch_dir": "my sketches", "photo_dir": str(root / "my photos")}
    bench = TUBerlinExtended().load(options(root, tmp_path, extra=extra))
    assert bench.classes == ["a", "b"]
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"split_manifest": bench.split_manifest}))
    again = TUBerlinExtended().load(options(root, tmp_path, seed=7, extra={**extra, "split_file": str(split_file)}))
    assert again.split_manifest == bench.split_manifest
    assert again.get("test", "sketch").labels.tolist() == bench.get("test", "sketch").labels.tolist()


def test_extended_bad_input(tmp_path):
    with pytest.raises(DataError, match="Sangkloy"):
        SketchyExtended().load(options(tmp_path / "absent", tmp_path))
    root = tmp_path / "odd"
    write_image(root / "drawings" / "cat" / "1.png", "sketch")
    with pytest.raises(DataError, match="Found no sketch folder of TU-Berlin-Extended.*it holds: drawings"):
        TUBerlinExtended().load(options(root, tmp_path))
    with pytest.raises(DataError, match="'photo_dir' for 'tuberlin' does not exist"):
        TUBerlinExtended().load(options(root, tmp_path, extra={"sketch_dir": "drawings", "photo_dir": "nope"}))
    with pytest.raises(ConfigError, match="Did you mean 'test_fraction'"):
        QuickDrawExtended().load(options(root, tmp_path, extra={"test_fractoin": 0.3}))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        QuickDrawExtended().load(options(root, tmp_path, extra={"test_fraction": 1.5}))
    write_image(root / "pics" / "dog" / "1.jpg", "photo")
    with pytest.raises(DataError, match="class folder names do not match"):
        TUBerlinExtended().load(options(root, tmp_path, extra={"sketch_dir": "drawings", "photo_dir": "pics"}))


def test_registered_targets_import(plugin_system):
    from dfbench_datasets import commands, extended, folder, qd_cifar10  # noqa: F401

    datasets = plugin_system.registry("datasets")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for target in (FolderDataset, QDCifar10Dataset, SketchyExtended, TUBerlinExtended, QuickDrawExtended):
            assert datasets.load(target.name) is target and target.description == datasets.get(target.name).description
