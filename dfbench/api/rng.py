"""Named random streams: every random draw of a run comes from a stream named for what it is for.

A stream's seed is derived from (run seed, rank, name) through :class:`numpy.random.SeedSequence`
(NumPy's recommended way to derive independent streams), so

- streams never overlap by accident (no ``seed + 101`` / ``seed + 202`` offsets to keep apart),
- each rank of a data-parallel run draws its own samples without reseeding anything afterwards,
- adding a stream leaves every other stream as it was.

Components ask the run context: ``ctx.rng("estimators/noise")`` is a ``torch.Generator`` (one per
name, its state saved in checkpoints), and ``with ctx.rng_scope("estimators/init"): build()``
runs model initialisation under the global torch generator seeded from the stream, restoring the
global state afterwards, so a constructor never changes the state the runner seeded.
"""

from __future__ import annotations

import contextlib
import zlib


def stream_seed(seed: int, name: str, rank: int = 0) -> int:
    """A 63-bit seed for stream ``name`` of run ``seed`` on ``rank``.

    The name enters as its CRC-32 in the SeedSequence's spawn key, beside the rank."""
    import numpy as np

    key = (int(rank), zlib.crc32(name.encode("utf-8")))
    state = np.random.SeedSequence(int(seed), spawn_key=key).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class Streams:
    """The named streams of one run on one rank (``ctx.streams``)."""

    def __init__(self, seed: int, rank: int = 0):
        self.seed, self.rank = int(seed), int(rank)
        self._generators: dict = {}

    def seed_of(self, name: str) -> int:
        return stream_seed(self.seed, name, self.rank)

    def generator(self, name: str):
        """The CPU ``torch.Generator`` of stream ``name`` (the same object on every call, so a
        checkpoint can save and restore it). Draws made on the CPU are the same on every device."""
        import torch

        if name not in self._generators:
            self._generators[name] = torch.Generator().manual_seed(self.seed_of(name))
        return self._generators[name]

    @contextlib.contextmanager
    def scope(self, name: str):
        """Run a block (model initialisation) under the global torch generator seeded from stream
        ``name``; the global generators (CPU and CUDA) are restored when the block ends."""
        import torch

        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed_of(name))
            yield

    def state_dict(self) -> dict:
        return {name: g.get_state() for name, g in self._generators.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            self.generator(name).set_state(value)
