"""The ``digits`` dataset: spoken digits as queries, written digits as the gallery (10 classes).

A second real cross-modal pair, beyond sketches and photos:

- **queries, spoken digits**: the Free Spoken Digit Dataset (Jakobovski et al., CC BY-SA 4.0), 3,000
  recordings ``fsdd/recordings/<digit>_<speaker>_<n>.wav`` (6 speakers x 50 per digit, 8 kHz mono
  16-bit PCM), read with Python's own ``wave`` module. Each recording becomes a log-mel spectrogram
  computed with torch (Hann-windowed STFT, 256-sample frames every 64 samples, an HTK mel filter
  bank of ``image_size`` bands up to 4 kHz, power in dB floored 80 dB below the recording's peak),
  scaled to 0-255 per recording and resampled along time to ``image_size`` frames: an
  ``image_size`` x ``image_size`` grey image, low frequencies at the bottom. The dataset's own
  split: recordings 0-4 of every speaker and digit are the test set (300), the rest train (2,700).
- **gallery, written digits**: MNIST's test set (LeCun et al.) in its IDX files
  ``mnist-test/t10k-{images-idx3,labels-idx1}-ubyte.gz``; per class, in file order, the first
  ``train_per_class`` images are train and the next ``test_per_class`` test, resized to
  ``image_size``.

Both are grey, replicated over three channels, so every teacher, student and method of dfbench
runs on them unchanged. The dataset declares its two modalities (:attr:`DigitsDataset.modalities`):
``spoken`` (the queries, audio entering as spectrogram images) and ``written`` (the gallery); its
image sets, teachers, synthesised batches and records are keyed by these names. The root is
``--data-root`` or ``$DFBENCH_DATA``, a folder that holds ``fsdd/`` and ``mnist-test/``.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import struct
import warnings
import wave
from dataclasses import dataclass
from pathlib import Path

from dfbench.api.datasets import Benchmark, DatasetOptions, DatasetPlugin, default_data_dir
from dfbench.api.modalities import ModalityPair
from dfbench.api.errors import ConfigError, DataError
from dfbench.api.options import Options, option

CLASSES = tuple(str(d) for d in range(10))
SAMPLE_RATE = 8000
N_FFT = 256
HOP = 64
TOP_DB = 80.0
FSDD_TEST_TAKES = range(5)  # the dataset's documented split: takes 0-4 of every speaker and digit are test
_NAME = re.compile(r"^([0-9])_([a-z]+)_([0-9]+)\.wav$")
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@dataclass
class DigitsOptions(Options):
    """``data.options`` of the digits dataset."""

    train_per_class: int = option(500, min=1, help="written digits (MNIST) per class in train")
    test_per_class: int = option(100, min=1, help="written digits (MNIST) per class in test, after the train ones")


EXTRA_KEYS = tuple(DigitsOptions())


class BadRecordingWarning(UserWarning):
    """A recording that could not be read was skipped (``--skip-bad-images``)."""


def mel_filter_bank(n_mels: int, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE):
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the HTK mel scale from 0 Hz to
    the Nyquist frequency, each peaking at 1 (Young et al., The HTK Book)."""
    import torch

    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    top = mel(sample_rate / 2)
    edges = torch.tensor([hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)], dtype=torch.float64)
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


