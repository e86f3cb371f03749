"""The run context handed to teacher loaders, inversion strategies, losses and methods."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfbench.api.progress import Reporter


@dataclass
class RunContext:
    config: dict  # the resolved config
    device: Any  # torch.device, chosen once
    benchmark: Any  # dfbench.api.datasets.Benchmark
    cache_dir: Path
    reporter: Reporter = field(default_factory=lambda: Reporter(enabled=False))
    teachers: Any = None  # dfbench.api.teachers.TeacherSet, once loaded
    curves: list = field(default_factory=list)  # rows of training curves: {"round": r, term: value}
    artifacts_dir: Path | None = None  # where a method may save pictures of its run
    checkpointer: Any = None  # dfbench.train.checkpoint.Checkpointer, or None
    # what a data-free method's loop trains and last synthesised (pictures and tests read them)
    students: Any = None  # dfbench.train.students.Students
    strategy: Any = None  # the inversion strategy
    last_batch: Any = None  # dfbench.api.inversion.SynthBatch
    synthesis: dict | None = None  # the last curve row's dfbench.train.engine.synthesis_stats
    budget: dict | None = None  # what a data-free run spent: teacher image passes and rounds (dfbench.train.engine)
    selection: dict | None = None  # what params.select chose, and on what (dfbench.train.engine.SelectOnValidation)
    extra: dict = field(default_factory=dict)
    streams: Any = None  # dfbench.api.rng.Streams: the run's named random streams (the runner's, else made on first use)
    events: Any = None  # dfbench.api.loggers.EventBus of the run's loggers, or None

    @property
    def params(self) -> dict:
        return self.config["params"]

    @property
    def perf(self):
        """The run's execution settings (:class:`dfbench.api.perf.Perf`), from ``config["perf"]``."""
        from dfbench.api.perf import Perf

        if "_perf" not in self.extra:
            self.extra["_perf"] = Perf.from_config(self.config.get("perf"), self.device)
        return self.extra["_perf"]

    def _streams(self):
        if self.streams is None:  # the runner passes the run's (with its rank); a context made by hand is rank 0
            from dfbench.api.rng import Streams

            self.streams = Streams(self.seed, _initialised_rank())
        return self.streams

    def rng(self, name: str):
        """The CPU ``torch.Generator`` of the run's stream ``name`` (dfbench.api.rng): derived from
        (seed, rank, name), one object per name, saved in checkpoints."""
        return self._streams().generator(name)

    def rng_scope(self, name: str):
        """``with ctx.rng_scope(name):`` model initialisation under stream ``name``, the global torch
        state restored afterwards (dfbench.api.rng.Streams.scope)."""
        return self._streams().scope(name)

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def modalities(self):
        """The benchmark's two modalities (:class:`dfbench.api.modalities.ModalityPair`)."""
        from dfbench.api.modalities import pair_of

        return pair_of(self.benchmark)

    @property
    def num_classes(self) -> int:
        return self.benchmark.num_classes

    @property
    def image_size(self) -> int:
        return int(self.config["data"]["image_size"])

    def log_curve(self, row: dict) -> None:
        """One row of the training curves: kept for ``curves.csv`` and sent to the run's loggers."""
        self.curves.append(row)
        if self.events is not None:
            from dfbench.api.loggers import CurvePoint

            self.events.emit("curve_point", CurvePoint(int(row.get("round", 0)), {k: v for k, v in row.items() if k != "round"}))


def _initialised_rank() -> int:
    """This process's rank in an initialised torch.distributed group, else 0."""
    import torch.distributed as tdist

    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0
