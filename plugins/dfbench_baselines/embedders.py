"""Embedders of the training-free baselines: the teachers themselves, and their weight average.

- :class:`TeacherEmbedder` (``classifier-only``): each modality is embedded by the teacher that
  judges it: its class probabilities (``probs``) or logits (``logits``), vectors in the label
  space both teachers share, compared by cosine.
- :func:`average_classifiers` and :class:`ClassifierEmbedder` (``avg-weights``): one network whose
  every parameter and BatchNorm running statistic is the element-wise mean of the photo and sketch
  teachers', used for both modalities.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from dfbench.api.errors import ConfigError

#: every readout of a classifier: its penultimate features, its logits, its class probabilities
READOUTS = ("features", "logits", "probs")


def _check_readout(readout: str, allowed) -> str:
    if readout not in allowed:
        raise ConfigError(f"Unknown readout '{readout}' for this method: use one of {', '.join(allowed)}.")
    return readout


def _read(net, images: torch.Tensor, readout: str) -> torch.Tensor:
    feats = net.features(images)
    if readout == "features":
        return F.normalize(feats, dim=1)
    logits = net.head(feats)
    return F.softmax(logits, dim=1) if readout == "probs" else logits


class TeacherEmbedder:
    """Retrieval through the teachers: ``embed(images, m)`` is the readout of m's judging teacher."""

    def __init__(self, teachers, variant: str, readout: str = "probs"):
        self.teachers = teachers
        self.variant = variant
        self.readout = _check_readout(readout, READOUTS)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        teacher = self.teachers.for_modality(modality, self.variant)
        teacher.eval()
        return _read(teacher, images, self.readout)


def _describe(net) -> str:
    return f"{getattr(net, 'arch', type(net).__name__)} ({type(net.backbone).__name__}, {getattr(net, 'feature_dim', '?')}-d features)"


def average_classifiers(a, b):
    """A new frozen classifier whose state is the element-wise mean of ``a``'s and ``b``'s: every
    parameter and floating buffer (BatchNorm running means and variances included); integer
    buffers (BatchNorm's batch counters) are the rounded-down mean. Raises :class:`ConfigError`
    when the two networks differ in architecture (type, tensor names or shapes)."""
    from dfbench.train.models import freeze

    if getattr(a, "arch", None) != getattr(b, "arch", None) or type(a.backbone) is not type(b.backbone):
        raise ConfigError(
            "avg-weights averages the photo and sketch teachers weight by weight, so they must share "
            f"one architecture; got photo: {_describe(a)}, sketch: {_describe(b)}. Use teachers of the "
            "same teachers.arch/width/feature_dim."
        )
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb):
        only = sorted(set(sa) ^ set(sb))
        raise ConfigError(
            "avg-weights needs photo and sketch teachers of the same architecture, but their tensors "
            f"differ (e.g. '{only[0] if only else next(iter(sa))}'). Use teachers of the same "
            "teachers.arch/width/feature_dim."
        )
    avg = {}
    for key, x in sa.items():
        y = sb[key]
        if x.shape != y.shape:
            raise ConfigError(
                f"avg-weights needs photo and sketch teachers of the same architecture, but '{key}' has "
                f"shape {tuple(x.shape)} in the photo teacher and {tuple(y.shape)} in the sketch teacher. "
                "Use teachers of the same teachers.arch/width/feature_dim (and the same classes)."
            )
        if x.is_floating_point():
            avg[key] = (x + y.to(x.device)) / 2
        else:
            avg[key] = torch.div(x + y.to(x.device), 2, rounding_mode="floor")
    net = copy.deepcopy(a)
    net.load_state_dict(avg)
    return freeze(net)


class ClassifierEmbedder:
    """One classifier embeds both modalities (``probs``, ``logits`` or L2-normalised ``features``)."""

    def __init__(self, net, readout: str = "probs"):
        self.net = net
        self.readout = _check_readout(readout, READOUTS)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, modality: str) -> torch.Tensor:
        self.net.eval()
        return _read(self.net, images, self.readout)
