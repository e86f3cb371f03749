"""Storage faults (issue 30, item 9): when the disk refuses a write (full, over quota, read-only),
the command stops with exit 2 and one paragraph naming the file and the fix, no traceback, no
half-written file, and what was written before intact; a rerun on a working disk completes."""

from __future__ import annotations

import errno
import json
import os

import pytest
from click.testing import CliRunner

from conftest import error_paragraph
from dfbench.app.cli import cli

SMOKE = ["--method", "classifier-only", "--profile", "smoke", "--device", "cpu", "--quiet",
         "--set", "data.options.train_per_class=24", "--set", "data.options.test_per_class=12"]


def _refuse(monkeypatch, code: int, where: str):
    """Make the disk refuse (errno ``code``) every fsync of a file whose path contains ``where``."""
    import dfbench.api.fileio as fileio

    real_fsync = os.fsync
    refused = []

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if where in path:
            refused.append(path)
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    return refused


@pytest.mark.parametrize("code,word", [(errno.ENOSPC, "No space left on device (ENOSPC). Free space on that disk"),
                                       (errno.EROFS, "(EROFS). That file system is read-only"),
                                       (errno.EDQUOT, "(EDQUOT). Free space within your quota")])
def test_a_full_disk_when_the_record_is_written(tmp_path, monkeypatch, code, word):
    results = tmp_path / "results"
    refused = _refuse(monkeypatch, code, f"{results}/shapes/classifier-only/.")
    res = CliRunner().invoke(cli, ["run", *SMOKE, "--results", str(results), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and refused
    text = error_paragraph(res.output)
    assert text.startswith("Error: Could not write ") and ".json" in text and word in text and "run the same command again" in text
    leftovers = [p for p in results.rglob("*") if p.is_file() and (p.suffix == ".json" or p.name.endswith(".tmp"))]
    assert leftovers == [], leftovers  # no record, no half-written temporary
    monkeypatch.undo()  # the disk works again: the same command completes
    res = CliRunner().invoke(cli, ["run", *SMOKE, "--results", str(results), "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    [record] = list((results / "shapes" / "classifier-only").glob("*.json"))
    assert json.loads(record.read_text())["status"] == "completed"


def test_a_full_cache_disk_when_a_teacher_is_saved(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    _refuse(monkeypatch, errno.ENOSPC, f"{cache}/teachers/")
    res = CliRunner().invoke(cli, ["run", *SMOKE, "--results", str(tmp_path / "r"), "--cache-dir", str(cache)])
    assert res.exit_code == 2, res.output
    text = error_paragraph(res.output)
    assert "Could not write" in text and "/teachers/" in text and "$DFBENCH_CACHE" in text
    assert not [p for p in cache.rglob("*.tmp")] and not list((tmp_path / "r").rglob("*.json"))


def test_a_full_disk_in_a_suite_stops_the_grid_with_one_paragraph(tmp_path, monkeypatch):
    results = tmp_path / "results"
    _refuse(monkeypatch, errno.ENOSPC, f"{results}/")
    res = CliRunner().invoke(cli, ["bench", "smoke", "--results", str(results), "--cache-dir", str(tmp_path / "cache"),
                                   "--seed", "0", "--method", "classifier-only", "--quiet"])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "No space left on device" in error_paragraph(res.output)
    assert not [p for p in results.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_a_storage_error_is_still_an_oserror_for_warn_only_writers(tmp_path):
    from dfbench.api.errors import OutputPathError, StorageError
    from dfbench.api.fileio import storage_error

    err = storage_error(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "x")
    assert isinstance(err, StorageError) and isinstance(err, OSError) and isinstance(err, OutputPathError)
    assert err.errno == errno.ENOSPC
    assert storage_error(OSError(errno.ENOENT, "No such file"), tmp_path / "x") is None  # not the disk refusing