def spectrogram_image(samples, size: int, bank=None):
    """A recording (int16 samples) as a (size, size) uint8 log-mel image (see the module docstring)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.array(samples, dtype=np.float32)) / 32768.0
    if x.numel() < N_FFT:
        x = F.pad(x, (0, N_FFT - x.numel()))
    spec = torch.stft(x, n_fft=N_FFT, hop_length=HOP, window=torch.hann_window(N_FFT), center=True, return_complex=True)
    power = spec.abs().pow(2)
    bank = mel_filter_bank(size) if bank is None else bank
    db = 10.0 * torch.log10(bank @ power + 1e-10)
    db = torch.clamp(db, min=float(db.max()) - TOP_DB)
    span = float(db.max() - db.min())
    unit = (db - db.min()) / span if span > 0 else torch.zeros_like(db)
    img = F.interpolate(unit[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return (img.flip(0).clamp(0, 1) * 255.0).round().to(torch.uint8)


def read_recording(path: Path):
    """The int16 samples of an 8 kHz mono 16-bit PCM WAV file; DataError naming what is wrong."""
    import numpy as np

    try:
        with wave.open(str(path), "rb") as fh:
            channels, width, rate, frames = fh.getnchannels(), fh.getsampwidth(), fh.getframerate(), fh.getnframes()
            data = fh.readframes(frames)
    except (wave.Error, EOFError, OSError) as exc:
        raise DataError(f"The recording {path} could not be read as a WAV file ({exc}). Replace it with the dataset's "
                        "own copy, or pass --skip-bad-images to leave it out.") from None
    if (channels, width, rate) != (1, 2, SAMPLE_RATE):
        raise DataError(f"The recording {path} is {channels} channel(s), {8 * width}-bit, {rate} Hz; the spoken digits are "
                        f"mono 16-bit {SAMPLE_RATE} Hz PCM. Replace it with the dataset's own copy, or pass --skip-bad-images.")
    samples = np.frombuffer(data, dtype="<i2")
    if samples.size == 0:
        raise DataError(f"The recording {path} holds no samples. Replace it, or pass --skip-bad-images.")
    return samples


def _idx(path: Path, kind: int):
    """An IDX array (MNIST's format: magic 0x0000 0x08 <dims>, big-endian sizes, uint8 data)."""
    import numpy as np

    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} could not be read as a gzip file ({exc}). Put MNIST's own t10k files there.") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] != kind:
        raise DataError(f"{path} is not an IDX file of {kind} dimension(s) of unsigned bytes (MNIST's format). Put MNIST's own t10k files there.")
    dims = struct.unpack(f">{kind}I", raw[4:4 + 4 * kind])
    body = raw[4 + 4 * kind:]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{path} holds {len(body)} bytes of data where its header announces {int(np.prod(dims))}: it is truncated or damaged.")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


