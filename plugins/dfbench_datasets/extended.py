"""Readers of the real SBIR benchmarks: QuickDraw-Extended, Sketchy(-Extended), TU-Berlin(-Extended).

Each reads a photo tree and a sketch tree, both ``<class>/<image files>``, from a root:
``--data-root``, else ``$DFBENCH_DATA/<name>`` (``<cache>/data/<name>`` when DFBENCH_DATA is
unset). The releases name their folders differently, so each reader looks for the known names
below (relative to the root, or to a sub-folder of it such as ``Sketchy/``), first match wins:

* ``sketchy`` -- sketches: ``sketch/tx_000000000000``, ``256x256/sketch/tx_000000000000``,
  ``rendered_256x256/256x256/sketch/tx_000000000000``, ``sketches``; photos:
  ``extended_photo``, ``EXTEND_image_sketchy``, ``256x256/EXTEND_image_sketchy`` (the 73,002
  photos of Sketchy-Extended), else the 12,500 original photos ``photo/tx_000000000000`` (noted).
* ``tuberlin`` -- sketches: ``png``, ``sketches``, ``sketch``; photos: ``ImageResized``,
  ``images``, ``photo``, ``extended_photo``.
* ``quickdraw`` -- sketches: ``QuickDraw_sketches_final``, ``QuickDraw_sketches``, ``sketches``,
  ``sketch``; photos: ``QuickDraw_images_final``, ``QuickDraw_images``, ``images``, ``photo``.

``options.extra`` keys: ``sketch_dir`` / ``photo_dir`` (explicit folders, relative to the root or
absolute), ``test_fraction`` (default 0.2), ``split_seed`` (default: the run's seed),
``split_file`` (a JSON split manifest, as written with a run, to reuse a published split) and
``class_set`` (``all``, the default; ``zero-shot-test`` or ``zero-shot-train``: only the classes of
the published zero-shot test split, or only the others, see :data:`ZERO_SHOT_TEST_CLASSES`).

Classes are the class folders present in both trees, matched by name ignoring case and the
difference between spaces, ``_`` and ``-``; a photo folder left unmatched is matched once more
with every character but letters and digits dropped, and through the dataset's list of known
misspelt folders (TU-Berlin's ``ImageResized`` names ``bearanimal``, ``griaffe``...); classes in
one tree only are reported in ``info["warnings"]`` (releases differ), not an error. The split is category-level and
stratified: within every class and modality, ``test_fraction`` of the files (at least one when a
class has two or more) go to test, chosen by a hash of the seed and the file's class and name, so
the same seed gives the same split on every machine and listing order. The split is returned as
``split_manifest`` and written out with each run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dfbench.api.datasets import SPLITS, Benchmark, DatasetOptions, DatasetPlugin, default_data_dir
from dfbench.api.modalities import DEFAULT_PAIR
from dfbench.api.errors import ConfigError, DataError
from dfbench.api.imageio import make_file_image_set, scan_image_tree
from dfbench.api.options import Options, option

from dfbench_datasets.folder import _rel, check_extra

log = logging.getLogger("dfbench.datasets")

DEFAULT_TEST_FRACTION = 0.2
CLASS_SETS = ("all", "zero-shot-test", "zero-shot-train")

#: this dataset's modalities: the default pair's (gallery, query)
MODALITIES = DEFAULT_PAIR.keys


@dataclass
class ExtendedOptions(Options):
    """``data.options`` of the Sketchy, TU-Berlin and QuickDraw-Extended loaders."""

    sketch_dir: str | None = option(None, help="the sketch folder, relative to the root or absolute (null: found by its release name)")
    photo_dir: str | None = option(None, help="the photo folder, relative to the root or absolute (null: found by its release name)")
    test_fraction: float = option(
        DEFAULT_TEST_FRACTION, min=0.0, max=1.0, min_exclusive=True, max_exclusive=True,
        help="fraction of each class's images in the test split (without a split file)",
    )
    split_seed: int | None = option(None, min=0, help="seed of the train/test split (null: data.seed)")
    split_file: str | None = option(None, help="a JSON file naming each split's files (a published split)")
    class_set: str = option("all", choices=CLASS_SETS, help="all classes, or a published zero-shot class set")


EXTRA_KEYS = tuple(ExtendedOptions())

#: The zero-shot test classes the SBIR literature publishes, per dataset (sketch folder spellings).
ZERO_SHOT_TEST_CLASSES = {
    # Yelamarthi et al., "A Zero-Shot Framework for Sketch Based Image Retrieval", ECCV 2018: the
    # 21 Sketchy classes that are not ImageNet-1k classes (so ImageNet-pretrained encoders never saw them)
    "sketchy": (
        "bat", "cabin", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear", "raccoon", "rhinoceros",
        "saw", "scissors", "seagull", "skyscraper", "songbird", "sword", "tree", "wheelchair", "windmill", "window",
    ),
    # Dey et al., "Doodle to Search", CVPR 2019: zeroshot_classes_quickdraw.txt of their released code
    # (github.com/sounakdey/doodle2search, src/data/), 25 classes
    "quickdraw": (
        "bat", "cow", "dolphin", "door", "giraffe", "helicopter", "mouse", "pear", "raccoon", "rhinoceros", "saw",
        "scissors", "skyscraper", "sword", "tree", "windmill", "feather", "bed", "campfire", "palm_tree",
        "fire_hydrant", "bread", "beach", "megaphone", "cactus",
    ),
}


def class_key(name: str) -> str:
    """Folder names compared across trees: lower case, runs of space/_/- as one '_'."""
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


def compact_key(name: str) -> str:
    """Letters and digits only: TU-Berlin's photo folders drop spaces and brackets (``bearanimal``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def split_rank(seed, key: str, filename: str) -> str:
    """The sort key that decides which files of a class go to test (smallest first)."""
    return hashlib.sha256(f"{seed}|{key}|{filename}".encode()).hexdigest()


