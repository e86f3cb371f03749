"""``shapes``: dfbench's embedded default dataset, generated procedurally in seconds (no download).

Twelve classes of simple objects (:data:`CLASSES`): circle, square, triangle, star, cross, heart,
arrow, crescent, house, ring, hexagon and lightning. Each class is drawn in two modalities:

* **photo**: the object filled with a coloured texture (flat, stripes, checker, gradient, dots or
  mottled noise, with soft shading and sometimes a dark rim) on a cluttered background (a colour
  gradient with blotches, small distractor blobs, strokes and boxes, pixel noise). Hues are
  random and independent of the class, so colour alone does not give the class away.
* **sketch**: a hand-drawn-looking outline of the object: dark strokes on white paper, with
  jittered corners, wobbly subdivided edges, varying stroke width, a start that does not quite
  meet the end, occasional short gaps and sometimes a second, retraced pass. No fill, no colour;
  grey replicated over the three channels.

Both modalities place the object at a random position, scale, rotation (limited for upright
objects such as houses and hearts) and slight aspect ratio. Images are drawn at 4x (2x above 64
pixels) the requested size and box-downsampled, which antialiases edges and thin strokes.

Defaults: 120 train and 60 test images per class and modality (options ``extra`` keys
``train_per_class`` and ``test_per_class``). Generation is deterministic from ``options.seed``:
every image has its own PCG64 stream seeded from (seed, split, modality, class, index), so the same
seed gives byte-identical tensors, train and test never share a stream, and raising a count keeps
the images already there. The drawing code lives in :mod:`dfbench_datasets.drawing`.

The generated arrays are cached (written atomically) in
``<cache_dir>/datasets/shapes-v1-s<seed>-<size>px-<train>-<test>.npz``; a cache file that cannot
be read is regenerated. Change :data:`GENERATOR` whenever the drawing changes, so that stale
caches are not reused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfbench.api.datasets import Benchmark, DatasetOptions, DatasetPlugin
from dfbench.api.modalities import DEFAULT_PAIR
from dfbench.api.errors import ConfigError
from dfbench.api.options import Options, option
from dfbench_datasets.drawing import CLASS_NAMES, SHAPES, render_photo, render_sketch

GENERATOR = "shapes-v1"
CLASSES: tuple = CLASS_NAMES
DEFAULT_TRAIN_PER_CLASS = 120
DEFAULT_TEST_PER_CLASS = 60

#: this dataset's modalities: the default pair's (gallery, query)
MODALITIES = DEFAULT_PAIR.keys


@dataclass
class ShapesOptions(Options):
    """``data.options`` of the shapes dataset."""

    train_per_class: int = option(DEFAULT_TRAIN_PER_CLASS, min=1, help="generated train images per class and modality")
    test_per_class: int = option(DEFAULT_TEST_PER_CLASS, min=1, help="generated test images per class and modality")


EXTRA_KEYS = tuple(ShapesOptions())
MIN_IMAGE_SIZE = 8

_SPLIT_IDS = {"train": 1, "test": 2}
_MODALITY_IDS = {"photo": 1, "sketch": 2}
_STREAM_TAG = 0x5EA9E5  # separates these streams from any other use of the same seed


def supersample_for(size: int) -> int:
    """The internal drawing resolution factor for an output size."""
    return 4 if size <= 64 else 2


def _seed_word(seed: int) -> int:
    """Map any int (negative ones too) one-to-one onto the non-negative ints SeedSequence takes."""
    return 2 * seed if seed >= 0 else -2 * seed - 1


def image_rng(seed: int, split: str, modality: str, class_index: int, index: int) -> np.random.Generator:
    """The random stream of one image."""
    entropy = [_STREAM_TAG, _seed_word(seed), _SPLIT_IDS[split], _MODALITY_IDS[modality], class_index, index]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def generate_images(seed: int, split: str, modality: str, per_class: int, size: int) -> np.ndarray:
    """Images of one split and modality, class after class.

    Photos: uint8 (N, 3, S, S). Sketches: uint8 (N, S, S) (one grey channel).
    """
    k = supersample_for(size)
    n = per_class * len(SHAPES)
    if modality == "photo":
        out = np.empty((n, size, size, 3), dtype=np.uint8)
        render = render_photo
    elif modality == "sketch":
        out = np.empty((n, size, size), dtype=np.uint8)
        render = render_sketch
    else:
        raise ValueError(f"unknown modality {modality!r}")
    for ci, shape in enumerate(SHAPES):
        for i in range(per_class):
            out[ci * per_class + i] = render(image_rng(seed, split, modality, ci, i), shape, size, k)
    if modality == "photo":
        out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
    return out


def generate_arrays(seed: int, size: int, train_per_class: int, test_per_class: int) -> dict:
    """All four image arrays, keyed ``<split>_<modality>`` (see :func:`generate_images`)."""
    per_class = {"train": train_per_class, "test": test_per_class}
    return {
        f"{split}_{modality}": generate_images(seed, split, modality, per_class[split], size)
        for split in ("train", "test")
        for modality in MODALITIES
    }


def _expected_shapes(size: int, train_per_class: int, test_per_class: int) -> dict:
    out = {}
    for split, pc in (("train", train_per_class), ("test", test_per_class)):
        n = pc * len(SHAPES)
        out[f"{split}_photo"] = (n, 3, size, size)
        out[f"{split}_sketch"] = (n, size, size)
    return out


def cache_path(cache_dir: Path, seed: int, size: int, train_per_class: int, test_per_class: int) -> Path:
    return Path(cache_dir) / "datasets" / f"{GENERATOR}-s{seed}-{size}px-{train_per_class}-{test_per_class}.npz"


def _read_cache(path: Path, expected: dict) -> dict | None:
    """The cached arrays, or None (with a warning) when the file is unreadable or does not fit."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            generator = str(data["generator"]) if "generator" in data.files else None
            if generator != GENERATOR:
                raise ValueError(f"made by generator {generator!r}, expected {GENERATOR!r}")
            arrays = {}
            for key, shape in expected.items():
                arr = data[key]  # reads the member fully (and checks its CRC)
                if arr.dtype != np.uint8 or arr.shape != shape:
                    raise ValueError(f"{key} is {arr.dtype} {arr.shape}, expected uint8 {shape}")
                arrays[key] = arr
        return arrays
    except Exception as exc:  # noqa: BLE001  (any damage means: generate again)
        warnings.warn(
            f"shapes: the cache file {path} is unreadable ({type(exc).__name__}: {exc}); regenerating it.",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _write_cache(path: Path, arrays: dict) -> None:
    from dfbench.api.fileio import atomic_open

    try:
        with atomic_open(path, "wb") as fh:
            np.savez(fh, generator=np.array(GENERATOR), **arrays)
    except OSError as exc:
        warnings.warn(
            f"shapes: could not write the cache file {path} ({exc}); the dataset will be generated "
            f"again next time. Set a writable cache directory ($DFBENCH_CACHE).",
            RuntimeWarning,
            stacklevel=3,
        )


def _count_option(extra: dict, key: str, default: int) -> int:
    value = extra.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"shapes: '{key}' must be a positive integer (images per class), got {value!r}.")
    return int(value)


