"""Training checkpoints: everything needed to resume a run exactly where it stopped.

The engine saves, every ``checkpoint_every`` rounds (at a logging boundary, where its running
sums are empty): the students, optimiser and scheduler, the inversion strategy's state (its
generators, optimisers, noise generator), the replay pool, the alignment loss's state, every
random-number generator (python, numpy, torch CPU and CUDA, the engine's own) and the round
counter and curves so far. The file is written atomically, so a kill at any moment leaves either
the previous checkpoint or the new one. On the CPU a resumed run ends with exactly the metrics of
an uninterrupted one.

A checkpoint is read back with :func:`dfbench.api.safeload.load_torch_file` (``weights_only``: a
results folder from someone else runs no code), so everything saved is tensors and plain
containers: the Python and NumPy generator states are stored as lists. A file that cannot be used
(truncated, foreign, another config's) is named in a :class:`CheckpointWarning` and the run starts
from round 0; the next save replaces it.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import torch

from dfbench.api.fileio import atomic_torch_save
from dfbench.api.safeload import UnreadableTorchFile, load_torch_file


class CheckpointWarning(UserWarning):
    """A checkpoint was found but cannot be resumed from; the run starts over."""


def rng_state() -> dict:
    """Every global generator's state, as tensors and plain lists (loadable with weights_only)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    def __init__(self, path: Path, every: int, config_hash: str, seed: int | None = None):
        self.path = Path(path)
        self.every = int(every)
        self.config_hash = config_hash
        self.seed = seed  # a checkpoint is bound to its run: config and seed
        self.last_round = 0
        self.resumed_from: int | None = None

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def load(self) -> dict | None:
        """The saved state of this config, or None (absent, unreadable or another config's).

        In a data-parallel run rank 0 reads the file and every rank gets its content."""
        from dfbench.train import distributed as dist

        if dist.active():
            state = dist.broadcast_object(self._load() if dist.is_main() else None)
            if state is not None:
                self.last_round = self.resumed_from = int(state["round"])
            return state
        return self._load()

    def _load(self) -> dict | None:
        if not self.enabled or not self.path.is_file():
            return None
        try:
            state = load_torch_file(self.path)
        except UnreadableTorchFile as exc:
            return self._refuse(str(exc))
        if not isinstance(state, dict) or not isinstance(state.get("round"), int) or "rng" not in state:
            return self._refuse("it is not a dfbench training checkpoint")
        if "streams" not in state:  # written before the named random streams (dfbench.api.rng)
            return self._refuse("it was written by an older dfbench, before the run's named random streams")
        if state.get("config_hash") != self.config_hash:
            return self._refuse(f"it belongs to another config (hash {state.get('config_hash')}, this run {self.config_hash})")
        if self.seed is not None and state.get("seed") != self.seed:
            return self._refuse(f"it belongs to another run (seed {state.get('seed')!r}, this run seed {self.seed})")
        self.last_round = self.resumed_from = int(state["round"])
        return state

    def refuse(self, reason: str) -> None:
        """Give up a checkpoint already loaded (its content cannot resume the run): the run starts
        from round 0, and says why."""
        self.last_round, self.resumed_from = 0, None
        self._refuse(reason)

    def _refuse(self, reason: str) -> None:
        """Say why the checkpoint found is not used (the run starts over; the next save replaces it)."""
        warnings.warn(
            f"ignoring the checkpoint {self.path}: {reason}; this run starts from round 0 and its first "
            "checkpoint replaces the file",
            CheckpointWarning,
            stacklevel=3,
        )
        return None

    @property
    def resumable(self) -> bool:
        """True once this run saved, or resumed from, a checkpoint a rerun can resume from."""
        return self.enabled and self.last_round > 0 and self.path.is_file()

    def due(self, rounds_done: int) -> bool:
        return self.enabled and rounds_done - self.last_round >= self.every

    def save(self, state: dict) -> None:
        from dfbench.train import distributed as dist

        if not dist.is_main():  # data-parallel runs: only rank 0 writes
            self.last_round = int(state["round"])
            return
        state = {**state, "config_hash": self.config_hash, "seed": self.seed, "rng": rng_state()}
        atomic_torch_save(state, self.path)
        self.last_round = int(state["round"])

    def remove(self) -> None:
        from dfbench.train import distributed as dist

        if not dist.is_main():
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
