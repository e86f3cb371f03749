"""The real-benchmark loaders against miniature replicas of the releases' exact layouts (tests/replicas.py)."""

import shutil
from pathlib import Path

import pytest

from dfbench.api.datasets import MODALITIES, SPLITS, DatasetOptions
from dfbench.api.errors import ConfigError
from dfbench_datasets.extended import (
    ZERO_SHOT_TEST_CLASSES, QuickDrawExtended, SketchyExtended, TUBerlinExtended, class_key,
)

import replicas


def load(cls, root, tmp_path, **extra):
    options = DatasetOptions(data_root=root, image_size=32, seed=0, cache_dir=tmp_path / "cache", extra=extra)
    return cls().load(options)


def check_images(bench):
    """One image of every split and modality decodes to (3, 32, 32); sketches are white paper with ink."""
    for split in SPLITS:
        for modality in MODALITIES:
            x = bench.get(split, modality).load_uint8([0])
            assert x.shape == (1, 3, 32, 32)
            if modality == "sketch":
                assert x.max() == 255 and x.min() < 200


@pytest.fixture(scope="module")
def sketchy(tmp_path_factory):
    return replicas.build_sketchy(tmp_path_factory.mktemp("sketchy"))


def test_sketchy_extended_as_extracted(sketchy, tmp_path):
    bench = load(SketchyExtended, sketchy, tmp_path)
    assert bench.classes == sorted(replicas.SKETCHY_CLASSES)  # hot-air_balloon, jack-o-lantern, car_(sedan) kept
    assert bench.info["sketch_dir"].endswith("256x256/sketch/tx_000000000000")
    assert bench.info["photo_dir"].endswith("EXTEND_image_sketchy")
    assert "warnings" not in bench.info
    counts = bench.counts()
    # sketches: 3 photos x 2 sketches per class, from tx_000000000000 only (not the 5 augmented copies)
    assert counts["train/sketch"] + counts["test/sketch"] == 6 * 3 * 2
    # photos: 3 ext_*.jpg + 3 originals per class
    assert counts["train/photo"] + counts["test/photo"] == 6 * 6
    names = [Path(p).name for p in bench.split_manifest["train"]["sketch"] + bench.split_manifest["test"]["sketch"]]
    assert all(n.split("-")[0].startswith("n") and n.endswith((f"-1.png", "-2.png")) for n in names)
    check_images(bench)


def test_sketchy_inside_a_folder_named_after_the_archive(tmp_path):
    root = tmp_path / "data"
    replicas.build_sketchy(root / "rendered_256x256", extended=False)
    bench = load(SketchyExtended, root, tmp_path)
    assert bench.info["sketch_dir"].endswith("rendered_256x256/256x256/sketch/tx_000000000000")
    assert bench.info["photo_dir"].endswith("rendered_256x256/256x256/photo/tx_000000000000")
    assert "extended photo set was not found" in " ".join(bench.info["warnings"])  # the original release: noted
    assert bench.counts()["train/photo"] + bench.counts()["test/photo"] == 6 * 3


def test_sketchy_as_the_sem_pcyc_script_arranges_it(sketchy, tmp_path):
    # the SEM-PCYC / Doodle-to-Search script moves 256x256 to Sketchy/ and EXTEND_image_sketchy to extended_photo
    root = tmp_path / "data"
    shutil.copytree(sketchy / "256x256", root / "Sketchy")
    shutil.copytree(sketchy / "EXTEND_image_sketchy", root / "Sketchy" / "extended_photo")
    shutil.move(root / "Sketchy" / "sketch" / "tx_000000000000" / "hot-air_balloon",
                root / "Sketchy" / "sketch" / "tx_000000000000" / "hot_air_balloon")
    bench = load(SketchyExtended, root, tmp_path)
    assert len(bench.classes) == 6 and "hot_air_balloon" in bench.classes  # matched to the photos' hot-air_balloon
    assert bench.info["photo_dir"].endswith("Sketchy/extended_photo")
    assert "warnings" not in bench.info


def test_tuberlin_matches_the_misspelt_photo_folders(tmp_path):
    root = replicas.build_tuberlin(tmp_path / "tub", sketches_per_class=2, photos_per_class=2, size=400)
    bench = load(TUBerlinExtended, root, tmp_path)
    assert bench.classes == sorted(replicas.TUBERLIN_CLASSES, key=class_key)
    assert "warnings" not in bench.info  # bearanimal, griaffe, spacesshuttle, wristwatching, mouse: all matched
    assert bench.info["ignored_files"] == 1  # png/filelist.txt
    # 'mouse' (photos) is the animal, 'computermouse' the device
    test_and_train = bench.split_manifest["train"]["photo"] + bench.split_manifest["test"]["photo"]
    label_of = dict(zip(test_and_train, bench.get("train", "photo").labels.tolist() + bench.get("test", "photo").labels.tolist()))
    mouse = {bench.classes[label_of[p]] for p in test_and_train if p.startswith("ImageResized/mouse/")}
    assert mouse == {"mouse (animal)"}
    check_images(bench)


