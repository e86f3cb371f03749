"""The ``qd-cifar10`` dataset: QuickDraw sketches x CIFAR-10 photos, 9 classes paired by category.

The layout is the ``folder`` one, ``{train,test}/{photo,sketch}/<class>/<files>``, with the nine
classes of :data:`CLASSES`. The root is the first that exists of ``--data-root``,
``$DFBENCH_DATA/qd-cifar10`` (``<cache>/data/qd-cifar10`` when DFBENCH_DATA is unset) and
``~/.cache/dfbench/data/qd-cifar10``; ``dfbench data fetch qd-cifar10`` builds it.

Sources: the Quick, Draw! dataset (Jongejan et al., Google, 2016; CC BY 4.0) and CIFAR-10
(Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009).
"""

from __future__ import annotations

from pathlib import Path

from dfbench.api.datasets import DatasetOptions, default_data_dir
from dfbench.api.errors import DataError

from dfbench_datasets.folder import FolderDataset, FolderLayout

NAME = "qd-cifar10"

#: (class folder, QuickDraw category, CIFAR-10 class)
CLASSES = (
    ("airplane", "airplane", "airplane"),
    ("car", "car", "automobile"),
    ("bird", "bird", "bird"),
    ("cat", "cat", "cat"),
    ("dog", "dog", "dog"),
    ("frog", "frog", "frog"),
    ("horse", "horse", "horse"),
    ("ship", "cruise ship", "ship"),
    ("truck", "truck", "truck"),
)
CLASS_NAMES = tuple(sorted(c for c, _, _ in CLASSES))

#: per class, as published (README of the staged data): sketches 70/30, photos 500/500
DEFAULT_COUNTS = {"train_sketches": 70, "test_sketches": 30, "train_photos": 500, "test_photos": 500}


def candidate_roots() -> list[Path]:
    """Where qd-cifar10 is looked for when --data-root is not given, in order."""
    roots = [default_data_dir() / NAME, Path.home() / ".cache" / "dfbench" / "data" / NAME]
    unique: list[Path] = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


class QDCifar10Dataset(FolderDataset):
    """QuickDraw sketches x CIFAR-10 photos (9 classes), read from the ``folder`` layout."""

    name = NAME

    def resolve_root(self, options: DatasetOptions) -> Path:
        if options.data_root is not None:
            return Path(options.data_root).expanduser()
        candidates = candidate_roots()
        for root in candidates:
            if root.is_dir():
                return root
        looked = " and ".join(str(c) for c in candidates)
        raise DataError(
            f"The qd-cifar10 data is not there (looked in {looked}). Run 'dfbench data fetch qd-cifar10' "
            "to build it (needs internet: QuickDraw bitmaps from Google and CIFAR-10 from Toronto), or "
            "point DFBENCH_DATA at a folder that holds qd-cifar10/, or pass --data-root DIR where DIR "
            "holds {train,test}/{photo,sketch}/<class>/."
        )

    def check_classes(self, layout: FolderLayout) -> None:
        missing = [c for c in CLASS_NAMES if c not in layout.classes]
        extra = sorted((set(layout.classes) | set(layout.dropped)) - set(CLASS_NAMES))
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"lacks the classes {', '.join(missing)}")
            if extra:
                parts.append(f"has classes qd-cifar10 does not define ({', '.join(extra)})")
            raise DataError(
                f"{layout.root} {' and '.join(parts)}; qd-cifar10 has exactly these 9 classes: "
                f"{', '.join(CLASS_NAMES)}. Rebuild it with 'dfbench data fetch qd-cifar10 --force', "
                "or load a tree with other classes with the 'folder' dataset and --data-root DIR."
            )