class DigitsDataset(DatasetPlugin):
    """Spoken digits (FSDD, log-mel spectrograms) as queries, written digits (MNIST) as the gallery."""

    name = "digits"
    Options = DigitsOptions
    #: its two modalities (dfbench.api.modalities): spoken digits query a gallery of written ones;
    #: both enter the networks grey (one channel replicated over three)
    modalities = {
        "spoken": {"role": "query", "name": "spoken digit", "plural": "spoken digits", "kind": "audio", "channels": 1,
                   "as": "log-mel spectrogram image"},
        "written": {"role": "gallery", "name": "written digit", "plural": "written digits", "kind": "image", "channels": 1},
    }

    def resolve_root(self, options: DatasetOptions) -> Path:
        root = Path(options.data_root).expanduser() if options.data_root is not None else default_data_dir()
        missing = [p for p in (root / "fsdd" / "recordings", *(root / "mnist-test" / f for f in MNIST_FILES)) if not p.exists()]
        if missing:
            raise DataError(
                f"The digits data is not complete in {root}: {', '.join(str(p) for p in missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing. The root must hold fsdd/recordings/<digit>_<speaker>_<n>.wav "
                "(the Free Spoken Digit Dataset) and mnist-test/t10k-images-idx3-ubyte.gz with t10k-labels-idx1-ubyte.gz "
                "(MNIST's test set). Point DFBENCH_DATA or --data-root at a folder that holds both."
            )
        return root

    def _recordings(self, root: Path) -> list[tuple[Path, int, str, int]]:
        out, foreign = [], []
        for path in sorted((root / "fsdd" / "recordings").iterdir()):
            m = _NAME.match(path.name)
            if m is None:
                if path.suffix.lower() == ".wav":
                    foreign.append(path.name)
                continue
            out.append((path, int(m.group(1)), m.group(2), int(m.group(3))))
        if foreign:
            raise DataError(f"{root / 'fsdd' / 'recordings'} holds WAV files not named <digit>_<speaker>_<n>.wav "
                            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): the split is read from the names. "
                            "Rename or move them.")
        classes = {d for _, d, _, _ in out}
        if classes != set(range(10)) or not any(t in FSDD_TEST_TAKES for *_, t in out):
            raise DataError(f"{root / 'fsdd' / 'recordings'} does not hold recordings of all ten digits with takes 0-4 "
                            f"(found digits {sorted(classes)}): it is not the Free Spoken Digit Dataset's recordings folder.")
        return out

    def revision(self, options: DatasetOptions) -> str:
        """A content revision of the inputs: every recording's name and content digest, and MNIST's files'."""
        from dfbench.api.digests import DigestCache

        root = self.resolve_root(options)
        digests = DigestCache(options.cache_dir)
        h = hashlib.sha256()
        for path, *_ in self._recordings(root):
            h.update(f"fsdd/recordings/{path.name}\t{digests.digest(path)}\n".encode())
        for name in MNIST_FILES:
            h.update(f"mnist-test/{name}\t{digests.digest(root / 'mnist-test' / name)}\n".encode())
        digests.save()
        return "c" + h.hexdigest()[:15]

    def load(self, options: DatasetOptions) -> Benchmark:
        import numpy as np
        import torch
        import torch.nn.functional as F

        from dfbench.api.datasets import TensorImageSet

        extra = dict(options.extra or {})
        unknown = sorted(set(extra) - set(EXTRA_KEYS))
        if unknown:
            raise ConfigError(f"digits: unknown option(s) {', '.join(repr(k) for k in unknown)}; the valid options are "
                              f"{', '.join(repr(k) for k in EXTRA_KEYS)}.")
        counts = {}
        for key, default in (("train_per_class", 500), ("test_per_class", 100)):
            value = extra.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"digits: '{key}' must be a positive integer (written digits per class), got {value!r}.")
            counts[key] = value
        size = options.image_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 8:
            raise ConfigError(f"digits: image_size must be an integer >= 8, got {size!r}.")
        root = self.resolve_root(options)

        # spoken digits: one spectrogram image per recording, the split from the take number
        bank = mel_filter_bank(size)
        spoken = {"train": ([], []), "test": ([], [])}
        skipped = []
        for path, digit, _speaker, take in self._recordings(root):
            try:
                samples = read_recording(path)
            except DataError as exc:
                if not options.skip_bad_images:
                    raise
                warnings.warn(f"skipped {path}: {exc}", BadRecordingWarning, stacklevel=2)
                skipped.append(path.name)
                continue
            split = "test" if take in FSDD_TEST_TAKES else "train"
            spoken[split][0].append(spectrogram_image(samples, size, bank))
            spoken[split][1].append(digit)

        # written digits: per class in file order, train first, then test
        images = _idx(root / "mnist-test" / MNIST_FILES[0], 3)
        labels = _idx(root / "mnist-test" / MNIST_FILES[1], 1)
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
            raise DataError(f"{root / 'mnist-test'}: {images.shape[0]} images of {images.shape[1:]} against {labels.shape[0]} labels; "
                            "MNIST's t10k files hold 10,000 28 x 28 images and as many labels.")
        want = counts["train_per_class"] + counts["test_per_class"]
        picked = {"train": ([], []), "test": ([], [])}
        for digit in range(10):
            where = np.flatnonzero(labels == digit)
            if len(where) < want:
                raise ConfigError(f"digits: MNIST's test set has {len(where)} images of the digit {digit}, fewer than "
                                  f"train_per_class + test_per_class = {want}. Ask for fewer.")
            for split, part in (("train", where[: counts["train_per_class"]]), ("test", where[counts["train_per_class"]:want])):
                picked[split][0].append(part)
                picked[split][1].extend([digit] * len(part))

        sets = {}
        for split in ("train", "test"):
            spec = torch.stack(spoken[split][0]).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
            sets[(split, "spoken")] = TensorImageSet(spec, torch.tensor(spoken[split][1], dtype=torch.int64))
            idx = np.concatenate(picked[split][0])
            written = torch.from_numpy(images[idx].astype(np.float32) / 255.0).unsqueeze(1)
            if size != 28:
                written = F.interpolate(written, size=(size, size), mode="bilinear", align_corners=False)
            written = (written.clamp(0, 1) * 255.0).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
            sets[(split, "written")] = TensorImageSet(written, torch.tensor(picked[split][1], dtype=torch.int64))
        bench = Benchmark(name=self.name, classes=list(CLASSES), image_size=size, sets=sets, split_manifest=None,
                          modalities=ModalityPair.parse(self.modalities, "dataset 'digits'"),
                          info={"root": str(root), "spectrogram": {
                              "sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP, "mel_bands": size, "top_db": TOP_DB},
                              **counts})
        if skipped:
            bench.info["skipped_recordings"] = skipped
        bench.info["counts"] = bench.counts()
        return bench