def test_tuberlin_full_size_sketches_decode(tmp_path):
    root = replicas.build_tuberlin(tmp_path / "tub", sketches_per_class=1, photos_per_class=1)
    from PIL import Image

    with Image.open(root / "png" / "airplane" / "1.png") as im:
        assert im.size == (1111, 1111) and im.mode == "L"
    assert (root / "png" / "alarm clock" / "2.png").is_file()  # numbered across classes
    bench = load(TUBerlinExtended, root, tmp_path)
    assert bench.get("train", "sketch").load_uint8([0]).shape == (1, 3, 32, 32)


def test_quickdraw_extended_mixed_spellings(tmp_path):
    root = replicas.build_quickdraw(tmp_path / "qd")
    bench = load(QuickDrawExtended, root, tmp_path)
    assert bench.classes == sorted(replicas.QUICKDRAW_CLASSES, key=class_key)
    assert "warnings" not in bench.info
    check_images(bench)


def test_published_zero_shot_class_sets(sketchy, tmp_path):
    test = load(SketchyExtended, sketchy, tmp_path, class_set="zero-shot-test")
    assert test.classes == ["bat", "helicopter"]
    assert "19 of the 21 published zero-shot test classes are not in this copy" in " ".join(test.info["warnings"])
    train = load(SketchyExtended, sketchy, tmp_path, class_set="zero-shot-train")
    assert set(train.classes) == set(replicas.SKETCHY_CLASSES) - {"bat", "helicopter"}
    assert test.info["class_set"] == "zero-shot-test"
    qd = load(QuickDrawExtended, replicas.build_quickdraw(tmp_path / "qd", 1, 1), tmp_path, class_set="zero-shot-test")
    assert qd.classes == ["bat", "cow", "palm tree"]  # the published list spells it palm_tree
    assert len(ZERO_SHOT_TEST_CLASSES["sketchy"]) == 21 and len(ZERO_SHOT_TEST_CLASSES["quickdraw"]) == 25


def test_zero_shot_class_sets_refused_where_none_is_published(tmp_path):
    root = replicas.build_tuberlin(tmp_path / "tub", 1, 1, size=64)
    with pytest.raises(ConfigError, match="no published zero-shot class split.*Shen et al"):
        load(TUBerlinExtended, root, tmp_path, class_set="zero-shot-test")
    with pytest.raises(ConfigError, match="must be one of all, zero-shot-test, zero-shot-train"):
        load(TUBerlinExtended, root, tmp_path, class_set="unseen")


def test_replica_archives_have_the_release_top_folders(tmp_path):
    import zipfile

    tree = replicas.build_quickdraw(tmp_path / "qd", 1, 1)
    archives = replicas.build_archives("quickdraw", tree, tmp_path / "zips")
    with zipfile.ZipFile(archives["QuickDraw_sketches_final.zip"]) as zf:
        tops = {n.split("/")[0] for n in zf.namelist()}
    assert tops == {"QuickDraw_sketches_final"}


def test_the_revision_follows_the_content_of_the_files(tmp_path):
    """Two same-sized sketches swapped in place give another revision (the teachers key on it), and
    the same content in another folder gives the same one."""
    root = replicas.build_sketchy(tmp_path / "a")
    first = load(SketchyExtended, root, tmp_path)
    assert first.info["revision"].startswith("c")
    assert load(SketchyExtended, root, tmp_path).info["revision"] == first.info["revision"]
    files = sorted(p for p in root.rglob("*.png") if "tx_000000000000" in str(p))
    by_size: dict = {}
    for p in files:
        by_size.setdefault(p.stat().st_size, []).append(p)
    a, b = next(group[:2] for group in by_size.values() if len(group) > 1 and group[0].read_bytes() != group[1].read_bytes())
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    assert load(SketchyExtended, root, tmp_path).info["revision"] != first.info["revision"]
    a.write_bytes(data_a)
    b.write_bytes(data_b)
    moved = tmp_path / "b"
    shutil.copytree(root, moved)
    assert load(SketchyExtended, moved, tmp_path).info["revision"] == first.info["revision"]