class ShapesDataset(DatasetPlugin):
    """Procedurally generated photos and sketches of 12 shape classes (see the module docstring)."""

    name = "shapes"
    Options = ShapesOptions
    needs_data_root = False

    def load(self, options: DatasetOptions) -> Benchmark:
        import torch

        from dfbench.api.datasets import TensorImageSet

        extra = dict(options.extra or {})
        unknown = sorted(set(extra) - set(EXTRA_KEYS))
        if unknown:
            raise ConfigError(
                f"shapes: unknown option(s) {', '.join(repr(k) for k in unknown)}; "
                f"the valid options are {', '.join(repr(k) for k in EXTRA_KEYS)}."
            )
        train_pc = _count_option(extra, "train_per_class", DEFAULT_TRAIN_PER_CLASS)
        test_pc = _count_option(extra, "test_per_class", DEFAULT_TEST_PER_CLASS)
        size = options.image_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_IMAGE_SIZE:
            raise ConfigError(f"shapes: image_size must be an integer >= {MIN_IMAGE_SIZE}, got {size!r}.")
        size = int(size)
        seed = options.seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ConfigError(f"shapes: seed must be an integer, got {seed!r}.")
        seed = int(seed)

        path = cache_path(options.cache_dir, seed, size, train_pc, test_pc)
        arrays = _read_cache(path, _expected_shapes(size, train_pc, test_pc))
        if arrays is None:
            arrays = generate_arrays(seed, size, train_pc, test_pc)
            _write_cache(path, arrays)

        per_class = {"train": train_pc, "test": test_pc}
        sets = {}
        for split in ("train", "test"):
            labels = torch.arange(len(CLASSES), dtype=torch.int64).repeat_interleave(per_class[split])
            photos = torch.from_numpy(np.ascontiguousarray(arrays[f"{split}_photo"]))
            sketches = torch.from_numpy(np.ascontiguousarray(arrays[f"{split}_sketch"]))
            sets[(split, "photo")] = TensorImageSet(photos, labels)
            sets[(split, "sketch")] = TensorImageSet(sketches.unsqueeze(1).expand(-1, 3, -1, -1), labels)
        bench = Benchmark(
            name="shapes",
            classes=list(CLASSES),
            image_size=size,
            sets=sets,
            split_manifest=None,
            info={"generator": GENERATOR, "seed": seed, "train_per_class": train_pc, "test_per_class": test_pc},
        )
        bench.info["counts"] = bench.counts()
        return bench
