"""``dfbench data fetch sketchy | tuberlin | quickdraw``: the real SBIR releases, as published.

Each release is a few archives. For each one, ``fetch`` (1) finds it: in ``--archives DIR``, in
the download cache ``$DFBENCH_CACHE/downloads/<name>/``, else downloads it from the publisher
(or from ``--mirror URL``, a copy of the files under any HTTP server); (2) checks it: the bytes
the server announced, the MD5 where one is published (none is, see :data:`SOURCES`: the MD5 of
what was downloaded is recorded in ``fetch-info.json`` instead), and every member's CRC-32 while
extracting; (3) extracts it safely into a hidden folder beside the destination (no absolute
paths, no ``..``, no links, at most :data:`MAX_EXTRACT_BYTES` and :data:`MAX_MEMBERS`) and
renames its top folder into place, so the destination holds the layout the loaders of
``extended.py`` read (``png/``, ``ImageResized/``, ``256x256/``, ``EXTEND_image_sketchy/``,
``QuickDraw_*_final/``).

Resumable: a download is written to ``<file>.part`` and continued with an HTTP ``Range``
request (after a dropped connection within the same run, or by the next run); a server that
ignores ``Range`` makes it start over. Archives already extracted (their top folder is in the
destination) are skipped, so a fetch interrupted between archives continues where it stopped.

Archives behind a click-through (Google Drive links, which ask a person to confirm large
downloads) are never scraped: ``fetch`` stops with an error that names the page and the file,
and continues once the file is in ``--archives DIR``. Sketchy's ``.7z`` needs the ``7z`` program
(``p7zip``; the Python standard library reads no 7z); without it, the error says how to extract
it by hand into the destination, after which ``fetch`` carries on with the rest.

This module is imported only when a fetch runs (the CLI imports it lazily).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
import urllib.error
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dfbench.api.datasets import default_cache_dir, default_data_dir
from dfbench.api.errors import DataError
from dfbench.api.fileio import atomic_write_json

from dfbench_datasets.fetch import FetchResult, _clean_stale_partials, _open, _progress

#: refuse to extract an archive announcing more than this many bytes (the largest release,
#: QuickDraw_images_final.zip, extracts to tens of GB) or members (QuickDraw: 330k sketches)
MAX_EXTRACT_BYTES = 256 * 2**30
MAX_MEMBERS = 2_000_000
#: attempts per download within one run (each resumes where the previous one stopped)
ATTEMPTS = 4
CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """One file of a release: where it comes from and the folder it extracts to."""

    file: str
    top: str  # the top folder the archive extracts to
    url: str | None  # a direct download; None when only a person can get it (a click-through)
    page: str  # where a person finds it, with the source of the URL
    kind: str = "zip"  # zip | 7z
    md5: str | None = None  # None: the publisher gives none
    other_names: tuple = ()  # names the same file is commonly saved under


DRIVE = "https://drive.google.com/uc?id="

#: The archives of each release. Sources of the URLs and top folders: the publishers' pages, and
#: the download script of the SEM-PCYC code (Dutta & Akata, CVPR 2019; github.com/AnjanDutta/sem-pcyc,
#: download_datasets.sh), which the ZS-SBIR literature reuses (github.com/sounakdey/doodle2search).
#: No publisher gives a checksum for any of them (md5=None everywhere).
SOURCES = {
    "sketchy": (
        Archive(
            "rendered_256x256.7z", "256x256", None,
            "https://sketchy.eye.gatech.edu/ ('Sketches and Photos', a Google Drive link, also "
            f"{DRIVE}0B7ISyeE8QtDdTjE1MG9Gcy1kSkE as used by the SEM-PCYC download script)",
            kind="7z", other_names=("Sketchy.7z",),
        ),
        Archive(
            "extended_photo.zip", "EXTEND_image_sketchy", None,
            f"{DRIVE}0B2U-hnwRkpRrdGZKTzkwbkEwVkk (the extended photos of Liu et al., Deep Sketch Hashing, "
            "CVPR 2017, as linked by the SEM-PCYC download script; a Google Drive link)",
        ),
    ),
    "tuberlin": (
        Archive(
            "sketches_png.zip", "png", "http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/sketches_png.zip",
            "http://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/ (Eitz et al., SIGGRAPH 2012)",
            other_names=("sketches.zip",),
        ),
        Archive(
            "images.zip", "ImageResized", None,
            f"{DRIVE}0B2U-hnwRkpRrMFVvTmFQa3dmSUk (the photos of Zhang et al., SketchNet, CVPR 2016, as linked "
            "by the SEM-PCYC download script; a Google Drive link)",
        ),
    ),
    "quickdraw": (
        Archive(
            "QuickDraw_sketches_final.zip", "QuickDraw_sketches_final",
            "http://datasets.cvc.uab.es/QuickDraw/QuickDraw_sketches_final.zip",
            "http://datasets.cvc.uab.es/QuickDraw/ (Dey et al., Doodle to Search, CVPR 2019)",
        ),
        Archive(
            "QuickDraw_images_final.zip", "QuickDraw_images_final",
            "http://datasets.cvc.uab.es/QuickDraw/QuickDraw_images_final.zip",
            "http://datasets.cvc.uab.es/QuickDraw/ (Dey et al., Doodle to Search, CVPR 2019)",
        ),
    ),
}

SEVEN_ZIP_PROGRAMS = ("7z", "7za", "7zz")


class No7z(Exception):
    """No 7z program is installed to extract a .7z archive."""


# -- downloading ---------------------------------------------------------------------------------


def download_resumable(url: str, dest: Path, md5: str | None = None, quiet: bool = False,
                       attempts: int = ATTEMPTS, say=None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, continuing a partial file with HTTP Range.

    Each attempt asks for the bytes after those already in ``.part``; a ``206`` answer is appended,
    a ``200`` (a server that ignores Range) starts the file over. The download is complete when the
    file holds the length the server announced; then the MD5 (if given) is checked and the file
    renamed to ``dest``. A connection dropped early is retried, resuming, up to ``attempts`` times;
    after that the ``.part`` file is kept for the next run.
    """
    say = say or (lambda msg: None)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last = None
    for attempt in range(attempts):
        have = part.stat().st_size if part.exists() else 0
        try:
            total = _fetch_range(url, part, have, quiet)
        except _RangeDone:
            total = have
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code not in (408, 429, 500, 502, 503, 504):
                raise DataError(f"Could not download {url}: the server answered {exc.code} {exc.reason}. Check the "
                                f"address (or --mirror), or download the file by hand into --archives DIR.") from exc
            last = exc
            say(f"{dest.name}: connection lost ({type(exc).__name__}: {exc}); resuming")
            time.sleep(min(2.0, 0.2 * 2**attempt))
            continue
        size = part.stat().st_size
        if total is not None and size < total:
            last = f"got {size} of {total} bytes"
            say(f"{dest.name}: incomplete ({last}); resuming")
            continue
        if total is not None and size > total:
            part.unlink()
            last = f"the file grew past the {total} bytes announced"
            continue
        break
    else:
        kept = part.stat().st_size if part.exists() else 0
        raise DataError(
            f"Could not download {url} completely after {attempts} attempts ({last}). The {kept} bytes received "
            f"are kept in {part}: run the same command again to resume, or download the file by hand into "
            "--archives DIR."
        )
    if md5 is not None:
        got = file_md5(part)
        if got != md5:
            part.unlink()
            raise DataError(
                f"The download of {url} is corrupt (MD5 {got}, expected {md5}); it was deleted. Run the command "
                "again; if it keeps failing, download the file by hand into --archives DIR."
            )
    os.replace(part, dest)
    return dest


