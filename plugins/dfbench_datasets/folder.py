"""The ``folder`` dataset: your own photos and sketches, already split into train and test.

Layout (class folders are matched by name across modalities and splits; labels follow their
sorted order)::

    ROOT/train/photo/<class>/<image files>
    ROOT/train/sketch/<class>/<image files>
    ROOT/test/photo/<class>/<image files>
    ROOT/test/sketch/<class>/<image files>

Small trees (up to :data:`IN_MEMORY_MAX_IMAGES` images and :data:`IN_MEMORY_MAX_BYTES` of pixels)
are decoded once into uint8 tensors and cached under ``<cache>/datasets``, keyed by the root, the
image size and every file's path, size and modification time; larger ones are read lazily.

``options.extra`` keys: ``in_memory`` (true/false: force either way), ``cache`` (false: neither
read nor write the tensor cache), ``unpaired_classes`` (``"error"``, the default, or ``"drop"``:
leave out, with a warning, classes that lack a modality or a split).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dfbench.api.datasets import SPLITS, Benchmark, DatasetOptions, DatasetPlugin, TensorImageSet
from dfbench.api.modalities import DEFAULT_PAIR
from dfbench.api.errors import ConfigError, DataError, did_you_mean
from dfbench.api.imageio import make_file_image_set, read_images, scan_image_tree
from dfbench.api.options import Options, option

log = logging.getLogger("dfbench.datasets")

IN_MEMORY_MAX_IMAGES = 50_000
IN_MEMORY_MAX_BYTES = 1 << 30  # 1 GiB of uint8 pixels
CACHE_FORMAT = 1
LAYOUT = "{train,test}/{photo,sketch}/<class>/<image files>"

#: this dataset's modalities: the default pair's (gallery, query)
MODALITIES = DEFAULT_PAIR.keys


@dataclass
class FolderOptions(Options):
    """``data.options`` of the folder datasets (``folder``, ``qd-cifar10``)."""

    in_memory: bool | None = option(None, help="hold the decoded images in memory (null: when they fit in 1 GiB)")
    cache: bool = option(True, help="read and write the tensor cache of the decoded images")
    unpaired_classes: Literal["error", "drop"] = option(
        "error", help="a class missing from a split or modality: an error, or left out with a warning"
    )


FOLDER_EXTRA_KEYS = tuple(FolderOptions())


class UnpairedClassWarning(UserWarning):
    """A class present in only some splits or modalities was left out (``unpaired_classes: drop``)."""


def check_extra(dataset: str, extra: dict, allowed) -> None:
    """Raise :class:`ConfigError` for keys of ``options.extra`` a dataset does not know."""
    for key in extra or {}:
        if key not in allowed:
            raise ConfigError(
                f"Unknown option '{key}' for the dataset '{dataset}'.{did_you_mean(str(key), allowed)} "
                f"It accepts: {', '.join(allowed)}. Fix or remove it in the config's data.options."
            )


def _bool_extra(dataset: str, extra: dict, key: str, default):
    value = extra.get(key, default)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"The option '{key}' of the dataset '{dataset}' must be true or false, got {value!r}.")


def _rel(path: str, root: Path) -> str:
    """``path`` relative to ``root``, with '/' separators (fast path for paths listed under root)."""
    prefix = os.path.join(str(root), "")
    rel = path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, root)
    return rel.replace(os.sep, "/") if os.sep != "/" else rel


def _near_miss(folder: Path, wanted: str) -> str:
    """' (found 'Photo': rename it to 'photo')' when a differently-cased sibling exists."""
    try:
        names = [e.name for e in os.scandir(folder) if e.is_dir()]
    except OSError:
        return ""
    same = [n for n in names if n.lower() == wanted.lower() and n != wanted]
    if same:
        return f" (there is a folder '{same[0]}': rename it to '{wanted}')"
    close = did_you_mean(wanted, names)
    return f" ({close.strip()} Rename it to '{wanted}'.)" if close else ""


class FolderLayout:
    """The validated file lists of a ``{train,test}/{photo,sketch}/<class>/`` tree."""

    def __init__(self, root: Path, classes: list, files: dict, ignored: list, dropped: dict):
        self.root = root
        self.classes = classes  # sorted class names
        self.files = files  # {(split, modality): [(FileEntry, label), ...]}
        self.ignored = ignored  # non-image entries skipped (absolute paths)
        self.dropped = dropped  # class -> reason, with unpaired_classes: drop

    def num_images(self) -> int:
        return sum(len(v) for v in self.files.values())


def scan_folder_layout(
    root: Path, dataset: str = "folder", unpaired: str = "error", with_stats: bool = True
) -> FolderLayout:
    """Check a ``{train,test}/{photo,sketch}/<class>/`` tree and list its files.

    Every problem raises a one-paragraph :class:`DataError` saying what is wrong and how to fix it.
    """
    hint = f"A '{dataset}' data root must hold {LAYOUT}."
    if not root.exists():
        raise DataError(
            f"The data root {root} does not exist. {hint} Pass the folder that contains 'train' and "
            "'test' with --data-root."
        )
    if not root.is_dir():
        raise DataError(f"The data root {root} is a file, not a folder. {hint}")
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            extra = ""
            if (root / "photo").is_dir() or (root / "sketch").is_dir():
                extra = (
                    " It has photo/ and sketch/ at the top instead: split the images into train/ and "
                    "test/ first (or use a dataset that splits for you, such as 'sketchy')."
                )
            else:
                inner = [p for p in _subdirs(root) if (p / "train").is_dir() and (p / "test").is_dir()]
                if inner:
                    extra = f" Did you mean --data-root {inner[0]}?"
            raise DataError(
                f"The data root {root} has no '{split}' folder{_near_miss(root, split)}. {hint} "
                f"Create {split_dir} with photo/ and sketch/ class folders, or point --data-root at the "
                f"right folder.{extra}"
            )
        for modality in MODALITIES:
            if not (split_dir / modality).is_dir():
                raise DataError(
                    f"{split_dir} has no '{modality}' folder{_near_miss(split_dir, modality)}. {hint} "
                    f"Put the {split} {modality}s in {split_dir / modality}/<class>/."
                )

    trees = {}
    ignored: list[str] = []
    for split in SPLITS:
        for modality in MODALITIES:
            tree = scan_image_tree(root / split / modality, with_stats=with_stats)
            trees[(split, modality)] = tree
            ignored.extend(tree.ignored)
            if not tree.classes:
                raise DataError(
                    f"{tree.folder} holds no class folders. {hint} Put each class's {modality}s in "
                    f"{tree.folder}/<class name>/ (the class folder names must match across photo and "
                    "sketch, train and test)."
                )
            if tree.empty:
                first = tree.folder / tree.empty[0]
                more = f" (and {len(tree.empty) - 1} more: {', '.join(tree.empty[1:6])})" if len(tree.empty) > 1 else ""
                noted = [p for p in tree.ignored if Path(p).parent == first]
                found = f"; it contains {len(noted)} non-image entries such as {Path(noted[0]).name}" if noted else ""
                raise DataError(
                    f"The class folder {first} contains no image files{found}{more}. Image files end in "
                    f"{', '.join(_suffixes())} (any case). Add images to it or remove the folder from "
                    "every split and modality."
                )

    # classes must be present in every split and modality
    everywhere = set.intersection(*(set(t.classes) for t in trees.values()))
    union = set.union(*(set(t.classes) for t in trees.values()))
    dropped: dict[str, str] = {}
    problems = []
    for name in sorted(union - everywhere):
        have = [f"{s}/{m}" for (s, m), t in trees.items() if name in t.classes]
        missing = [f"{s}/{m}" for (s, m), t in trees.items() if name not in t.classes]
        dropped[name] = f"present in {', '.join(have)} but not in {', '.join(missing)}"
        problems.append(f"class '{name}' has {_describe_have(have)} but no {_describe_have(missing)}")
    if problems and unpaired == "error":
        first = problems[0]
        more = ""
        if len(problems) > 1:
            listed = "; ".join(problems[1:4]) + ("; ..." if len(problems) > 4 else "")
            more = f" ({len(problems) - 1} more: {listed})"
        raise DataError(
            f"In {root}, {first}, so the dataset cannot pair it{more}. Every class needs photos and "
            "sketches in both train and test, in folders of the same name. Add the missing folder, "
            "rename it if it is spelt differently, or remove the class; or leave such classes out with a "
            "warning with the dataset option unpaired_classes: drop (--set data.options.unpaired_classes=drop)."
        )
    for name, reason in dropped.items():
        warnings.warn(f"{dataset}: leaving out class '{name}' ({reason})", UnpairedClassWarning, stacklevel=3)
    classes = sorted(everywhere)
    if not classes:
        raise DataError(
            f"No class of {root} has both photos and sketches in both train and test, so there is "
            f"nothing to load. {hint} Use the same class folder names in every split and modality."
        )
    if len(classes) < 2:
        raise DataError(
            f"{root} has a single class ('{classes[0]}'{' after leaving out ' + ', '.join(sorted(dropped)) if dropped else ''}). "
            "Retrieval needs at least two classes: with one, every gallery image is relevant to every "
            "query and every metric is 1.0 whatever the model. Add the folders of a second class (or more) "
            "to every split and modality."
        )
    files = {}
    for key, tree in trees.items():
        files[key] = [(f, label) for label, name in enumerate(classes) for f in tree.classes[name]]
    return FolderLayout(root, classes, files, sorted(ignored), dropped)


def _describe_have(where: list) -> str:
    return " and ".join(where) if len(where) <= 2 else ", ".join(where[:-1]) + " and " + where[-1]


def _suffixes():
    from dfbench.api.datasets import IMAGE_SUFFIXES

    return IMAGE_SUFFIXES


def _subdirs(folder: Path) -> list:
    try:
        return sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


# -- the tensor cache ---------------------------------------------------------------------------


def _cache_keys(layout: FolderLayout, image_size: int, skip_bad: bool) -> tuple[str, str]:
    """(prefix identifying root + size, full key also covering every file's name, size, mtime)."""
    root = str(layout.root.resolve())
    prefix = hashlib.sha256(f"{CACHE_FORMAT}|{root}|{image_size}|{int(skip_bad)}".encode()).hexdigest()[:12]
    h = hashlib.sha256(prefix.encode())
    h.update("|".join(layout.classes).encode())
    for split in SPLITS:
        for modality in MODALITIES:
            h.update(f"#{split}/{modality}".encode())
            for entry, label in layout.files[(split, modality)]:
                h.update(f"\n{_rel(entry.path, layout.root)}\t{entry.size}\t{entry.mtime_ns}\t{label}".encode())
    return prefix, h.hexdigest()[:20]


def _fingerprint(layout: FolderLayout, cache_dir: Path | None = None) -> str:
    """A revision of the data independent of where it lies and of mtimes: every file's relative
    path, class and content digest (dfbench.api.digests: hashed once, then remembered by path, size
    and mtime), so two same-sized files swapped in place are another revision."""
    from dfbench.api.digests import DigestCache

    digests = DigestCache(cache_dir)
    h = hashlib.sha256()
    for split in SPLITS:
        for modality in MODALITIES:
            for entry, label in layout.files[(split, modality)]:
                h.update(f"{_rel(entry.path, layout.root)}\t{entry.size}\t{layout.classes[label]}\t{digests.digest(entry.path)}\n".encode())
    digests.save()
    return "c" + h.hexdigest()[:15]  # "c": a content revision (revisions before it covered names and sizes only)


def _load_cache(path: Path, key: str):
    from dfbench.api.safeload import load_torch_file

    if not path.is_file():
        return None
    try:
        payload = load_torch_file(path)
        if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT or payload.get("key") != key:
            raise ValueError("stale or foreign cache file")
        sets = {}
        for split in SPLITS:
            for modality in MODALITIES:
                entry = payload["sets"][f"{split}/{modality}"]
                sets[(split, modality)] = TensorImageSet(entry["images"], entry["labels"], files=entry["files"])
        return sets, list(payload.get("skipped", []))
    except Exception as exc:  # a corrupt or unreadable cache is rebuilt, never fatal
        log.warning("ignoring the dataset cache %s (%s: %s); rebuilding it", path, type(exc).__name__, exc)
        try:
            path.unlink()
        except OSError:
            pass
        return None


def _save_cache(path: Path, prefix: str, key: str, sets: dict, skipped: list) -> None:
    from dfbench.api.fileio import atomic_torch_save

    payload = {
        "format": CACHE_FORMAT,
        "key": key,
        "skipped": skipped,
        "sets": {
            f"{s}/{m}": {"images": sets[(s, m)].images, "labels": sets[(s, m)].labels, "files": sets[(s, m)].files}
            for s in SPLITS
            for m in MODALITIES
        },
    }
    try:
        atomic_torch_save(payload, path)
        for old in path.parent.glob(f"folder-{prefix}-*.pt"):  # older versions of the same tree
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, RuntimeError) as exc:
        warnings.warn(
            f"could not write the dataset cache {path} ({exc}); the images will be decoded again next "
            "time. Set DFBENCH_CACHE to a writable folder to keep it.",
            stacklevel=3,
        )


