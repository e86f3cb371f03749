"""Training checkpoints: everything needed to resume a run exactly where it stopped.

The engine saves, every ``checkpoint_every`` rounds (at a logging boundary, where its running
sums are empty): the students, optimiser and scheduler, the inversion strategy's state (its
generators, optimisers, noise generator), the replay pool, the alignment loss's state, every
random-number generator (python, numpy, torch CPU and CUDA, the engine's own) and the round
counter and curves so far. The file is written atomically, so a kill at any moment leaves either
the previous checkpoint or the new one. On the CPU a resumed run ends with exactly the metrics of
an uninterrupted one.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from dfbench.fileio import atomic_torch_save


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    def __init__(self, path: Path, every: int, config_hash: str):
        self.path = Path(path)
        self.every = int(every)
        self.config_hash = config_hash
        self.last_round = 0
        self.resumed_from: int | None = None

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def load(self) -> dict | None:
        """The saved state of this config, or None (absent, unreadable or another config's).

        In a data-parallel run rank 0 reads the file and every rank gets its content."""
        from dfbench import distributed as dist

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
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:
            return None
        if not isinstance(state, dict) or state.get("config_hash") != self.config_hash:
            return None
        self.last_round = self.resumed_from = int(state["round"])
        return state

    def due(self, rounds_done: int) -> bool:
        return self.enabled and rounds_done - self.last_round >= self.every

    def save(self, state: dict) -> None:
        from dfbench import distributed as dist

        if not dist.is_main():  # data-parallel runs: only rank 0 writes
            self.last_round = int(state["round"])
            return
        state = {**state, "config_hash": self.config_hash, "rng": rng_state()}
        atomic_torch_save(state, self.path)
        self.last_round = int(state["round"])

    def remove(self) -> None:
        from dfbench import distributed as dist

        if not dist.is_main():
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
