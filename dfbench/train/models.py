"""Network architectures shared by teachers, students and estimators.

Every classifier exposes ``features(x)`` (the penultimate representation) and ``head`` (the final
``nn.Linear``), so methods use the teacher's head as proxies or read out student embeddings through
it without a ``return_features=True`` flag.

Architectures (``arch`` in configs):
- ``cnn``: a small 4-block CNN (conv-BN-ReLU, max-pool) for the CPU profiles; ``width`` and
  ``feature_dim`` configurable.
- ``resnet18``, ``resnet34``: torchvision ResNets for the ``paper`` profile;
- ``mobilenet_v2``: torchvision's MobileNetV2-1.0 (1280 features), the pretrained cpu regime.
Any backbone starts from ``weights`` (:mod:`dfbench.train.pretrained`): ``none`` (a random
initialisation), ``imagenet`` (ImageNet weights from a file on this machine, never downloaded) or a
state dict file; a pretrained backbone normalises its [-1, 1] inputs as ImageNet's were.
Estimators (generators), both ending in ``tanh``:
- :class:`Estimator` (``upsample``): a linear map of the noise to a 4-8 pixel map, then nearest
  upsampling + conv + BatchNorm + LeakyReLU blocks (the cpu profiles);
- :class:`ConvTransposeEstimator` (``convtranspose``): the DCGAN stack of the public DF-SBIR
  release: the noise projected to a 4x4 map, ConvTranspose2d(4, 2, 1) + BatchNorm + ReLU doublings.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfbench.api.errors import ConfigError, did_you_mean

ARCHES = ("cnn", "resnet18", "resnet34", "mobilenet_v2")


class Classifier(nn.Module):
    """A backbone producing features, and a linear head producing logits."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_outputs: int, arch: str):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(feature_dim, num_outputs)
        self.feature_dim = feature_dim
        self.num_outputs = num_outputs
        self.arch = arch

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class SmallCNN(nn.Module):
    """4 blocks of conv3x3-BN-ReLU, each of the first three followed by 2x2 max-pooling, global
    average pooling, and a linear projection to ``feature_dim`` (with BN and ReLU). At 32 px and
    width 32 a forward pass costs about 13 MMAC per image: teachers train in a minute on a CPU."""

    def __init__(self, width: int = 32, feature_dim: int = 128, in_channels: int = 3):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 4]
        layers: list[nn.Module] = []
        prev = in_channels
        for i, c in enumerate(chans):
            layers += [nn.Conv2d(prev, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            prev = c
        self.body = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(prev, feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))

    def forward(self, x):
        h = self.body(x)
        h = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        return self.proj(h)


def _resnet_backbone(arch: str, image_size: int, pretrained: bool = False) -> tuple[nn.Module, int]:
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None)
    if image_size <= 64 and not pretrained:  # CIFAR-style stem: keep spatial resolution for small images
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
    dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, dim