# -- loading ------------------------------------------------------------------------------------


def _check_not_all_skipped(root: Path, split: str, modality: str, listed: int, kept) -> None:
    """--skip-bad-images must leave images to train and test on: a split/modality whose every file
    was unreadable is bad data, not an empty benchmark."""
    if listed and not len(kept):
        raise DataError(
            f"Every one of the {listed} {split} {modality} files under {root / split / modality} is unreadable, "
            "so --skip-bad-images skipped them all and nothing is left to "
            f"{'train on' if split == 'train' else 'evaluate'}. Replace them with readable images (the warnings "
            "above name them)."
        )


def load_folder_layout(layout: FolderLayout, name: str, options: DatasetOptions) -> Benchmark:
    """Build a :class:`Benchmark` from a validated layout (in memory + cached, or lazily)."""
    extra = options.extra or {}
    start = time.perf_counter()
    size = int(options.image_size)
    n = layout.num_images()
    in_memory = _bool_extra(name, extra, "in_memory", None)
    if in_memory is None:
        in_memory = n <= IN_MEMORY_MAX_IMAGES and n * 3 * size * size <= IN_MEMORY_MAX_BYTES
    use_cache = _bool_extra(name, extra, "cache", True) and options.cache_dir is not None
    root = layout.root
    skipped: list[str] = []
    cache_state = "off"
    if in_memory:
        sets = None
        if use_cache:
            prefix, key = _cache_keys(layout, size, options.skip_bad_images)
            cache_path = Path(options.cache_dir) / "datasets" / f"folder-{prefix}-{key}.pt"
            cached = _load_cache(cache_path, key)
            if cached is not None:
                sets, skipped = cached
                cache_state = "hit"
        if sets is None:
            sets = {}
            for split in SPLITS:
                for modality in MODALITIES:
                    entries = layout.files[(split, modality)]
                    paths = [e.path for e, _ in entries]
                    images, kept, bad = read_images(paths, size, modality, options.skip_bad_images)
                    skipped.extend(_rel(b, root) for b in bad)
                    _check_not_all_skipped(root, split, modality, len(paths), kept)
                    sets[(split, modality)] = TensorImageSet(
                        images, [entries[i][1] for i in kept], files=[_rel(paths[i], root) for i in kept]
                    )
            if use_cache:
                _save_cache(cache_path, prefix, key, sets, skipped)
                cache_state = "miss"
        manifest = {s: {m: list(sets[(s, m)].files) for m in MODALITIES} for s in SPLITS}
    else:
        sets, manifest = {}, {}
        for split in SPLITS:
            manifest[split] = {}
            for modality in MODALITIES:
                entries = layout.files[(split, modality)]
                images = make_file_image_set(
                    [e.path for e, _ in entries],
                    [label for _, label in entries],
                    size,
                    modality,
                    options.skip_bad_images,
                )
                skipped.extend(_rel(b, root) for b in images.bad_files)
                _check_not_all_skipped(root, split, modality, len(entries), images.files)
                sets[(split, modality)] = images
                manifest[split][modality] = [_rel(f, root) for f in images.files]
    bench = Benchmark(name=name, classes=list(layout.classes), image_size=size, sets=sets, split_manifest=manifest)
    bench.info = {
        "root": str(root),
        "revision": _fingerprint(layout, options.cache_dir),
        "counts": bench.counts(),
        "in_memory": bool(in_memory),
        "cache": cache_state,
        "load_seconds": round(time.perf_counter() - start, 3),
    }
    if layout.ignored:
        bench.info["ignored_files"] = len(layout.ignored)
        bench.info["ignored_examples"] = [_rel(p, root) for p in layout.ignored[:10]]
    if skipped:
        bench.info["skipped_images"] = skipped
    if layout.dropped:
        bench.info["dropped_classes"] = dict(layout.dropped)
    return bench