def stratified_split(files_by_class: dict, test_fraction: float, seed) -> tuple[dict, dict]:
    """Split ``{class_key: [paths]}`` into ({key: train paths}, {key: test paths}), per class."""
    train, test = {}, {}
    for key, paths in files_by_class.items():
        ranked = sorted(paths, key=lambda p: (split_rank(seed, key, os.path.basename(p)), p))
        n = len(ranked)
        n_test = int(round(n * test_fraction))
        if n >= 2:
            n_test = min(max(n_test, 1), n - 1)
        else:
            n_test = 0
        test[key] = sorted(ranked[:n_test])
        train[key] = sorted(ranked[n_test:])
    return train, test


class ExtendedDataset(DatasetPlugin):
    """Shared reader; subclasses name the folders, the papers and where to get the data."""

    name = ""
    title = ""
    Options = ExtendedOptions
    needs_data_root = True
    #: sub-folders of the root that may hold the release (searched after the root itself)
    root_aliases: tuple = ()
    sketch_candidates: tuple = ()
    photo_candidates: tuple = ()
    #: photo folders that are a fallback (not the extended photo set); a note is added when used
    fallback_photo_candidates: tuple = ()
    #: one sentence: where to get the data, with the papers
    source: str = ""
    #: photo class folders spelt unlike their sketch class beyond spaces and brackets: compact name -> sketch folder
    photo_folder_aliases: dict = {}
    #: why there is no zero-shot class list, when ZERO_SHOT_TEST_CLASSES has none for this dataset
    no_zero_shot_split: str = ""

    # -- finding the trees --------------------------------------------------------------------
    def default_root(self) -> Path:
        """``$DFBENCH_DATA/<name>``, else the first of its release spellings (:attr:`root_aliases`)
        or its real subset ``<name>-mini`` (``../shared/data``) found there."""
        base = default_data_dir()
        for folder in (self.name, *self.root_aliases, f"{self.name}-mini"):
            if (base / folder).is_dir():
                return base / folder
        return base / self.name

    def _bases(self, root: Path) -> list:
        bases = [root]
        for alias in self.root_aliases:
            if (root / alias).is_dir():
                bases.append(root / alias)
        return bases

    def _layout_text(self) -> str:
        return (
            f"ROOT/<sketch folder>/<class>/<images> with the sketch folder one of "
            f"{', '.join(self.sketch_candidates)}, and ROOT/<photo folder>/<class>/<images> with the photo "
            f"folder one of {', '.join(self.photo_candidates + self.fallback_photo_candidates)}"
        )

    def _find(self, root: Path, modality: str, explicit) -> tuple[Path, str | None]:
        if explicit is not None:
            if not isinstance(explicit, (str, os.PathLike)) or not str(explicit):
                raise ConfigError(
                    f"The option '{modality}_dir' of the dataset '{self.name}' must be a folder path, "
                    f"got {explicit!r}."
                )
            path = Path(explicit).expanduser()
            path = path if path.is_absolute() else root / path
            if not path.is_dir():
                raise DataError(
                    f"The {modality} folder {path} given as '{modality}_dir' for '{self.name}' does not exist "
                    f"or is not a folder. Give a path relative to the data root {root} (or an absolute one) "
                    f"of a folder holding <class>/<image files>."
                )
            return path, None
        candidates = self.sketch_candidates if modality == "sketch" else self.photo_candidates
        fallbacks = () if modality == "sketch" else self.fallback_photo_candidates
        for group, note in ((candidates, None), (fallbacks, "fallback")):
            for base in self._bases(root):
                for rel in group:
                    path = base / rel
                    if _has_subfolder(path):
                        return path, note
        try:
            top = sorted(e.name for e in os.scandir(root) if not e.name.startswith("."))
        except OSError:
            top = []
        shown = ", ".join(top[:12]) + (", ..." if len(top) > 12 else "") if top else "nothing"
        raise DataError(
            f"Found no {modality} folder of {self.title} under {root} (it holds: {shown}). Expected "
            f"{self._layout_text()}. If your copy names them differently, pass them as the dataset options "
            f"sketch_dir and photo_dir, relative to the root (--set data.options.sketch_dir=... "
            f"--set data.options.photo_dir=...). {self.source}"
        )

    # -- loading ------------------------------------------------------------------------------
    def load(self, options: DatasetOptions) -> Benchmark:
        extra = options.extra or {}
        check_extra(self.name, extra, EXTRA_KEYS)
        test_fraction = extra.get("test_fraction", DEFAULT_TEST_FRACTION)
        numeric = isinstance(test_fraction, (int, float)) and not isinstance(test_fraction, bool)
        if not numeric or not 0 < test_fraction < 1:
            raise ConfigError(
                f"The option 'test_fraction' of the dataset '{self.name}' must be a number between 0 and 1 "
                f"(exclusive), got {test_fraction!r}; the default is {DEFAULT_TEST_FRACTION}."
            )
        class_set = extra.get("class_set", "all")
        if class_set not in CLASS_SETS:
            raise ConfigError(
                f"The option 'class_set' of the dataset '{self.name}' must be one of {', '.join(CLASS_SETS)}, "
                f"got {class_set!r}."
            )
        if class_set != "all" and self.name not in ZERO_SHOT_TEST_CLASSES:
            raise ConfigError(
                f"The dataset '{self.name}' has no published zero-shot class split in dfbench: "
                f"{self.no_zero_shot_split} Use class_set: all (the default)."
            )
        split_seed = extra.get("split_seed", options.seed)
        if isinstance(split_seed, bool) or not isinstance(split_seed, (int, str)):
            raise ConfigError(
                f"The option 'split_seed' of the dataset '{self.name}' must be an integer, got {split_seed!r}."
            )

        explicit_root = options.data_root is not None
        root = Path(options.data_root).expanduser() if explicit_root else self.default_root()
        if not root.is_dir():
            from dfbench.api.locations import default_data_label

            how = "given with --data-root" if explicit_root else f"(the default: {default_data_label(self.name)})"
            state = "is not a folder" if root.exists() else "does not exist"
            raise DataError(
                f"{self.title} was not found: {root} {how} {state}. "
                f"{self.source} Expected {self._layout_text()}. Then pass --data-root ROOT, or put it in "
                f"$DFBENCH_DATA/{self.name}."
            )

        sketch_dir, _ = self._find(root, "sketch", extra.get("sketch_dir"))
        photo_dir, photo_note = self._find(root, "photo", extra.get("photo_dir"))
        trees = {"sketch": scan_image_tree(sketch_dir), "photo": scan_image_tree(photo_dir)}

        notes: list[str] = []
        if photo_note == "fallback":
            notes.append(
                f"the extended photo set was not found; using {photo_dir} only (results are not comparable "
                "with the published Extended benchmark)"
            )
        # match classes by normalised folder name; the sketch folder's spelling names the class
        by_key = {}
        for modality, tree in trees.items():
            found = {}
            for folder_name, files in tree.classes.items():
                if not files:
                    notes.append(f"empty {modality} class folder {tree.folder / folder_name} ignored")
                    continue
                found.setdefault(class_key(folder_name), []).append(folder_name)
            by_key[modality] = found
        self._match_photo_folders(by_key)
        keys = sorted(set(by_key["sketch"]) & set(by_key["photo"]))
        for modality, other in (("sketch", "photo"), ("photo", "sketch")):
            only = sorted(set(by_key[modality]) - set(by_key[other]))
            if only:
                names = [by_key[modality][k][0] for k in only]
                notes.append(
                    f"{len(only)} classes have {modality}s but no {other}s and are left out: "
                    + ", ".join(names[:20])
                    + (", ..." if len(names) > 20 else "")
                )
        if not keys:
            raise DataError(
                f"No class of {self.title} has both sketches (in {sketch_dir}) and photos (in {photo_dir}): "
                "their class folder names do not match. Check that both folders hold <class>/<images> "
                "folders with the same class names, or pass the right ones as the dataset options "
                "sketch_dir and photo_dir (--set data.options.sketch_dir=...)."
            )
        if class_set != "all":
            keys = self._select_class_set(keys, class_set, notes)
        classes = [sorted(by_key["sketch"][k])[0] for k in keys]
        files = {
            modality: {
                k: sorted(f.path for name in by_key[modality][k] for f in trees[modality].classes[name]) for k in keys
            }
            for modality in MODALITIES
        }

        split_file = extra.get("split_file")
        if split_file is not None:
            manifest = self._read_split_file(root, split_file, files, keys)
            protocol = {"protocol": "from file", "split_file": str(split_file)}
        else:
            manifest = {s: {} for s in SPLITS}
            for modality in MODALITIES:
                train, test = stratified_split(files[modality], float(test_fraction), split_seed)
                for split, part in (("train", train), ("test", test)):
                    manifest[split][modality] = [(k, p) for k in keys for p in part[k]]
            protocol = {
                "protocol": "per-class stratified, hashed by seed and file name",
                "test_fraction": float(test_fraction),
                "seed": split_seed,
            }

        label_of = {k: i for i, k in enumerate(keys)}
        sets, rel_manifest, skipped = {}, {s: {} for s in SPLITS}, []
        for split in SPLITS:
            for modality in MODALITIES:
                items = manifest[split][modality]
                images = make_file_image_set(
                    [p for _, p in items], [label_of[k] for k, _ in items], int(options.image_size), modality,
                    options.skip_bad_images,
                )
                if items and not len(images):
                    raise DataError(
                        f"Every one of the {len(items)} {split} {modality} files of {self.name} under {root} is unreadable, so "
                        "--skip-bad-images skipped them all and nothing is left to "
                        f"{'train on' if split == 'train' else 'evaluate'}. Replace them with readable images (the warnings above name them).")
                skipped.extend(_rel(b, root) for b in images.bad_files)
                sets[(split, modality)] = images
                rel_manifest[split][modality] = [_rel(p, root) for p in images.files]
        bench = Benchmark(
            name=self.name, classes=classes, image_size=int(options.image_size), sets=sets, split_manifest=rel_manifest
        )
        bench.info = {
            "root": str(root),
            "sketch_dir": str(sketch_dir),
            "photo_dir": str(photo_dir),
            "split": protocol,
            "class_set": class_set,
            "counts": bench.counts(),
            "revision": _revision(rel_manifest, root, options.cache_dir),
        }
        if skipped:
            bench.info["skipped_images"] = skipped
        ignored = trees["sketch"].ignored + trees["photo"].ignored
        if ignored:
            bench.info["ignored_files"] = len(ignored)
        if notes:
            bench.info["warnings"] = notes
            for note in notes:
                log.info("%s: %s", self.name, note)
        return bench

    def _match_photo_folders(self, by_key: dict) -> None:
        """Move photo classes whose key matches no sketch class onto the sketch class they spell
        (letters and digits only, or a known misspelling), in place."""
        sketch_by_compact = {compact_key(name): k for k, names in by_key["sketch"].items() for name in names}
        photos = by_key["photo"]
        for key in [k for k in photos if k not in by_key["sketch"]]:
            compact = compact_key(photos[key][0])
            alias = self.photo_folder_aliases.get(compact)
            target = sketch_by_compact.get(compact_key(alias) if alias else compact)
            if target is not None:
                photos.setdefault(target, []).extend(photos.pop(key))

    def _select_class_set(self, keys: list, class_set: str, notes: list) -> list:
        published = {class_key(c) for c in ZERO_SHOT_TEST_CLASSES[self.name]}
        missing = sorted(published - set(keys))
        if missing:
            notes.append(
                f"{len(missing)} of the {len(published)} published zero-shot test classes are not in this copy: "
                + ", ".join(missing[:20])
            )
        chosen = [k for k in keys if (k in published) == (class_set == "zero-shot-test")]
        if not chosen:
            raise DataError(
                f"No class of this copy of {self.title} is in the class set '{class_set}' (the published zero-shot "
                f"test classes are {', '.join(ZERO_SHOT_TEST_CLASSES[self.name])}). Check the root, or use "
                "class_set: all."
            )
        return chosen

    def _read_split_file(self, root: Path, split_file, files: dict, keys: list) -> dict:
        path = Path(split_file).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(
                f"Could not read the split file {path} ({type(exc).__name__}: {exc}). Pass a JSON file "
                'shaped {"train": {"photo": [...], "sketch": [...]}, "test": {...}} with paths relative to '
                "the data root, as written with a run, or drop the option split_file."
            ) from exc
        if isinstance(data, dict) and "split_manifest" in data:
            data = data["split_manifest"]
        try:
            lists = {(s, m): list(data[s][m]) for s in SPLITS for m in MODALITIES}
        except (KeyError, TypeError) as exc:
            raise DataError(
                f"The split file {path} lacks {exc}: it must map train and test to photo and sketch lists "
                "of paths relative to the data root."
            ) from None
        key_of = {}
        for modality in MODALITIES:
            for k in keys:
                for p in files[modality][k]:
                    key_of[_rel(p, root)] = k
        manifest = {s: {} for s in SPLITS}
        unknown = []
        for (split, modality), rels in lists.items():
            items = []
            for rel in rels:
                k = key_of.get(Path(rel).as_posix())
                if k is None:
                    unknown.append(rel)
                else:
                    items.append((k, str(root / rel)))
            manifest[split][modality] = items
        if unknown:
            raise DataError(
                f"{len(unknown)} files listed in the split file {path} are not images of a matched class "
                f"under {root} (first: {unknown[0]}). The split was made from another copy or layout of the "
                "data: point --data-root (and sketch_dir/photo_dir) at the same layout, or drop split_file."
            )
        return manifest


