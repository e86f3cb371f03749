"""Reading image files into the uint8 tensors that :mod:`dfbench.api.datasets` hands to networks.

* :func:`read_image` decodes one file into a ``(3, S, S)`` uint8 tensor, read as one of
  :data:`READ_AS`: ``colour`` images (photographs) are converted to RGB, and a non-square one is
  resized so that its shorter side is ``S`` and then centre-cropped; ``grey`` images (drawings) are
  converted to grey (transparent pixels become white paper), replicated over three channels, and a
  non-square one is padded with white to a square first, so that no stroke is cut off. A modality
  (:class:`dfbench.api.modalities.Modality`) is read as its ``channels`` say (3: colour, 1: grey).
  Resizing is bilinear with PIL's antialiasing (the filter widens when shrinking). An image's EXIF
  orientation flag (phone cameras) is applied first.
* :func:`scan_image_tree` lists ``<folder>/<class>/<image files>``: image files are recognised by
  their suffix (case-insensitive, :data:`dfbench.api.datasets.IMAGE_SUFFIXES`); hidden entries (``.``
  prefix, such as ``.DS_Store`` or macOS ``._x.jpg`` resource forks) are ignored silently; other
  files and nested folders are skipped and listed in :attr:`ImageTree.ignored`.
* :func:`read_images` decodes many files into one tensor, failing on the first unreadable file
  or, with ``skip_bad_images``, skipping it with a :class:`BadImageWarning` that names the file.
* :func:`load_image_tree` does both for one ``<class>/<files>`` folder and returns a
  :class:`~dfbench.api.datasets.TensorImageSet`.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

from dfbench.api.datasets import IMAGE_SUFFIXES, ImageSet, TensorImageSet
from dfbench.api.errors import DataError

log = logging.getLogger("dfbench.datasets")

#: after this many per-file warnings, the rest of one batch is summarised in a single warning
MAX_FILE_WARNINGS = 20

_EXIF_ORIENTATION = 0x0112

SKIP_HINT = "Remove or replace it, or pass --skip-bad-images to skip unreadable files with a warning."


class BadImageWarning(UserWarning):
    """An unreadable image file was skipped (``--skip-bad-images``)."""


def is_image_name(name: str) -> bool:
    """Whether a file name has an image suffix (case-insensitive) and is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


# -- one image ----------------------------------------------------------------------------------


#: how a file can be read: in colour, centre-cropped (photographs), or grey, white-padded (drawings)
READ_AS = ("colour", "grey")


def read_as(modality) -> str:
    """How images of ``modality`` are read (one of :data:`READ_AS`): given as such, as a
    :class:`dfbench.api.modalities.Modality` (its channels), or as a key of the default pair."""
    from dfbench.api.modalities import DEFAULT_PAIR, Modality

    if isinstance(modality, Modality):
        return "grey" if modality.channels == 1 else "colour"
    if modality in READ_AS:
        return modality
    if modality in DEFAULT_PAIR:
        return read_as(DEFAULT_PAIR[modality])
    raise ValueError(f"read images as one of {READ_AS} (or a modality), got {modality!r}")


