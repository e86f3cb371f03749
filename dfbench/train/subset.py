"""``--limit N``: the first N images per class of every split and modality, for any dataset.

Applied by the core after the dataset plugin loads, the same way for every dataset, so a quick
look at a large benchmark needs nothing from its plugin. The limit is ``data.limit`` of the
resolved config (``--limit N`` or ``--set data.limit=N``, checked like every option): it enters the
config hash (and so the run's identity and record path) and the teachers' cache key, and the
record's ``data.counts`` show the subset's sizes. The option is left out of a config that does not
set it, so the hashes of runs without one stay as they were.
"""

from __future__ import annotations

from typing import Sequence

from dfbench.api.datasets import SPLITS, VALIDATION, ImageSet


class SubsetImageSet(ImageSet):
    """The images of ``base`` at ``indices`` (in that order), read through ``base``."""

    def __init__(self, base: ImageSet, indices: Sequence[int]):
        import torch

        self.base = base
        self.indices = list(indices)
        self.labels = base.labels[torch.as_tensor(self.indices, dtype=torch.long)]
        files = getattr(base, "files", None)
        self.files = [files[i] for i in self.indices] if files is not None else None

    def __len__(self) -> int:
        return len(self.indices)

    def load_uint8(self, indices):
        return self.base.load_uint8([self.indices[i] for i in indices])


def first_per_class(labels, limit: int) -> list[int]:
    """Positions of the first ``limit`` items of each class, in their original order."""
    seen: dict[int, int] = {}
    keep = []
    for i, label in enumerate(labels.tolist()):
        if seen.get(label, 0) < limit:
            seen[label] = seen.get(label, 0) + 1
            keep.append(i)
    return keep


def apply(benchmark, limit: int | None):
    """``benchmark`` with every image set cut to its first ``limit`` images per class (as it is
    when ``limit`` is None)."""
    if limit is None:
        return benchmark
    for key in [(s, m) for s in SPLITS for m in benchmark.modalities if (s, m) in benchmark.sets]:
        base = benchmark.sets[key]
        benchmark.sets[key] = SubsetImageSet(base, first_per_class(base.labels, limit))
    benchmark.info = {**benchmark.info, "limit": {"per_class": limit, "counts": benchmark.counts()}}
    return benchmark


def hold_out_validation(benchmark, fraction: float | None, seed: int):
    """``benchmark`` with ``fraction`` of each class's train images of each modality moved to a
    validation split (``"val"``), chosen by a permutation seeded with ``seed`` (the data seed: the
    same split for every run seed). It is carved before any teacher trains, so teachers, students
    and synthesis never see it; every choice of the run is made on it (docs/protocol.md). A class
    keeps at least one train image and, when it has two or more, gives at least one to validation."""
    if fraction is None:
        return benchmark
    import torch

    from dfbench.api.rng import stream_seed

    g = torch.Generator().manual_seed(stream_seed(int(seed), "data/validation"))  # a stream of its own, apart from the dataset's
    for m in benchmark.modalities:
        base = benchmark.sets[("train", m)]
        keep, held = [], []
        for c in torch.unique(base.labels).tolist():
            idx = torch.nonzero(base.labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n_val = min(len(idx) - 1, max(1, round(fraction * len(idx))))  # every class validated when it can be
            held += idx[:n_val].tolist()
            keep += idx[n_val:].tolist()
        benchmark.sets[("train", m)] = SubsetImageSet(base, sorted(keep))
        benchmark.sets[(VALIDATION, m)] = SubsetImageSet(base, sorted(held))
    benchmark.info = {**benchmark.info, "validation": {"fraction": fraction, "seed": int(seed), "counts": benchmark.counts()}}
    return benchmark
