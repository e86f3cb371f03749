"""Inversion strategies of the baselines: where training pairs come from when there are no estimators.

- ``prior`` (Gaussian Prior): images drawn from an i.i.d. Gaussian in image space, squashed into
  [-1, 1] (sketches grey), labelled by the teachers.
- ``alt-data`` (Alternative Data): real images of another, unrelated source dataset, labelled by
  the teachers; never the benchmark's own train split.
- ``real`` (the supervised reference bound): class-matched photo/sketch pairs of the benchmark's
  train split with their true labels; only methods that declare ``uses_train_data`` may use it.

Every strategy returns a :class:`dfbench.inversion.SynthBatch` like the estimators do, so the shared
engine (:class:`dfbench.engine.DataFreeMethod`) trains the encoders on them unchanged. Teacher
labels come from the teacher that judges each modality under the run's variant (``independent``:
the photo teacher labels photos and the sketch teacher sketches; ``unified``: the shared one).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from dfbench.datasets import MODALITIES
from dfbench.errors import ConfigError
from dfbench.inversion import InversionStrategy, SynthBatch
from dfbench.options import Options, option



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


def _batch_from(ctx, photo, sketch, variant, generator, pair: bool) -> SynthBatch:
    lp = teacher_logits(ctx, photo, "photo", variant)
    ls = teacher_logits(ctx, sketch, "sketch", variant)
    yp, ys = lp.argmax(1), ls.argmax(1)
    if pair:
        perm = pair_by_labels(yp, ys, generator)
        sketch, ls, ys = sketch[perm], ls[perm], ys[perm]
    return SynthBatch(photo, sketch, yp, ys, lp, ls)



def _refuse_weights(strategy: str, weights: dict) -> None:
    """Strategies that optimise nothing take no synthesis loss terms."""
    if weights:
        raise ConfigError(
            f"The '{strategy}' strategy optimises nothing, so synthesis loss terms do not apply; "
            f"set params.weights to {{}} (got {', '.join(sorted(weights))})."
        )

@dataclass
class PriorOptions(Options):
    batch_size: int = option(64, min=1, help="pairs per round")
    mean: float = option(0.0, help="mean of each pixel's draw")
    std: float = option(1.0, min=0.0, min_exclusive=True, help="standard deviation of each pixel's draw")
    squash: Literal["tanh", "clamp"] = option("tanh", help="how draws are mapped into the image range [-1, 1]")
    resolution: int | None = option(None, min=1, help="side of the noise grid (null: the image size, i.i.d. pixels)")
    pair_by_label: bool = option(True, help="pair photos with sketches of the same teacher label where the labels allow")


class GaussianPrior(InversionStrategy):
    """Images from a Gaussian prior in image space (the paper's "Gaussian Prior" baseline).

    Each pixel is ``mean + std * N(0, 1)`` independently; photos draw three channels, sketches one
    channel replicated over three (grey, like real sketches). ``squash`` maps the draws into the
    image range [-1, 1]: ``tanh`` (smooth) or ``clamp``. ``resolution`` (default: none, the image
    size) draws the noise on a coarser grid, bilinearly upsampled: a spatially correlated Gaussian
    prior. Small teachers tend to put all i.i.d. pixel noise in one class; coarse noise spreads
    their labels. Photos and sketches are drawn independently and then paired by teacher label
    where the labels allow (``pair_by_label``).
    """

    Options = PriorOptions

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        _refuse_weights("prior", weights)
        if options["squash"] not in ("tanh", "clamp"):
            raise ConfigError(f"params.inversion.squash must be 'tanh' or 'clamp', got {options['squash']!r}.")
        if float(options["std"]) <= 0:
            raise ConfigError(f"params.inversion.std must be positive, got {options['std']!r}.")
        res = options["resolution"]
        if res is not None and (isinstance(res, bool) or not isinstance(res, int) or not 1 <= res <= ctx.image_size):
            raise ConfigError(
                f"params.inversion.resolution must be null or an integer from 1 to the image size "
                f"({ctx.image_size}), got {res!r}."
            )
        self.generator = ctx.rng("prior/images")
        self.last_parts: dict = {}

    def draw(self, n: int, modality: str) -> torch.Tensor:
        """``n`` images of ``modality`` from the prior, (n, 3, S, S) in [-1, 1] on the run's device."""
        size = self.ctx.image_size
        res = self.options["resolution"] or size
        channels = 3 if modality == "photo" else 1
        x = torch.randn(n, channels, res, res, generator=self.generator)
        x = float(self.options["mean"]) + float(self.options["std"]) * x
        if res != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        x = torch.tanh(x) if self.options["squash"] == "tanh" else x.clamp(-1.0, 1.0)
        return x.expand(-1, 3, -1, -1).contiguous().to(self.ctx.device)

    def synthesize(self, students) -> SynthBatch:
        n = int(self.options["batch_size"])
        photo, sketch = self.draw(n, "photo"), self.draw(n, "sketch")
        return _batch_from(self.ctx, photo, sketch, self.variant, self.generator, bool(self.options["pair_by_label"]))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def _as_dict(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping of options, got {value!r}.")
    return dict(value)


@dataclass
class AltDataOptions(Options):
    source: str = option("shapes", help="the dataset the images come from (dfbench list --kind datasets)")
    source_root: str | None = option(None, help="data root of the source (null: its default)")
    source_seed: int | None = option(None, min=0, help="data seed of the source (null: the benchmark's data.seed, +1000 when the source is the benchmark itself)")
    source_options: dict | None = option(None, help="the source's dataset options (null: its defaults)")
    split: Literal["train", "test"] = option("train", help="the source's split")
    max_images: int = option(4096, min=1, help="images per modality kept in memory")
    batch_size: int = option(64, min=1, help="pairs per round")
    balanced: bool = option(False, help="class-balanced draws over the teacher labels")


class AlternativeData(InversionStrategy):
    """Real images of another, unrelated dataset labelled by the teachers (the paper's
    "Alternative Data" baseline).

    ``source`` names any registered dataset (default ``shapes``, the embedded generated set);
    ``source_root``, ``source_seed`` and ``source_options`` are its data root, seed and
    ``data.options``. Images of the source's ``split`` are read at the benchmark's image size; at
    most ``max_images`` per modality (a random, seeded subset) are kept in memory and labelled
    once: the photo judge labels the source photos, the sketch judge the source sketches.

    The benchmark's own train split is never read. When the source has the benchmark's name, it
    must be a generated dataset (no data root) drawn with another seed: by default the benchmark's
    ``data.seed + 1000`` and the benchmark's ``data.options`` (so ``shapes`` on ``shapes`` means
    new images from other random streams). Datasets on disk cannot be their own source.

    Each round draws ``batch_size`` photos (uniformly, or class-balanced over the teacher labels
    with ``balanced``) and gives each a sketch that the sketch judge put in the same class when the
    source has one, else a random sketch.
    """

    Options = AltDataOptions
    SAME_SOURCE_SEED_OFFSET = 1000

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        _refuse_weights("alt-data", weights)
        if options["split"] not in ("train", "test"):
            raise ConfigError(f"params.inversion.split must be 'train' or 'test', got {options['split']!r}.")
        self.generator = ctx.rng("alt-data/draws")
        self.source = self._load_source()
        self.images, self.logits, self.labels, self.by_class = {}, {}, {}, {}
        cap = int(options["max_images"])
        if cap < 1:
            raise ConfigError(f"params.inversion.max_images must be at least 1, got {cap}.")
        for m in MODALITIES:
            imageset = self.source.get(options["split"], m)
            n = len(imageset)
            if n == 0:
                raise ConfigError(f"The alt-data source '{options['source']}' has no {options['split']} {m} images.")
            idx = torch.randperm(n, generator=self.generator)[:cap].sort().values.tolist()
            images = imageset.load_uint8(idx)  # uint8, kept on the CPU
            self.images[m] = images
            logits = torch.cat([teacher_logits(ctx, self._float(images[i : i + 256]), m, variant) for i in range(0, len(images), 256)])
            self.logits[m] = logits
            self.labels[m] = logits.argmax(1).cpu()
        order = torch.argsort(self.labels["sketch"], stable=True)
        counts = torch.bincount(self.labels["sketch"], minlength=ctx.num_classes)
        self.sketch_order, self.sketch_counts = order, counts
        self.sketch_starts = torch.cumsum(counts, 0) - counts
        self.photo_classes = torch.unique(self.labels["photo"])
        self.last_parts: dict = {}

    def _float(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.ctx.device).float().div_(127.5).sub_(1.0)

    def source_spec(self) -> dict:
        """The resolved source: dataset name, root, seed and options."""
        from dfbench.plugins import registry

        o, cfg = self.options, self.ctx.config
        bench_name, data = cfg["dataset"], cfg["data"]
        same = o["source"] == bench_name
        entry = registry("datasets").get(o["source"])  # unknown names fail with the known ones listed
        plugin = entry.load()
        seed = o["source_seed"]
        if seed is None:
            seed = int(data["seed"]) + (self.SAME_SOURCE_SEED_OFFSET if same else 0)
        if o["source_options"] is None:
            extra = _as_dict(data.get("options"), "data.options") if same else {}
        else:
            extra = _as_dict(o["source_options"], "params.inversion.source_options")
        root = o["source_root"]
        if same:
            if getattr(plugin, "needs_data_root", True):
                raise ConfigError(
                    f"params.inversion.source is the benchmark itself ('{bench_name}'), whose images "
                    "come from disk: its train split is the data a data-free method must not see. "
                    "Choose another dataset as the alternative source (the default 'shapes' is "
                    "embedded and needs no download)."
                )
            if int(seed) == int(data["seed"]):
                raise ConfigError(
                    f"params.inversion.source is the benchmark itself ('{bench_name}') with the "
                    f"benchmark's own seed ({seed}): that is the benchmark's train split. Leave "
                    "params.inversion.source_seed unset (it then defaults to data.seed + "
                    f"{self.SAME_SOURCE_SEED_OFFSET}) or choose another seed or source."
                )
        return {"name": o["source"], "root": root, "seed": int(seed), "options": extra, "plugin": plugin}

    def _load_source(self):
        from pathlib import Path

        from dfbench.datasets import DatasetOptions

        spec = self.source_spec()
        opts = DatasetOptions(
            data_root=Path(spec["root"]).expanduser() if spec["root"] else None,
            image_size=self.ctx.image_size,
            seed=spec["seed"],
            cache_dir=self.ctx.cache_dir,
            extra=spec["options"],
        )
        self.spec = {k: v for k, v in spec.items() if k != "plugin"}
        return spec["plugin"]().load(opts)

    def synthesize(self, students) -> SynthBatch:
        n = int(self.options["batch_size"])
        g = self.generator
        labels_p = self.labels["photo"]
        if self.options["balanced"]:
            classes = self.photo_classes[torch.randint(0, len(self.photo_classes), (n,), generator=g)]
            p_idx = torch.empty(n, dtype=torch.long)
            for c in torch.unique(classes).tolist():
                rows = torch.nonzero(classes == c).flatten()
                members = torch.nonzero(labels_p == c).flatten()
                p_idx[rows] = members[torch.randint(0, len(members), (len(rows),), generator=g)]
        else:
            p_idx = torch.randint(0, len(labels_p), (n,), generator=g)
        want = labels_p[p_idx]
        count = self.sketch_counts[want]
        offset = (torch.rand(n, generator=g) * count.clamp_min(1)).long().clamp_max(count.clamp_min(1) - 1)
        matched = self.sketch_order[(self.sketch_starts[want] + offset).clamp_max(len(self.sketch_order) - 1)]
        random_sketch = torch.randint(0, len(self.labels["sketch"]), (n,), generator=g)
        s_idx = torch.where(count > 0, matched, random_sketch)
        dev = self.ctx.device
        return SynthBatch(
            self._float(self.images["photo"][p_idx]),
            self._float(self.images["sketch"][s_idx]),
            labels_p[p_idx].to(dev),
            self.labels["sketch"][s_idx].to(dev),
            self.logits["photo"][p_idx.to(dev)],
            self.logits["sketch"][s_idx.to(dev)],
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def _shift_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 3) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (reflect padding) and horizontal flip, per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # (B, H)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # (B, W)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_r = rows[:, None, :, None].expand(b, x.shape[1], h, padded.shape[3])
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(b, x.shape[1], h, w)
    return out.gather(3, idx_c)


@dataclass
class RealPairsOptions(Options):
    batch_size: int = option(64, min=1, help="pairs per round")
    augment: bool = option(True, help="random shift (up to 3 px) and horizontal flip, as the teachers' training does")


class RealPairs(InversionStrategy):
    """Class-matched pairs of the benchmark's real train split with their true labels (the
    data-dependent reference bound). Each round draws ``batch_size`` train photos uniformly among
    the classes that have train sketches, and gives each a random train sketch of its class;
    ``augment`` applies a random shift (up to 3 px) and horizontal flip, as the teachers' training
    does. Refuses to run for a method that does not declare ``uses_train_data``."""

    Options = RealPairsOptions

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        from dfbench.plugins import registry

        method = ctx.config.get("method")
        method_cls = registry("methods").load(method) if method else None
        if method_cls is None or not getattr(method_cls, "uses_train_data", False):
            raise ConfigError(
                f"The 'real' inversion strategy reads the benchmark's train split, but method "
                f"'{method}' is data-free (it does not declare uses_train_data). Use the "
                "'supervised' method for the data-dependent bound."
            )
        _refuse_weights("real", weights)
        bench = ctx.benchmark
        self.sets = {m: bench.get("train", m) for m in MODALITIES}
        labels = {m: self.sets[m].labels.cpu() for m in MODALITIES}
        c = ctx.num_classes
        counts = torch.bincount(labels["sketch"], minlength=c)
        self.sketch_order = torch.argsort(labels["sketch"], stable=True)
        self.sketch_counts = counts
        self.sketch_starts = torch.cumsum(counts, 0) - counts
        self.photo_pool = torch.nonzero(counts[labels["photo"]] > 0).flatten()
        if len(self.photo_pool) == 0:
            raise ConfigError("The benchmark's train split has no class with both photos and sketches.")
        self.photo_labels = labels["photo"]
        self.generator = ctx.rng("real-pairs/draws")
        self.last_parts: dict = {}

    def sample_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices into the train photos and sketches of ``n`` class-matched pairs."""
        g = self.generator
        p_idx = self.photo_pool[torch.randint(0, len(self.photo_pool), (n,), generator=g)]
        y = self.photo_labels[p_idx]
        count = self.sketch_counts[y]
        offset = (torch.rand(n, generator=g) * count).long().clamp_max(count - 1)
        s_idx = self.sketch_order[self.sketch_starts[y] + offset]
        return p_idx, s_idx

    def synthesize(self, students) -> SynthBatch:
        n = int(self.options["batch_size"])
        p_idx, s_idx = self.sample_indices(n)
        dev = self.ctx.device
        photo = self.sets["photo"].batch(p_idx.tolist(), dev)
        sketch = self.sets["sketch"].batch(s_idx.tolist(), dev)
        if self.options["augment"]:
            photo, sketch = _shift_flip(photo, self.generator), _shift_flip(sketch, self.generator)
        return SynthBatch(photo, sketch, self.sets["photo"].labels[p_idx].to(dev), self.sets["sketch"].labels[s_idx].to(dev))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
