"""``dfbench data fetch``: build a dataset's folder tree from its public sources.

``sketchy``, ``tuberlin`` and ``quickdraw`` are the publishers' archives, downloaded and extracted
as published (``dfbench_datasets.releases``). ``qd-cifar10`` is built here:

* sketches: the first ``train + test`` drawings of each category of Google's Quick, Draw!
  ``numpy_bitmap`` release (uint8 arrays (N, 784), white strokes on black), inverted to black
  strokes on white and written as 28x28 greyscale PNG (``qd_0000.png`` ...; the first ``train`` go
  to train). Only the first rows are downloaded (an HTTP range request), not the whole file.
* photos: the first ``train + test`` images of each class of the CIFAR-10 *test* split, read
  with torchvision, written as 32x32 JPEG (``cifar_0000.jpg`` ...; the first ``train`` go to
  train).

The tree is built in a hidden temporary folder beside the destination and renamed into place
when complete, so an interrupted fetch never leaves a half-built dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dfbench.api.datasets import default_cache_dir, default_data_dir
from dfbench.api.errors import DataError, UnknownNameError, did_you_mean
from dfbench.api.fileio import atomic_open

from dfbench_datasets.qd_cifar10 import CLASSES, DEFAULT_COUNTS

QUICKDRAW_URL = "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/{category}.npy"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TEST_PER_CLASS = 1000
BITMAP_SIDE = 28
TIMEOUT_S = 60

#: qd-cifar10 is built here; the real SBIR releases are fetched by dfbench_datasets.releases
FETCHABLE = ("qd-cifar10", "sketchy", "tuberlin", "quickdraw")

NO_NETWORK_HINT = (
    "'dfbench data fetch' needs internet access. On an offline machine, download the files elsewhere and "
    "pass them with --source-bitmaps DIR (QuickDraw <category>.npy files) and --cifar-root DIR (a "
    "torchvision CIFAR-10 folder holding cifar-10-batches-py), or copy a built qd-cifar10 folder and "
    "point DFBENCH_DATA or --data-root at it."
)


@dataclass
class FetchResult:
    name: str
    dest: Path
    created: bool  # False when it was already there (and not --force)
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0


def check_fetchable(name: str) -> None:
    if name in FETCHABLE:
        return
    if name in ("folder", "shapes"):
        what = "reads your own folder (--data-root)" if name == "folder" else "is generated, with no download"
        raise DataError(f"The dataset '{name}' {what}: there is nothing to fetch. Fetchable: {', '.join(FETCHABLE)}.")
    known = list(FETCHABLE) + ["folder", "shapes"]
    raise UnknownNameError(
        f"Unknown dataset '{name}' for 'dfbench data fetch'.{did_you_mean(name, known)} Datasets that can be "
        f"fetched: {', '.join(FETCHABLE)}."
    )


# -- downloads ----------------------------------------------------------------------------------


def _progress(quiet: bool):
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        disable=quiet,
        transient=False,
    )


def _network_error(url: str, exc: BaseException) -> DataError:
    return DataError(f"Could not download {url} ({type(exc).__name__}: {exc}). {NO_NETWORK_HINT}")


def _open(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers={"User-Agent": "dfbench", **(headers or {})})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def download_prefix(url: str, nbytes: int, quiet: bool = False, description: str = "") -> bytes:
    """The first ``nbytes`` of ``url`` (fewer if shorter), asking for a range and reading no more."""
    chunks, got = [], 0
    try:
        with _open(url, {"Range": f"bytes=0-{nbytes - 1}"}) as response, _progress(quiet) as progress:
            task = progress.add_task(description or url.rsplit("/", 1)[-1], total=nbytes)
            while got < nbytes:
                chunk = response.read(min(1 << 16, nbytes - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
                progress.update(task, advance=len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _network_error(url, exc) from exc
    return b"".join(chunks)


def download_file(url: str, dest: Path, md5: str | None = None, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` atomically (dfbench.api.fileio.atomic_open: a temporary sibling
    renamed when complete and checked, removed on any failure)."""
    digest = hashlib.md5()
    with atomic_open(dest, "wb") as fh:
        try:
            with _open(url) as response, _progress(quiet) as progress:
                total = response.length
                task = progress.add_task(dest.name, total=total)
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    digest.update(chunk)
                    progress.update(task, advance=len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _network_error(url, exc) from exc
        if md5 is not None and digest.hexdigest() != md5:
            raise DataError(
                f"The download of {url} is corrupt (MD5 {digest.hexdigest()}, expected {md5}). Run the "
                "command again; if it keeps failing, download the file by hand and pass its folder instead."
            )
    return dest


# -- QuickDraw bitmaps --------------------------------------------------------------------------


def parse_npy_prefix(data: bytes, rows: int, source: str):
    """The first ``rows`` rows of a uint8 (N, 784) ``.npy`` file given (a prefix of) its bytes."""
    import numpy as np

    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(
            f"{source} is not a QuickDraw numpy_bitmap .npy file ({exc}). Replace it with the file of the "
            "same name from Google's numpy_bitmap release."
        ) from exc
    offset = buf.tell()
    size = rows * BITMAP_SIDE * BITMAP_SIDE
    return _check_bitmaps(shape, fortran, dtype, rows, source, lambda: np.frombuffer(data, np.uint8, size, offset))


def _check_bitmaps(shape, fortran, dtype, rows: int, source: str, take):
    import numpy as np

    side2 = BITMAP_SIDE * BITMAP_SIDE
    if len(shape) != 2 or shape[1] != side2 or np.dtype(dtype) != np.uint8 or fortran:
        raise DataError(
            f"{source} holds an array of shape {tuple(shape)} and dtype {dtype}, not the uint8 (N, 784) "
            "drawings of Google's numpy_bitmap release. Replace it with the file from "
            "https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/."
        )
    if shape[0] < rows:
        raise DataError(
            f"{source} holds {shape[0]} drawings but {rows} are needed (train + test sketches per class). "
            "Lower --train-sketches/--test-sketches or use a file with more drawings."
        )
    try:
        return np.asarray(take(), dtype=np.uint8).reshape(rows, side2)
    except ValueError as exc:
        raise DataError(f"{source} is truncated ({exc}). Download it again.") from exc


def bitmap_file(folder: Path, category: str) -> Path | None:
    names = [
        f"{category}.npy",
        f"full_numpy_bitmap_{category}.npy",
        f"{category.replace(' ', '_')}.npy",
        f"full_numpy_bitmap_{category.replace(' ', '_')}.npy",
    ]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def load_bitmaps(category: str, rows: int, source_dir: Path | None, quiet: bool = False):
    """The first ``rows`` drawings of a category, (rows, 784) uint8, white strokes on black."""
    import numpy as np

    if source_dir is not None:
        path = bitmap_file(source_dir, category)
        if path is None:
            raise DataError(
                f"{source_dir} has no QuickDraw bitmap file for the category '{category}' (looked for "
                f"'{category}.npy' and 'full_numpy_bitmap_{category}.npy'). Download it from "
                f"{QUICKDRAW_URL.format(category=urllib.parse.quote(category))} into that folder, or "
                "leave out --source-bitmaps to download it."
            )
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(
                f"{path} is not a readable .npy file ({type(exc).__name__}: {exc}). Replace it with the file "
                "from Google's numpy_bitmap release."
            ) from exc
        return _check_bitmaps(arr.shape, False, arr.dtype, rows, str(path), lambda: arr[:rows])
    url = QUICKDRAW_URL.format(category=urllib.parse.quote(category))
    data = download_prefix(url, 4096 + rows * BITMAP_SIDE * BITMAP_SIDE, quiet, f"QuickDraw {category}")
    return parse_npy_prefix(data, rows, url)


# -- CIFAR-10 -----------------------------------------------------------------------------------


def _safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.11.4: refuse absolute paths and '..' by hand
            for member in tar.getmembers():
                target = (dest / member.name).resolve()
                if not str(target).startswith(str(dest.resolve())) or member.issym() or member.islnk():
                    raise DataError(f"{archive} contains an unsafe path {member.name}; download it again.")
            tar.extractall(dest)


def cifar10_test(cifar_root: Path | None, quiet: bool = False):
    """(images uint8 (N, 32, 32, 3), labels list, class names) of the CIFAR-10 test split."""
    if cifar_root is not None:
        root = Path(cifar_root)
        if root.name == "cifar-10-batches-py":
            root = root.parent
        if not (root / "cifar-10-batches-py").is_dir():
            raise DataError(
                f"{cifar_root} is not a torchvision CIFAR-10 folder: it has no cifar-10-batches-py/ inside. "
                f"Pass the folder that contains cifar-10-batches-py (extracted from {CIFAR10_URL}), or leave "
                "out --cifar-root to download it."
            )
    else:
        root = default_cache_dir() / "downloads" / "cifar10"
        if not (root / "cifar-10-batches-py" / "test_batch").is_file():
            archive = root / "cifar-10-python.tar.gz"
            if not archive.is_file() or _md5(archive) != CIFAR10_MD5:
                download_file(CIFAR10_URL, archive, md5=CIFAR10_MD5, quiet=quiet)
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
            try:
                _safe_extract(archive, staging)
                shutil.rmtree(root / "cifar-10-batches-py", ignore_errors=True)
                os.replace(staging / "cifar-10-batches-py", root / "cifar-10-batches-py")
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            archive.unlink()  # the extracted batches are kept; the archive is not needed again
    import torchvision

    try:
        data = torchvision.datasets.CIFAR10(str(root), train=False, download=False)
    except (RuntimeError, OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"The CIFAR-10 files in {root / 'cifar-10-batches-py'} are missing or corrupt ({exc}). Delete that "
            "folder and fetch again (or extract a fresh copy of cifar-10-python.tar.gz there)."
        ) from exc
    return data.data, list(data.targets), list(data.classes)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- building the tree --------------------------------------------------------------------------


def _clean_stale_partials(dest: Path) -> None:
    """Remove temporary trees left by fetches that were killed (their process is gone)."""
    for path in dest.parent.glob(f".{dest.name}.partial-*"):
        try:
            pid = int(path.name.rsplit(".partial-", 1)[1].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def fetch_qd_cifar10(
    dest: Path | None = None,
    *,
    source_bitmaps: Path | None = None,
    cifar_root: Path | None = None,
    photos: bool = True,
    train_sketches: int = DEFAULT_COUNTS["train_sketches"],
    test_sketches: int = DEFAULT_COUNTS["test_sketches"],
    train_photos: int = DEFAULT_COUNTS["train_photos"],
    test_photos: int = DEFAULT_COUNTS["test_photos"],
    force: bool = False,
    quiet: bool = False,
    log=None,
) -> FetchResult:
    """Build ``dest`` (default ``$DFBENCH_DATA/qd-cifar10``) as {train,test}/{photo,sketch}/<class>/."""
    from PIL import Image

    say = log or (lambda msg: None)
    start = time.perf_counter()
    dest = Path(dest).expanduser() if dest is not None else default_data_dir() / "qd-cifar10"
    for label, value in (("--train-sketches", train_sketches), ("--test-sketches", test_sketches),
                         ("--train-photos", train_photos), ("--test-photos", test_photos)):
        if int(value) < 1:
            raise DataError(f"{label} must be at least 1, got {value}.")
    if photos and train_photos + test_photos > CIFAR10_TEST_PER_CLASS:
        raise DataError(
            f"--train-photos + --test-photos is {train_photos + test_photos}, but the CIFAR-10 test split has "
            f"{CIFAR10_TEST_PER_CLASS} photos per class. Lower them (the default is 500 + 500)."
        )
    if dest.exists() and not force:
        if dest.is_dir() and any(dest.iterdir()):
            say(f"{dest} already exists; pass --force to rebuild it.")
            return FetchResult("qd-cifar10", dest, created=False, seconds=time.perf_counter() - start)
        if not dest.is_dir():
            raise DataError(f"{dest} exists and is not a folder. Remove it or pass another --dest.")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"Cannot create {dest.parent} ({exc}). Pass a writable --dest or set DFBENCH_DATA.") from exc
    _clean_stale_partials(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-{os.getpid()}-", dir=dest.parent))
    counts: dict = {}
    try:
        rows = train_sketches + test_sketches
        for cls, category, _ in CLASSES:
            say(f"sketches: {cls} <- QuickDraw '{category}'")
            bitmaps = load_bitmaps(category, rows, source_bitmaps, quiet)
            for i in range(rows):
                split = "train" if i < train_sketches else "test"
                folder = tmp / split / "sketch" / cls
                folder.mkdir(parents=True, exist_ok=True)
                pixels = 255 - bitmaps[i].reshape(BITMAP_SIDE, BITMAP_SIDE)
                Image.fromarray(pixels, "L").save(folder / f"qd_{i:04d}.png", "PNG")
            counts[f"train/sketch/{cls}"] = train_sketches
            counts[f"test/sketch/{cls}"] = test_sketches
        if photos:
            say("photos: CIFAR-10 test split")
            images, targets, names = cifar10_test(cifar_root, quiet)
            need = train_photos + test_photos
            for cls, _, cifar_class in CLASSES:
                if cifar_class not in names:
                    raise DataError(f"The CIFAR-10 copy has no class '{cifar_class}' (it has {', '.join(names)}).")
                index = names.index(cifar_class)
                chosen = [i for i, t in enumerate(targets) if t == index][:need]
                if len(chosen) < need:
                    raise DataError(
                        f"The CIFAR-10 test split has {len(chosen)} '{cifar_class}' photos, fewer than the {need} "
                        "asked for. Lower --train-photos/--test-photos."
                    )
                for j, i in enumerate(chosen):
                    split = "train" if j < train_photos else "test"
                    folder = tmp / split / "photo" / cls
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(images[i], "RGB").save(folder / f"cifar_{j:04d}.jpg", "JPEG")
                counts[f"train/photo/{cls}"] = train_photos
                counts[f"test/photo/{cls}"] = test_photos
        info = {
            "dataset": "qd-cifar10",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "sketches": {
                "source": str(source_bitmaps) if source_bitmaps else QUICKDRAW_URL,
                "license": "CC BY 4.0 (Google, The Quick, Draw! dataset)",
                "rows": f"first {rows} drawings per category; first {train_sketches} train",
            },
            "photos": None
            if not photos
            else {
                "source": str(cifar_root) if cifar_root else CIFAR10_URL,
                "split": "CIFAR-10 test split",
                "reference": "Krizhevsky, Learning Multiple Layers of Features from Tiny Images, 2009",
                "rows": f"first {train_photos + test_photos} per class; first {train_photos} train",
            },
            "classes": [{"class": c, "quickdraw": q, "cifar10": k} for c, q, k in CLASSES],
            "counts": counts,
        }
        (tmp / "fetch-info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private; give it the usual permissions
        _swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FetchResult("qd-cifar10", dest, created=True, counts=counts, seconds=time.perf_counter() - start)


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the finished tree to ``dest``; an existing ``dest`` is replaced only once it is done."""
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    old.rmdir()
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)

