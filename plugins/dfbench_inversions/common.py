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


def pair_by_label(photo_labels: torch.Tensor, sketch_labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Match every photo with a sketch of the same teacher label.

    Returns ``(sketch_index, matched)``: row i pairs photo i with sketch ``sketch_index[i]``. The
    k-th photo of class c gets the (k mod n_c)-th sketch of class c (n_c sketches of class c), so a
    class's sketches are all used when it has at least as many photos. A photo whose class no
    sketch has keeps the sketch of its own row (``matched`` is False there). Both sides hold the
    same number of samples. Runs on the labels' device without waiting for it.
    """
    b = photo_labels.shape[0]
    device = photo_labels.device
    arange = torch.arange(b, device=device)
    count_s = torch.bincount(sketch_labels, minlength=num_classes)
    start_s = torch.cumsum(count_s, 0) - count_s
    order_s = torch.argsort(sketch_labels, stable=True)
    count_p = torch.bincount(photo_labels, minlength=num_classes)
    start_p = torch.cumsum(count_p, 0) - count_p
    order_p = torch.argsort(photo_labels, stable=True)
    rank = torch.empty_like(arange)
    rank[order_p] = arange - start_p[photo_labels[order_p]]  # rank of each photo within its class
    n = count_s[photo_labels]
    matched = n > 0
    pos = (start_s[photo_labels] + rank % n.clamp_min(1)).clamp(max=sketch_labels.shape[0] - 1)
    return torch.where(matched, order_s[pos], arange), matched


def paired_batch(photo, sketch, photo_labels, sketch_labels, photo_logits=None, sketch_logits=None, *, num_classes: int) -> tuple[SynthBatch, torch.Tensor]:
    """A :class:`SynthBatch` of photos re-paired with sketches by label (:func:`pair_by_label`),
    and the fraction of rows whose labels agree (a 0-d tensor)."""
    idx, matched = pair_by_label(photo_labels, sketch_labels, num_classes)
    batch = SynthBatch(
        photo,
        sketch[idx],
        photo_labels,
        sketch_labels[idx],
        photo_logits,
        None if sketch_logits is None else sketch_logits[idx],
    )
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
    return [teachers["unified"]] if variant == "unified" else [teachers["photo"], teachers["sketch"]]


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


def pair_by_labels(photo_labels: torch.Tensor, sketch_labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A permutation ``perm`` of the sketches such that ``sketch_labels[perm[i]] == photo_labels[i]``
    for as many rows as the two label multisets allow; unmatched rows get the leftover sketches
    in random order."""
    n = len(photo_labels)
    if len(sketch_labels) != n:
        raise ValueError("pair_by_labels needs as many sketches as photos")
    pl, sl = photo_labels.cpu(), sketch_labels.cpu()
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
    return perm.to(photo_labels.device)


def batch_from(ctx, photo, sketch, variant, generator, pair: bool) -> SynthBatch:
    lp = teacher_logits(ctx, photo, "photo", variant)
    ls = teacher_logits(ctx, sketch, "sketch", variant)
    yp, ys = lp.argmax(1), ls.argmax(1)
    if pair:
        perm = pair_by_labels(yp, ys, generator)
        sketch, ls, ys = sketch[perm], ls[perm], ys[perm]
    return SynthBatch(photo, sketch, yp, ys, lp, ls)



def refuse_weights(strategy: str, weights: dict) -> None:
    """Strategies that optimise nothing take no synthesis loss terms."""
    if weights:
        raise ConfigError(
            f"The '{strategy}' strategy optimises nothing, so synthesis loss terms do not apply; "
            f"set params.weights to {{}} (got {', '.join(sorted(weights))})."
        )