def _has_subfolder(path: Path) -> bool:
    if not path.is_dir():
        return False
    with os.scandir(path) as it:
        return any(e.is_dir() and not e.name.startswith(".") for e in it)


def _revision(manifest: dict, root: Path, cache_dir) -> str:
    """The content revision of the files a load kept: each file's relative path and SHA-256 (hashed
    once, then remembered by path, size and mtime: dfbench.api.digests), per split and modality, so
    two files swapped in place, or one edited, give another revision and the teachers trained on the
    old content are not reused (they key on it)."""
    from dfbench.api.digests import DigestCache

    digests = DigestCache(cache_dir)
    h = hashlib.sha256()
    for split in SPLITS:
        for modality in MODALITIES:
            h.update(f"#{split}/{modality}\n".encode())
            for rel in manifest[split][modality]:
                h.update(f"{rel}\t{digests.digest(Path(root) / rel)}\n".encode())
    digests.save()
    return "c" + h.hexdigest()[:15]  # "c": a content revision (before, it covered the names only)


class SketchyExtended(ExtendedDataset):
    """Sketchy (Sangkloy et al. 2016) with the extended photos of Liu et al. 2017: 125 classes."""

    name = "sketchy"
    title = "Sketchy-Extended"
    root_aliases = ("Sketchy", "sketchy", "Sketchy-Extended")
    sketch_candidates = (
        "sketch/tx_000000000000",
        "256x256/sketch/tx_000000000000",
        "rendered_256x256/256x256/sketch/tx_000000000000",
        "sketches",
    )
    photo_candidates = ("extended_photo", "EXTEND_image_sketchy", "256x256/EXTEND_image_sketchy")
    fallback_photo_candidates = (
        "photo/tx_000000000000",
        "256x256/photo/tx_000000000000",
        "rendered_256x256/256x256/photo/tx_000000000000",
    )
    source = (
        "Get the Sketchy database (Sangkloy et al., 'The Sketchy Database: Learning to Retrieve Badly "
        "Drawn Bunnies', SIGGRAPH 2016; https://sketchy.eye.gatech.edu/, file rendered_256x256.7z) and "
        "the extended photos EXTEND_image_sketchy of Liu et al. ('Deep Sketch Hashing', CVPR 2017), and "
        "extract both under one root."
    )