class _RangeDone(Exception):
    """The server says the partial file already holds every byte (416)."""


def _fetch_range(url: str, part: Path, have: int, quiet: bool):
    """Append the bytes after ``have`` to ``part``; the file's total length, or None when unknown."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        response = _open(url, headers)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            raise _RangeDone() from exc
        raise
    with response:
        status = getattr(response, "status", 200)
        if have and status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != have:  # not where we asked: start over rather than splice wrong bytes
                response.close()
                return _fetch_range(url, part, 0, quiet)
            mode = "ab"
        else:
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with open(part, mode) as fh, _progress(quiet) as progress:
            task = progress.add_task(part.name[:-5], total=total, completed=have)
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                progress.update(task, advance=len(chunk))
            fh.flush()
            os.fsync(fh.fileno())
    return total


def _content_range(value: str) -> tuple[int, int | None]:
    """``bytes START-END/TOTAL`` -> (START, TOTAL or None)."""
    try:
        unit, _, spec = value.partition(" ")
        span, _, total = spec.partition("/")
        return int(span.split("-")[0]), (int(total) if total.isdigit() else None)
    except ValueError:
        return -1, None


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# -- extracting -----------------------------------------------------------------------------------


def safe_extract_zip(archive: Path, into: Path, max_bytes: int = MAX_EXTRACT_BYTES, max_members: int = MAX_MEMBERS) -> None:
    """Extract ``archive`` into ``into``, refusing absolute or ``..`` paths, links, and archives that
    announce (or produce) more than ``max_bytes`` or ``max_members``; every member's CRC-32 is checked."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            announced = sum(i.file_size for i in infos)
            if len(infos) > max_members or announced > max_bytes:
                raise DataError(
                    f"{archive} holds {len(infos)} members and {announced} bytes uncompressed, more than the limits "
                    f"({max_members} members, {max_bytes} bytes). It is not the published archive; delete it and "
                    "fetch again."
                )
            free = _free_bytes(into)
            if free is not None and announced > free:
                raise DataError(
                    f"{archive} expands to {announced / 2**30:.1f} GiB, but {into} has {free / 2**30:.1f} GiB free. Free "
                    "space there or fetch into another disk (--dest, or DFBENCH_DATA); nothing was extracted."
                )
            written = 0
            for info in infos:
                parts = _member_parts(archive, info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise DataError(f"{archive} contains a symbolic link ({info.filename}); it is not the published "
                                    "archive. Delete it and fetch again.")
                target = into.joinpath(*parts) if parts else into
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise DataError(f"{archive} expands past {max_bytes} bytes; delete it and fetch again.")
                        dst.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise _corrupt(archive, exc) from exc
    except OSError as exc:  # the disk refused a write while extracting: named, never a traceback
        from dfbench.api.fileio import storage_error

        refused = storage_error(exc, Path(getattr(exc, "filename", None) or into))
        if refused is None:
            raise
        raise refused from exc


def _free_bytes(folder: Path) -> int | None:
    """Free bytes on the file system of ``folder`` (None when it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _member_parts(archive: Path, name: str) -> tuple:
    path = PurePosixPath(name.replace("\\", "/"))
    parts = tuple(p for p in path.parts if p not in ("", "."))
    if path.is_absolute() or ".." in parts or (parts and ":" in parts[0]):
        raise DataError(f"{archive} contains an unsafe path {name!r} (absolute or with '..'); it is not the "
                        "published archive. Delete it and fetch again.")
    return parts


def _corrupt(archive: Path, exc: BaseException) -> DataError:
    return DataError(
        f"{archive} is corrupt or truncated ({type(exc).__name__}: {exc}). Delete it and run the command again "
        "(a download is fetched anew; a file from --archives must be replaced by a good copy)."
    )


def extract_7z(archive: Path, into: Path, max_bytes: int = MAX_EXTRACT_BYTES) -> None:
    """Extract with the ``7z`` program (7-Zip drops absolute and ``..`` paths itself); then refuse
    links and oversized results."""
    program = next((p for p in map(shutil.which, SEVEN_ZIP_PROGRAMS) if p), None)
    if program is None:
        raise No7z()
    proc = subprocess.run([program, "x", "-y", "-snl-", f"-o{into}", str(archive)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise _corrupt(archive, RuntimeError(f"7z exited with {proc.returncode}: {proc.stderr.strip()[-400:]}"))
    total = 0
    for dirpath, dirnames, filenames in os.walk(into):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                raise DataError(f"{archive} contains a symbolic link ({path.relative_to(into)}); delete it and fetch again.")
            if name in filenames:
                total += path.stat().st_size
    if total > max_bytes:
        raise DataError(f"{archive} expands past {max_bytes} bytes; delete it and fetch again.")


# -- the release -----------------------------------------------------------------------------------


def fetch_release(
    name: str,
    dest: Path | None = None,
    *,
    archives_dir: Path | None = None,
    mirror: str | None = None,
    force: bool = False,
    quiet: bool = False,
    log=None,
    max_bytes: int = MAX_EXTRACT_BYTES,
) -> FetchResult:
    """Fetch every archive of release ``name`` into ``dest`` (default ``$DFBENCH_DATA/<name>``)."""
    say = log or (lambda msg: None)
    start = time.perf_counter()
    dest = Path(dest).expanduser() if dest is not None else default_data_dir() / name
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest} exists and is not a folder. Remove it or pass another --dest.")
    archives = SOURCES[name]
    todo = [a for a in archives if force or not (dest / a.top).is_dir()]
    if not todo:
        say(f"{dest} already holds {', '.join(a.top for a in archives)}; pass --force to fetch again.")
        return FetchResult(name, dest, created=False, seconds=time.perf_counter() - start)
    if dest.is_dir():
        _clean_stale_partials(dest / "extract")
    downloads = default_cache_dir() / "downloads" / name
    info = _read_info(dest)
    missing, counts = [], {}
    for archive in todo:
        path = _locate(archive, archives_dir, downloads)
        if path is None:
            url = f"{mirror.rstrip('/')}/{archive.file}" if mirror else archive.url
            if url is None:
                missing.append(archive)
                continue
            say(f"downloading {url}")
            path = download_resumable(url, downloads / archive.file, archive.md5, quiet, say=say)
        elif archive.md5 is not None and file_md5(path) != archive.md5:
            if path.parent == downloads:  # our own damaged download: never kept to fail every later fetch
                path.unlink(missing_ok=True)
                raise DataError(f"{path} (a download) did not have the published MD5 {archive.md5}: it was damaged and is "
                                "deleted. Run the same command again to download it anew.")
            raise DataError(f"{path} does not have the published MD5 {archive.md5}: it is another or a damaged copy. "
                            "Replace it (or delete it to download it again).")
        say(f"extracting {path.name} -> {dest / archive.top}")
        try:
            counts[archive.top] = _extract_into_place(archive, path, dest, max_bytes)
        except No7z:
            missing.append(archive)
            continue
        except DataError:
            if path.parent == downloads:
                path.unlink(missing_ok=True)  # a bad download is fetched anew next time
            raise
        info["archives"][archive.file] = {
            "source": str(path) if path.parent != downloads else (mirror or archive.url),
            "md5": file_md5(path),
            "md5_published": archive.md5,
            "extracted_to": archive.top,
            "files": counts[archive.top],
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        atomic_write_json(dest / "fetch-info.json", info)
    if missing:
        raise DataError(_manual_message(name, missing, dest, archives_dir or downloads))
    return FetchResult(name, dest, created=True, counts=counts, seconds=time.perf_counter() - start)


def _locate(archive: Archive, archives_dir: Path | None, downloads: Path) -> Path | None:
    """The archive file, from --archives first, then the download cache."""
    for folder in (archives_dir, downloads):
        if folder is None:
            continue
        for file in (archive.file, *archive.other_names):
            if (Path(folder) / file).is_file():
                return Path(folder) / file
    return None


def _extract_into_place(archive: Archive, path: Path, dest: Path, max_bytes: int) -> int:
    """Extract into a hidden folder beside the data, then rename its top folder into ``dest``."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create {dest} ({exc}). Pass a writable --dest or set DFBENCH_DATA.") from exc
    staging = Path(tempfile.mkdtemp(prefix=f".extract.partial-{os.getpid()}-", dir=dest))
    try:
        if archive.kind == "7z":
            extract_7z(path, staging, max_bytes)
        else:
            safe_extract_zip(path, staging, max_bytes)
        top = staging / archive.top
        if not top.is_dir():
            found = sorted(p.name for p in staging.iterdir())
            raise DataError(
                f"{path} does not extract to a folder {archive.top}/ (it holds: {', '.join(found) or 'nothing'}). "
                "It is not the published archive; replace it and fetch again."
            )
        files = sum(len(f) for _, _, f in os.walk(top))
        old = dest / archive.top
        if old.exists():
            trash = staging / ".old"
            os.replace(old, trash)
        os.replace(top, old)
        return files
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_info(dest: Path) -> dict:
    try:
        info = json.loads((dest / "fetch-info.json").read_text(encoding="utf-8"))
        if isinstance(info, dict) and isinstance(info.get("archives"), dict):
            return info
    except (OSError, ValueError):
        pass
    return {"dataset": dest.name, "archives": {}}


def _manual_message(name: str, missing: list, dest: Path, folder: Path) -> str:
    lines = []
    for a in missing:
        if a.kind == "7z" and not any(map(shutil.which, SEVEN_ZIP_PROGRAMS)):
            lines.append(
                f"{a.file}: from {a.page}. dfbench extracts .7z files with the 7z program (package p7zip), which "
                f"is not installed; install it, or extract the file yourself ('7z x {a.file} -o{dest}', giving "
                f"{dest / a.top})"
            )
        else:
            lines.append(f"{a.file}: from {a.page}")
    return (
        f"Some archives of '{name}' cannot be downloaded automatically (their links need a person to confirm the "
        f"download): " + "; ".join(lines) + f". Save them into {folder} (or any folder, passed as --archives DIR) "
        f"and run 'dfbench data fetch {name}' again: what is already extracted in {dest} is kept. If you already "
        f"have the data extracted elsewhere, pass --data-root to the run instead."
    )
