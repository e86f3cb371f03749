"""Content digests of data files, computed once and remembered by (path, size, mtime, inode change
time), as build systems do: a run's data identity follows the bytes of its files, not their names and sizes alone
(two same-sized images swapped in place are other data).

The digests live in ``<cache>/content-digests.json`` ({absolute path: [size, mtime_ns, ctime_ns, inode, sha256]});
an entry whose size, times or inode no longer match its file is computed again. A cache
that cannot be read is rebuilt; one that cannot be written only costs the next run the hashing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

FILE = "content-digests.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DigestCache:
    def __init__(self, cache_dir: Path | None):
        if cache_dir is None:
            from dfbench.api.datasets import default_cache_dir

            cache_dir = default_cache_dir()
        self.path = Path(cache_dir) / FILE
        self._entries: dict | None = None
        self._dirty = False

    def _load(self) -> dict:
        if self._entries is None:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def digest(self, path: Path, stat: os.stat_result | None = None) -> str:
        """The SHA-256 of ``path``'s bytes (remembered while its size, times and inode stay the same)."""
        path = Path(path)
        st = stat or path.stat()
        key = str(path.resolve())
        entries = self._load()
        known = entries.get(key)
        # the inode change time too: a write with the modification time set back still changes it
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        if isinstance(known, list) and len(known) == 5 and known[:4] == stamp:
            return known[4]
        value = _sha256(path)
        entries[key] = [*stamp, value]
        self._dirty = True
        return value

    def save(self) -> None:
        if not self._dirty:
            return
        from dfbench.api.fileio import atomic_write_text

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(self._entries, separators=(",", ":")))
            self._dirty = False
        except OSError:  # a read-only or full cache: the digests are computed again next time
            pass