class FolderDataset(DatasetPlugin):
    """Photos and sketches from ``--data-root`` laid out as ``{train,test}/{photo,sketch}/<class>/``."""

    name = "folder"
    needs_data_root = True
    Options = FolderOptions
    extra_keys = FOLDER_EXTRA_KEYS

    def resolve_root(self, options: DatasetOptions) -> Path:
        if options.data_root is None:
            raise DataError(
                f"The 'folder' dataset reads your own images and needs --data-root DIR, where DIR holds "
                f"{LAYOUT}: for example DIR/train/photo/cat/001.jpg and DIR/train/sketch/cat/001.png, with "
                "the same class folders in train and test."
            )
        return Path(options.data_root).expanduser()

    def check_classes(self, layout: FolderLayout) -> None:
        """Hook for datasets with a fixed class list."""

    def layout(self, options: DatasetOptions) -> FolderLayout:
        """The validated file lists of the data root (nothing decoded)."""
        extra = options.extra or {}
        check_extra(self.name, extra, self.extra_keys)
        unpaired = extra.get("unpaired_classes", "error")
        if unpaired not in ("error", "drop"):
            raise ConfigError(
                f"The option 'unpaired_classes' of the dataset '{self.name}' must be 'error' or 'drop', "
                f"got {unpaired!r}."
            )
        layout = scan_folder_layout(self.resolve_root(options), self.name, unpaired)
        self.check_classes(layout)
        return layout

    def revision(self, options: DatasetOptions) -> str:
        """The content revision of the data (every file's relative path and size, and its class),
        read from the file listing alone: part of a run's identity (dfbench.app.runner.data_identity)."""
        return _fingerprint(self.layout(options), options.cache_dir)

    def load(self, options: DatasetOptions) -> Benchmark:
        return load_folder_layout(self.layout(options), self.name, options)
