"""Shards of suites side by side on one machine share its cores (issue 31).

``dfbench bench --shard i/n`` runs one shard of a grid; n shards may run on n machines (a Slurm
array, benchmarks/slurm_suite.sh) or side by side on one. Each shard takes a *seat* on its machine
while it runs: a file ``<cache>/shards/<host>/<pid>`` that it removes when it ends (a seat whose
process no longer exists is stale and is removed by the next shard that counts). Before each run,
a shard whose config leaves ``perf.threads`` unset runs with ``max(1, cores // seats)`` torch
threads: alone on a machine, every core; with three others, a quarter of them each, so shards do
not oversubscribe the cores (docs/performance.md). ``perf.threads`` set in the suite or by
``--set`` is never changed. The thread count is an execution setting, outside the config hash.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class ShardSeat:
    """This process's seat among the shards running on this machine (a context manager)."""

    def __init__(self, cache_dir: Path, pid: int | None = None):
        self.folder = Path(cache_dir) / "shards" / (socket.gethostname() or "localhost")
        self.pid = os.getpid() if pid is None else pid
        self.path = self.folder / str(self.pid)

    def __enter__(self) -> "ShardSeat":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path.write_text(str(self.pid), encoding="utf-8")
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)

    def seats(self) -> int:
        """Shards running on this machine now, this one included (stale seats removed)."""
        count = 0
        for seat in self.folder.iterdir() if self.folder.is_dir() else ():
            try:
                pid = int(seat.name)
            except ValueError:
                continue
            if pid == self.pid or _alive(pid):
                count += 1
            else:
                seat.unlink(missing_ok=True)
        return max(count, 1)

    def threads(self, cores: int | None = None) -> int:
        """This shard's share of the machine's cores."""
        return max(1, (cores or os.cpu_count() or 1) // self.seats())
