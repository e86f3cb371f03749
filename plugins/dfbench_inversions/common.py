"""Parts the inversion strategies share: class targets, pairing by label, the teacher's augmented
views, BatchNorm-statistics hooks with a moving average and the DCGAN weight initialisation used
when a generator is re-initialised (``pixels``, ``generators``, ``estimators``); teacher labels of
given images and their pairing (``prior``, ``alt-data``, ``real``).

Random draws use a CPU ``torch.Generator`` and are moved to the run's device afterwards, so a run
draws the same numbers on every device, and nothing here waits for the device (no ``.item()`` or
``.tolist()`` of device tensors).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dfbench.api.errors import ConfigError
from dfbench.api.inversion import SynthBatch
from dfbench.train.terms import BatchNormStatsHooks
from dfbench.api.modalities import pair_of

TARGET_MODES = ("none", "balanced", "random")


def check_choice(strategy: str, key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f"params.inversion.{key} of the '{strategy}' strategy must be one of "
            f"{', '.join(map(str, choices))}; got {value!r}."
        )


def sample_targets(n: int, num_classes: int, mode: str, gen: torch.Generator) -> torch.Tensor | None:
    """``n`` class targets on the CPU: ``balanced`` cycles through random permutations of the
    classes (every class appears ``n // C`` or ``n // C + 1`` times), ``random`` draws them
    uniformly, ``none`` gives None (the teacher's argmax labels the samples instead)."""
    if mode == "none":
        return None
    if mode == "random":
        return torch.randint(0, num_classes, (n,), generator=gen)
    reps = -(-n // num_classes)
    return torch.cat([torch.randperm(num_classes, generator=gen) for _ in range(reps)])[:n]


def pair_by_label(gallery_labels: torch.Tensor, query_labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Match every gallery-side sample with a query-side sample of the same teacher label.

    Returns ``(query_index, matched)``: row i pairs gallery sample i with query sample
    ``query_index[i]``. The k-th gallery sample of class c gets the (k mod n_c)-th query sample of
    class c (n_c query samples of class c), so a class's query samples are all used when it has at
    least as many gallery samples. A gallery sample whose class no query sample has keeps the query
    sample of its own row (``matched`` is False there). Both sides hold the same number of samples.
    Runs on the labels' device without waiting for it.
    """
    b = gallery_labels.shape[0]
    device = gallery_labels.device
    arange = torch.arange(b, device=device)
    count_s = torch.bincount(query_labels, minlength=num_classes)
    start_s = torch.cumsum(count_s, 0) - count_s
    order_s = torch.argsort(query_labels, stable=True)
    count_p = torch.bincount(gallery_labels, minlength=num_classes)
    start_p = torch.cumsum(count_p, 0) - count_p
    order_p = torch.argsort(gallery_labels, stable=True)
    rank = torch.empty_like(arange)
    rank[order_p] = arange - start_p[gallery_labels[order_p]]  # rank of each gallery sample within its class
    n = count_s[gallery_labels]
    matched = n > 0
    pos = (start_s[gallery_labels] + rank % n.clamp_min(1)).clamp(max=query_labels.shape[0] - 1)
    return torch.where(matched, order_s[pos], arange), matched


def paired_batch(pair, images: dict, labels: dict, logits: dict | None = None, *, num_classes: int) -> tuple[SynthBatch, torch.Tensor]:
    """A :class:`SynthBatch` of ``pair``'s modalities (a :class:`dfbench.api.modalities.ModalityPair`)
    whose query side is re-paired with the gallery side by label (:func:`pair_by_label`), and the
    fraction of rows whose labels agree (a 0-d tensor). ``images``, ``labels``, ``logits``: by
    modality key (logits may be None, or None for every key)."""
    g, q = pair.keys
    idx, matched = pair_by_label(labels[g], labels[q], num_classes)
    logits = logits or {}
    out_logits = {g: logits.get(g), q: None if logits.get(q) is None else logits[q][idx]}
    batch = SynthBatch.of(pair, {g: images[g], q: images[q][idx]}, {g: labels[g], q: labels[q][idx]}, out_logits)
    return batch, matched.float().mean()


def jitter_flip(x: torch.Tensor, shift: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """DeepInversion's view of a batch: rolled by one random offset of up to ``shift`` pixels in
    each direction, and each image mirrored left-right with probability 1/2 (differentiable)."""
    if shift > 0:
        dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=gen))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if flip:
        mask = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


def random_resized_crop(x: torch.Tensor, min_scale: float, gen: torch.Generator, flip: bool = True) -> torch.Tensor:
    """A random crop of each image covering a fraction in [min_scale, 1] of its area (aspect ratio
    in [3/4, 4/3]), resized back to the full size, and mirrored with probability 1/2: the local
    view of CMI. Built with ``affine_grid``/``grid_sample``, so gradients reach the images."""
    b = x.shape[0]
    area = torch.empty(b).uniform_(float(min_scale), 1.0, generator=gen)
    ratio = torch.exp(torch.empty(b).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, generator=gen) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, generator=gen) * 2 - 1) * (1 - h)
    sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class EmaBatchNormStatsHooks(BatchNormStatsHooks):
    """BatchNorm-statistics matching against a moving average of the synthesised batches
    (Fast-Datafree's ``bn_mmt``): each layer's penalty compares its running statistics with
    ``(1 - momentum) * batch + momentum * ema``, where ``ema`` is the average of earlier rounds'
    last batch statistics (:meth:`update_ema`, once a round). Keep one object for the whole run:
    entering it again registers the hooks again and keeps the averages."""

    def __init__(self, modules, first_layer_scale: float = 1.0, momentum: float = 0.9):
        super().__init__(modules, first_layer_scale)
        self.momentum = float(momentum)
        self.ema: dict = {}  # layer -> (mean, var)
        self._last: dict = {}

    def matched_statistics(self, layer, mean, var):
        self._last[layer] = (mean.detach(), var.detach())
        if layer in self.ema:
            r = self.momentum
            ema_mean, ema_var = self.ema[layer]
            mean = (1 - r) * mean + r * ema_mean
            var = (1 - r) * var + r * ema_var
        return mean, var

    def update_ema(self) -> None:
        """Fold the last recorded batch statistics of every layer into the averages."""
        r = self.momentum
        for layer, (mean, var) in self._last.items():
            if layer in self.ema:
                m0, v0 = self.ema[layer]
                self.ema[layer] = (r * m0 + (1 - r) * mean, r * v0 + (1 - r) * var)
            else:
                self.ema[layer] = (mean, var)
        self._last = {}

    def _layers(self) -> list:
        return [
            layer
            for module in self.modules
            for layer in module.modules()
            if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats
        ]

    def state_dict(self) -> dict:
        return {"ema": [self.ema.get(layer) for layer in self._layers()]}

    def load_state_dict(self, state: dict) -> None:
        self.ema = {layer: v for layer, v in zip(self._layers(), state.get("ema", [])) if v is not None}


def bn_hooks(modules, first_layer_scale: float, momentum: float) -> BatchNormStatsHooks:
    if momentum > 0:
        return EmaBatchNormStatsHooks(modules, first_layer_scale, momentum)
    return BatchNormStatsHooks(modules, first_layer_scale)


def bn_modules(ctx, weights: dict, variant: str) -> list:
    """The teachers whose BatchNorm layers the ``bn`` term watches (none without that term)."""
    if "bn" not in weights:
        return []
    teachers = ctx.teachers
    return [teachers["unified"]] if variant == "unified" else [teachers[m] for m in pair_of(ctx)]


@torch.no_grad()
def dcgan_init(module: nn.Module, gen: torch.Generator) -> None:
    """Re-initialise a generator the DCGAN way (CMI's ``reset_model``): convolution and linear
    weights from N(0, 0.02), BatchNorm scales from N(1, 0.02), biases 0, BatchNorm running
    statistics reset. Drawn on the CPU from ``gen``, then copied."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.02)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.weight is not None:
                m.weight.copy_(1.0 + torch.randn(m.weight.shape, generator=gen) * 0.02)
                m.bias.zero_()
            m.reset_running_stats()

@torch.no_grad()
def teacher_logits(ctx, images: torch.Tensor, modality: str, variant: str, batch_size: int = 256) -> torch.Tensor:
    """Logits of the teacher that judges ``modality`` under ``variant`` (frozen, in batches)."""
    teacher = ctx.teachers.for_modality(modality, variant)
    out = [teacher(images[i : i + batch_size].to(ctx.device)) for i in range(0, len(images), batch_size)]
    return torch.cat(out) if out else torch.empty(0, ctx.num_classes, device=ctx.device)


def pair_by_labels(gallery_labels: torch.Tensor, query_labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A permutation ``perm`` of the query side such that ``query_labels[perm[i]] == gallery_labels[i]``
    for as many rows as the two label multisets allow; unmatched rows get the leftover query
    samples in random order."""
    n = len(gallery_labels)
    if len(query_labels) != n:
        raise ValueError("pair_by_labels needs as many samples on the query side as on the gallery side")
    pl, sl = gallery_labels.cpu(), query_labels.cpu()
    perm = torch.full((n,), -1, dtype=torch.long)
    used = torch.zeros(n, dtype=torch.bool)
    for c in torch.unique(pl).tolist():
        rows = torch.nonzero(pl == c).flatten()
        cands = torch.nonzero(sl == c).flatten()
        cands = cands[torch.randperm(len(cands), generator=generator)]
        k = min(len(rows), len(cands))
        perm[rows[:k]] = cands[:k]
        used[cands[:k]] = True
    free_rows = torch.nonzero(perm < 0).flatten()
    left = torch.nonzero(~used).flatten()
    perm[free_rows] = left[torch.randperm(len(left), generator=generator)]
    return perm.to(gallery_labels.device)


def batch_from(ctx, images: dict, variant, generator, pair: bool) -> SynthBatch:
    """A batch of given images ({modality key: images}) labelled by their teachers' argmax, the
    query side re-paired with the gallery side by label when ``pair``."""
    modalities = pair_of(ctx)
    g, q = modalities.keys
    logits = {m: teacher_logits(ctx, images[m], m, variant) for m in (g, q)}
    labels = {m: logits[m].argmax(1) for m in (g, q)}
    images = dict(images)
    if pair:
        perm = pair_by_labels(labels[g], labels[q], generator)
        images[q], logits[q], labels[q] = images[q][perm], logits[q][perm], labels[q][perm]
    return SynthBatch.of(modalities, images, labels, logits)


def refuse_weights(strategy: str, weights: dict) -> None:
    """Strategies that optimise nothing take no synthesis loss terms."""
    if weights:
        raise ConfigError(
            f"The '{strategy}' strategy optimises nothing, so synthesis loss terms do not apply; "
            f"set params.weights to {{}} (got {', '.join(sorted(weights))})."
        )