def _to_mode(im, look: str):
    """Convert a PIL image to RGB (colour) or L (grey); transparency becomes white."""
    from PIL import Image

    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grey: scale to 8 bits instead of letting convert() clip everything above 255
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        im = Image.fromarray((arr / scale).clip(0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        background.alpha_composite(im.convert("RGBA"))
        im = background
    target = "RGB" if look == "colour" else "L"
    return im if im.mode == target else im.convert(target)


def _resize_square(im, size: int, look: str):
    from PIL import Image

    w, h = im.size
    if w != h:
        if look == "grey":
            side = max(w, h)
            canvas = Image.new(im.mode, (side, side), 255)
            canvas.paste(im, ((side - w) // 2, (side - h) // 2))
            im, w, h = canvas, side, side
        else:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            return im.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
    if w == size:
        return im
    return im.resize((size, size), Image.BILINEAR)


def _decode(path, image_size: int, look: str):
    """The uint8 array (S, S, 3) of one file read as ``look`` (:data:`READ_AS`); PIL/OS errors propagate."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if im.format == "JPEG" and min(im.size) >= 2 * image_size:
            # let libjpeg decode at a reduced scale (still at least twice the target size)
            im.draft("RGB" if look == "colour" else "L", (2 * image_size, 2 * image_size))
        im.load()
        if im.format in ("JPEG", "MPO", "TIFF", "WEBP") and im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)  # phone photos: apply the camera's rotation flag
        im = _resize_square(_to_mode(im, look), image_size, look)
        arr = np.array(im, dtype=np.uint8)  # a writable copy (torch warns about read-only arrays)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr


def _read_error(path, exc: BaseException) -> DataError:
    return DataError(
        f"{path} is not a readable image (PIL error {type(exc).__name__}: {exc}). {SKIP_HINT}"
    )


_DECODE_ERRORS: tuple = (OSError, ValueError, SyntaxError, EOFError, MemoryError)


def _decode_errors() -> tuple:
    from PIL import Image

    return _DECODE_ERRORS + (Image.DecompressionBombError,)


def read_image(path: str | Path, image_size: int, modality: str) -> "torch.Tensor":  # noqa: F821
    """One image file as a uint8 tensor (3, S, S), read as ``modality`` says (:func:`read_as`);
    :class:`DataError` naming the file if unreadable."""
    import torch

    look = read_as(modality)
    try:
        arr = _decode(path, image_size, look)
    except _decode_errors() as exc:
        raise _read_error(path, exc) from exc
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def read_images(
    paths: Sequence[str | Path],
    image_size: int,
    modality: str,
    skip_bad_images: bool = False,
) -> tuple:
    """Decode many files into one uint8 tensor (K, 3, S, S).

    Returns ``(images, kept, bad)``: ``kept`` are the indices into ``paths`` of the K images read,
    ``bad`` the paths skipped (only with ``skip_bad_images``; otherwise the first unreadable file
    raises :class:`DataError`).
    """
    import numpy as np
    import torch

    look = read_as(modality)
    errors = _decode_errors()
    out = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    kept: list[int] = []
    bad: list[str] = []
    for i, path in enumerate(paths):
        try:
            out[len(kept)] = _decode(path, image_size, look)
        except errors as exc:
            if not skip_bad_images:
                raise _read_error(path, exc) from exc
            bad.append(str(path))
            if len(bad) <= MAX_FILE_WARNINGS:
                warnings.warn(
                    f"skipping {path}: not a readable image ({type(exc).__name__}: {exc})",
                    BadImageWarning,
                    stacklevel=2,
                )
            continue
        kept.append(i)
    if len(bad) > MAX_FILE_WARNINGS:
        warnings.warn(
            f"skipped {len(bad) - MAX_FILE_WARNINGS} more unreadable {modality} files (last: {bad[-1]})",
            BadImageWarning,
            stacklevel=2,
        )
    images = torch.from_numpy(out[: len(kept)]).permute(0, 3, 1, 2).contiguous()
    return images, kept, bad


class FileImageSet(ImageSet):
    """Image files read lazily and resized to ``image_size`` (large benchmarks)."""

    def __init__(self, files: Sequence[str | Path], labels, image_size: int, modality: str):
        import torch

        self.files = [str(f) for f in files]
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.image_size = image_size
        self.modality = read_as(modality)

    def __len__(self) -> int:
        return len(self.files)

    def load_uint8(self, indices):
        import torch

        return torch.stack([read_image(self.files[i], self.image_size, self.modality) for i in indices])


def make_file_image_set(files, labels, image_size: int, modality: str, skip_bad_images: bool) -> FileImageSet:
    """A lazily read image set. With ``skip_bad_images`` every file is decoded once up front (the
    same decoder a batch uses, so what passes here reads later), the unreadable ones are left out
    with a :class:`BadImageWarning` naming them and listed in the set's ``bad_files``, and labels stay
    aligned with the files kept: an unreadable file is never replaced by a made-up image. Without it,
    the first unreadable file met in a batch stops the run with a :class:`DataError` naming it."""
    if not skip_bad_images:
        out = FileImageSet(files, labels, image_size, modality)
        out.bad_files = []
        return out
    look = read_as(modality)
    errors = _decode_errors()
    labels = list(labels)
    kept: list[int] = []
    bad: list[str] = []
    for i, path in enumerate(files):
        try:
            _decode(path, image_size, look)
        except errors as exc:
            bad.append(str(path))
            if len(bad) <= MAX_FILE_WARNINGS:
                warnings.warn(f"skipping {path}: not a readable image ({type(exc).__name__}: {exc})", BadImageWarning, stacklevel=2)
            continue
        kept.append(i)
    if len(bad) > MAX_FILE_WARNINGS:
        warnings.warn(f"skipped {len(bad) - MAX_FILE_WARNINGS} more unreadable {modality} files (last: {bad[-1]})",
                      BadImageWarning, stacklevel=2)
    out = FileImageSet([files[i] for i in kept], [int(labels[i]) for i in kept], image_size, modality)
    out.bad_files = bad
    return out


# -- folders ------------------------------------------------------------------------------------


class FileEntry(NamedTuple):
    path: str
    size: int = -1  # bytes, -1 when not stat'ed
    mtime_ns: int = -1


@dataclass
class ImageTree:
    """The image files of a ``<folder>/<class>/<files>`` tree."""

    folder: Path
    classes: dict = field(default_factory=dict)  # class folder name -> sorted list of FileEntry
    ignored: list = field(default_factory=list)  # paths skipped: non-image files, nested folders

    @property
    def nonempty(self) -> list[str]:
        return sorted(c for c, files in self.classes.items() if files)

    @property
    def empty(self) -> list[str]:
        return sorted(c for c, files in self.classes.items() if not files)

    def num_files(self) -> int:
        return sum(len(f) for f in self.classes.values())


def list_image_files(folder: str | Path, with_stats: bool = False) -> tuple[list[FileEntry], list[str]]:
    """The image files directly inside ``folder`` (sorted by name) and the entries skipped.

    Hidden entries are ignored silently; non-image files and sub-folders are returned as skipped.
    """
    files: list[FileEntry] = []
    skipped: list[str] = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            check_entry_name(entry.path)
            try:
                is_file = entry.is_file()
            except OSError:
                is_file = False
            if not is_file:
                skipped.append(entry.path)
            elif is_image_name(entry.name):
                if with_stats:
                    st = entry.stat()
                    files.append(FileEntry(entry.path, st.st_size, st.st_mtime_ns))
                else:
                    files.append(FileEntry(entry.path))
            else:
                skipped.append(entry.path)
    files.sort(key=lambda f: os.path.basename(f.path))
    skipped.sort()
    return files, skipped


def check_entry_name(path: str) -> None:
    """Refuse a file or folder name that is not valid UTF-8: it could be neither written in a
    record or split manifest nor matched across machines."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise DataError(
            f"The name of {shown} is not valid UTF-8 (the bytes shown as \\x.. escapes), so dfbench cannot "
            "record it. Rename it to a UTF-8 name (for example with 'convmv -f latin1 -t utf8 -r --notest "
            "DIR'), or remove it."
        ) from None


def _is_class_dir(entry, folder: Path) -> bool:
    """Whether a ``folder`` entry is a class folder; a link that loops (to itself, or to a folder
    that contains it) is an error: it would list the data tree inside itself."""
    try:
        if not entry.is_dir():
            return False
        if entry.is_symlink():
            target = Path(entry.path).resolve(strict=True)
            here = Path(folder).resolve()
            if target == here or target in here.parents:
                raise OSError(40, "it links to a folder that contains it")
        return True
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataError(
            f"{entry.path} is a symbolic link loop ({reason}). Remove the link, or make it point at a "
            "folder of images outside the data tree."
        ) from None


def scan_image_tree(folder: str | Path, with_stats: bool = False) -> ImageTree:
    """List ``folder/<class>/<image files>``; stray files at the class level are ignored (noted)."""
    folder = Path(folder)
    tree = ImageTree(folder)
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        check_entry_name(entry.path)
        if _is_class_dir(entry, folder):
            files, skipped = list_image_files(entry.path, with_stats=with_stats)
            tree.classes[entry.name] = files
            tree.ignored.extend(skipped)
        else:
            tree.ignored.append(entry.path)
    if tree.ignored:
        log.info(
            "%s: ignored %d entries that are not image files (first: %s)", folder, len(tree.ignored), tree.ignored[0]
        )
    return tree


def load_image_tree(
    folder: str | Path,
    image_size: int,
    modality: str,
    classes: Sequence[str] | None = None,
    skip_bad_images: bool = False,
) -> TensorImageSet:
    """Read ``folder/<class>/<images>`` into memory; labels index ``classes`` (default: sorted folders).

    Class folders not in ``classes`` are left out; a class in ``classes`` without a folder simply
    has no images (callers validate their layout first).
    """
    tree = scan_image_tree(folder)
    classes = list(classes) if classes is not None else tree.nonempty
    paths, labels = [], []
    for label, name in enumerate(classes):
        for f in tree.classes.get(name, []):
            paths.append(f.path)
            labels.append(label)
    images, kept, _bad = read_images(paths, image_size, modality, skip_bad_images)
    return TensorImageSet(images, [labels[i] for i in kept], files=[paths[i] for i in kept])
