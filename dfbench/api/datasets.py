"""The dataset interface.

A dataset plugin turns a name (and options such as a data root) into a :class:`Benchmark`: the class
names, its two modalities (:class:`dfbench.api.modalities.ModalityPair`, as the plugin declares them
in :attr:`DatasetPlugin.modalities`) and for each split (``train``, ``test``) and modality key an
:class:`ImageSet` of images and integer labels. Images are float tensors of shape (3, S, S) in
[-1, 1] (a grey modality is replicated over the three channels), so one network can read both
modalities (the unified teacher) and generators can end in ``tanh``.

Two :class:`ImageSet` implementations cover every dataset: :class:`TensorImageSet` holds small
datasets in memory as uint8; :class:`dfbench.api.imageio.FileImageSet` reads image files lazily
(large benchmarks), in the module that reads files (which imports this one, never the reverse).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from dfbench.api.modalities import DEFAULT_DECLARATION, DEFAULT_PAIR, ModalityPair

SPLITS = ("train", "test")
#: the split held out of train for every choice a run makes (``data.validation``, dfbench.train.subset)
VALIDATION = "val"
#: the default pair's modality keys (gallery, query); code that serves any pair reads
#: ``benchmark.modalities`` (:class:`dfbench.api.modalities.ModalityPair`) instead
MODALITIES = DEFAULT_PAIR.keys
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class DatasetOptions:
    """What the runner passes to a dataset plugin's ``load``."""

    data_root: Path | None = None  # explicit --data-root, else the plugin's default
    image_size: int = 32  # side of the square images handed to networks
    seed: int = 0  # for generated data and deterministic splits
    cache_dir: Path = field(default_factory=lambda: default_cache_dir())
    skip_bad_images: bool = False  # skip (with a warning) instead of failing on unreadable files
    extra: dict = field(default_factory=dict)  # dataset-specific options from the config


class ImageSet:
    """Images of one split and modality. Subclasses implement ``__len__`` and ``load_uint8``."""

    labels: "torch.Tensor"  # (N,) int64  # noqa: F821

    def __len__(self) -> int:
        raise NotImplementedError

    def load_uint8(self, indices: Sequence[int]) -> "torch.Tensor":  # noqa: F821
        """uint8 tensor (len(indices), 3, S, S)."""
        raise NotImplementedError

    def batch(self, indices: Sequence[int], device=None) -> "torch.Tensor":  # noqa: F821
        """Float images in [-1, 1] for the given indices."""
        x = self.load_uint8(indices)
        if device is not None:
            x = x.to(device, non_blocking=True)
        return x.float().div_(127.5).sub_(1.0)

    def iter_batches(self, batch_size: int, device=None) -> Iterator[tuple]:
        """(images, labels) in order, in batches."""
        n = len(self)
        for start in range(0, n, batch_size):
            idx = list(range(start, min(n, start + batch_size)))
            labels = self.labels[start : start + len(idx)]
            yield self.batch(idx, device), (labels.to(device) if device is not None else labels)


class TensorImageSet(ImageSet):
    """An in-memory image set: uint8 images (N, 3, S, S) and int64 labels (N,)."""

    def __init__(self, images, labels, files: Sequence[str] | None = None):
        import torch

        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, 3, S, S), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images.contiguous()
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.files = list(files) if files is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def load_uint8(self, indices):
        import torch

        return self.images[torch.as_tensor(indices, dtype=torch.long)]


@dataclass
class Benchmark:
    """A loaded dataset: class names, its two modalities and the image sets of every split and
    modality."""

    name: str
    classes: list[str]
    image_size: int
    sets: dict  # {(split, modality key): ImageSet}
    split_manifest: dict | None = None  # files per split/modality, written out with the run
    info: dict = field(default_factory=dict)  # provenance: root, revision, counts
    modalities: ModalityPair = DEFAULT_PAIR  # the runner sets the dataset plugin's declaration

    def get(self, split: str, modality: str) -> ImageSet:
        return self.sets[(split, modality)]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def counts(self) -> dict:
        splits = SPLITS + ((VALIDATION,) if self.has_validation else ())
        return {f"{s}/{m}": len(self.sets[(s, m)]) for s in splits for m in self.modalities}

    @property
    def has_validation(self) -> bool:
        return all((VALIDATION, m) in self.sets for m in self.modalities)

    @property
    def selection_split(self) -> str:
        """The split every choice of a run is made on (curves, teacher accuracies, the selected
        round): the validation split held out of train (docs/protocol.md), else, in configs made
        before the protocol, the test split."""
        return VALIDATION if self.has_validation else "test"


class DatasetPlugin:
    """What a registered dataset class provides.

    ``name`` and ``description`` are informative; ``load(options)`` returns a :class:`Benchmark`
    or raises :class:`dfbench.api.errors.DataError` with a message that says what is wrong and how to
    fix it (where to get the data, which layout is expected).
    """

    #: given by the register() call when the registry loads the class (dfbench.api.registry.Entry)
    name: str = ""
    description: str = ""
    #: whether the dataset needs files on disk (a data root)
    needs_data_root: bool = True
    #: its two modalities, {key: {role: query | gallery, name, plural, kind, channels}}
    #: (dfbench.api.modalities); the image sets are keyed by these keys, records carry the
    #: declaration (``data.modalities``) and summaries and pictures speak of them by these names
    modalities: dict = DEFAULT_DECLARATION

    def load(self, options: DatasetOptions) -> Benchmark:
        raise NotImplementedError


def default_cache_dir() -> Path:
    """``$DFBENCH_CACHE``, else ``$XDG_CACHE_HOME/dfbench``, else ``~/.cache/dfbench``."""
    if os.environ.get("DFBENCH_CACHE"):
        return Path(os.environ["DFBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dfbench"


def default_data_dir() -> Path:
    """``$DFBENCH_DATA``, else ``<cache>/data``."""
    if os.environ.get("DFBENCH_DATA"):
        return Path(os.environ["DFBENCH_DATA"])
    return default_cache_dir() / "data"