class TUBerlinExtended(ExtendedDataset):
    """TU-Berlin (Eitz et al. 2012) with the extended photos of Zhang et al. 2016: 250 classes."""

    name = "tuberlin"
    title = "TU-Berlin-Extended"
    root_aliases = ("TU-Berlin", "TUBerlin", "tuberlin", "tu-berlin")
    sketch_candidates = ("png", "sketches", "sketch")
    photo_candidates = ("ImageResized", "images", "photo", "extended_photo")
    source = (
        "Get the TU-Berlin sketches (Eitz et al., 'How Do Humans Sketch Objects?', SIGGRAPH 2012; "
        "http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/, sketches_png.zip, which "
        "extracts to png/) and the extended photos ImageResized of Zhang et al. ('SketchNet: Sketch "
        "Classification with Web Images', CVPR 2016), as distributed with the Deep Sketch Hashing code "
        "(Liu et al., CVPR 2017), and extract both under one root."
    )
    # ImageResized/ (the photo archive) misspells or shortens these class folders; source: the
    # renames in the download script of the SEM-PCYC code (github.com/AnjanDutta/sem-pcyc) as
    # copied into the Doodle-to-Search code (github.com/sounakdey/doodle2search, download_datasets.sh)
    photo_folder_aliases = {
        "spacesshuttle": "space shuttle",
        "wristwatching": "wrist-watch",
        "tromobone": "trombone",
        "chandeler": "chandelier",
        "griaffe": "giraffe",
        "diamod": "diamond",
        "spidar": "spider",
        "mouse": "mouse (animal)",
        "pipe": "pipe (for smoking)",
    }
    no_zero_shot_split = (
        "the split used for TU-Berlin (Shen et al., 'Zero-Shot Sketch-Image Hashing', CVPR 2018: 30 test classes "
        "drawn at random) does not list its classes in the paper, and dfbench found no authoritative list to "
        "cite."
    )


class QuickDrawExtended(ExtendedDataset):
    """QuickDraw-Extended (Dey et al. 2019): 110 classes, 330k sketches, 204k photos."""

    name = "quickdraw"
    title = "QuickDraw-Extended"
    root_aliases = ("QuickDraw", "QuickDraw-Extended", "quickdraw")
    sketch_candidates = ("QuickDraw_sketches_final", "QuickDraw_sketches", "sketches", "sketch")
    photo_candidates = ("QuickDraw_images_final", "QuickDraw_images", "images", "photo")
    source = (
        "Get QuickDraw-Extended (Dey et al., 'Doodle to Search: Practical Zero-Shot Sketch-based Image "
        "Retrieval', CVPR 2019): http://datasets.cvc.uab.es/QuickDraw/QuickDraw_sketches_final.zip and "
        "QuickDraw_images_final.zip, and extract both under one root."
    )