class MobileNetV2Features(nn.Module):
    """torchvision's MobileNetV2-1.0 feature layers, then global average pooling: 1280 features."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.features = torchvision.models.mobilenet_v2(weights=None).features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1)


def build_backbone(arch: str, *, image_size: int, width: int = 32, feature_dim: int = 128,
                   weights: str | None = None, where: str = "weights") -> tuple[nn.Module, int]:
    """A backbone of ``arch`` and its feature size. ``weights`` (:mod:`dfbench.train.pretrained`):
    ``none`` or unset, ``imagenet`` or a state dict file; ``where`` names the option in errors."""
    from dfbench.train import pretrained as pre

    source = pre.resolve(arch, weights, where)
    if arch == "cnn":
        net, dim = SmallCNN(width=width, feature_dim=feature_dim), feature_dim
    elif arch in ("resnet18", "resnet34"):
        net, dim = _resnet_backbone(arch, image_size, pretrained=source is not None)
    elif arch == "mobilenet_v2":
        net, dim = MobileNetV2Features(), 1280
    else:
        raise ConfigError(
            f"Unknown architecture '{arch}'.{did_you_mean(arch, ARCHES)} Choose one of: {', '.join(ARCHES)}."
        )
    if source is None:
        return net, dim
    net = pre.PretrainedBackbone(net)
    pre.load_into(net, source, where)
    net.pretrained = source  # what the record says of it
    return net, dim


def build_classifier(arch: str, num_outputs: int, *, image_size: int, width: int = 32, feature_dim: int = 128,
                     weights: str | None = None, where: str = "weights") -> Classifier:
    backbone, dim = build_backbone(arch, image_size=image_size, width=width, feature_dim=feature_dim, weights=weights, where=where)
    return Classifier(backbone, dim, num_outputs, arch)


class Encoder(nn.Module):
    """A student encoder: backbone, then a linear embedding of ``embed_dim`` (the teacher's
    feature size, so the teacher head's weights can serve as proxies).

    ``embedding_layer=False`` (the public release): no linear layer, the backbone's feature is the
    embedding (``embed`` is None); the backbone's feature size must then equal ``embed_dim``."""

    def __init__(self, arch: str, embed_dim: int, *, image_size: int, width: int = 32, feature_dim: int = 128,
                 embedding_layer: bool = True, weights: str | None = None):
        super().__init__()
        self.backbone, dim = build_backbone(arch, image_size=image_size, width=width, feature_dim=feature_dim,
                                            weights=weights, where="students.weights")
        if embedding_layer:
            self.embed = nn.Linear(dim, embed_dim)
        elif dim != embed_dim:
            raise ConfigError(
                f"students.embedding_layer=false makes the backbone's feature the embedding, but the students' "
                f"{arch} backbone gives {dim} features and the teachers' proxies have {embed_dim}: give the students "
                "the teachers' feature size (students.arch/feature_dim) or set students.embedding_layer=true."
            )
        else:
            self.embed = None
        self.arch = arch
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone(x)
        return h if self.embed is None else self.embed(h)


class Estimator(nn.Module):
    """DCGAN-style generator: noise (B, z_dim) -> image (B, 3, S, S) in [-1, 1].

    A linear map to a ``4*width``-channel map of 4-8 pixels, then blocks of nearest upsampling,
    conv3x3, BatchNorm and LeakyReLU that halve the channels (down to ``width``), and a conv3x3 +
    tanh. At 32 px and width 32 it costs about 20 MMAC per image, like the small teacher CNN.

    ``channels=1`` produces grey images (sketches), replicated to 3 channels on output.
    ``output_norm``: the last conv's output is batch-normalised per channel (no affine) before the
    tanh, as DAFL's generator normalises its output batch (Chen et al. 2019, release): each batch's
    pixels then have mean 0 and variance 1 per channel before the tanh, never a blank or saturated
    batch (rows may still repeat one image: the statistics are over the batch and its pixels).
    """

    def __init__(self, z_dim: int = 256, image_size: int = 32, channels: int = 3, width: int = 64, output_norm: bool = False):
        super().__init__()
        self.z_dim = z_dim
        self.channels = channels
        self.init_size, n_up = _doublings(image_size, 2)
        top = width * 4
        self.fc = nn.Linear(z_dim, top * self.init_size**2)
        self.top = top
        blocks: list[nn.Module] = [nn.BatchNorm2d(top)]
        c = top
        for _ in range(n_up):  # each block doubles the resolution and halves the channels, down to width
            nc = max(width, c // 2)
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c, nc, 3, padding=1, bias=False),
                nn.BatchNorm2d(nc),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c = nc
        blocks += [nn.Conv2d(c, channels, 3, padding=1), *([nn.BatchNorm2d(channels, affine=False)] if output_norm else []), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.top, self.init_size, self.init_size)
        x = self.net(h)
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return x


def _doublings(image_size: int, min_doublings: int) -> tuple[int, int]:
    """(start size in 4..7, number of doublings) that reach ``image_size``."""
    n_up = 0
    while image_size % 2 ** (n_up + 1) == 0 and image_size // 2 ** (n_up + 1) >= 4:
        n_up += 1
    init = image_size // 2**n_up
    if n_up < min_doublings or init > 8:
        raise ConfigError(
            f"Estimator image size {image_size} cannot be reached by doubling a 4-8 pixel map; "
            "use a size such as 32, 64, 128 or 224."
        )
    return init, n_up


class ConvTransposeEstimator(nn.Module):
    """The DCGAN generator of the public DF-SBIR release: noise (B, z_dim) -> image (B, 3, S, S)
    in [-1, 1].

    The noise, seen as a 1x1 map, is projected to a ``s0 x s0`` map (s0 = 4 for power-of-two
    sizes; 7 for 224 px) by a ConvTranspose2d with BatchNorm and ReLU; then each
    ConvTranspose2d(kernel 4, stride 2, padding 1) doubles the resolution, with BatchNorm and ReLU,
    halving the channels down to ``width`` (the release's ngf); the last one maps to the image's
    channels, with tanh. Channels start at ``width * 2**(doublings - 1)``, at most ``8 * width``
    (DCGAN's ngf*8 at 64 px).

    ``channels=1`` produces grey images, replicated to 3 channels on output.
    """

    def __init__(self, z_dim: int = 256, image_size: int = 64, channels: int = 3, width: int = 64):
        super().__init__()
        self.z_dim = z_dim
        self.channels = channels
        self.init_size, n_up = _doublings(image_size, 1)
        c = width * min(8, 2 ** (n_up - 1))
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(z_dim, c, self.init_size, 1, 0, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        ]
        for i in range(n_up - 1):
            nc = width * min(8, 2 ** (n_up - 2 - i))
            layers += [nn.ConvTranspose2d(c, nc, 4, 2, 1, bias=False), nn.BatchNorm2d(nc), nn.ReLU(inplace=True)]
            c = nc
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.net(z.view(z.shape[0], self.z_dim, 1, 1))
        if self.channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return x


#: estimator architectures (``params.inversion.arch``)
ESTIMATOR_ARCHES = {"upsample": Estimator, "convtranspose": ConvTransposeEstimator}


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients for the parameters (inputs can still get gradients)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def weights_digest(module: nn.Module) -> str:
    """A digest of a module's weights and buffers (names, dtypes, shapes and bytes, in name order):
    equal digests are the same network bit for bit. Records carry their teachers' digests, so two
    rows compared seed by seed can be checked to have run on the same teachers: a teacher trained
    again on another kind of CPU differs in its last bits and is another teacher."""
    return state_digest(module.state_dict())


def state_digest(state_dict: dict) -> str:
    """:func:`weights_digest` of a state dict (a cached teacher's, say)."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]
