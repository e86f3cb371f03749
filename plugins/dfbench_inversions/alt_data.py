"""``alt-data`` (Alternative Data): real images of another, unrelated source dataset, labelled by
the teachers; never the benchmark's own train split (DF-SBIR's Alternative Data baseline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dfbench.api.errors import ConfigError
from dfbench.api.inversion import InversionStrategy, SynthBatch
from dfbench.api.options import Options, option
from dfbench_inversions.common import refuse_weights, teacher_logits
from dfbench.api.modalities import pair_of


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
    once: the source's gallery-side images stand in for the benchmark's gallery modality and are
    labelled by its judge, the query-side ones likewise (photos and sketches in the default pair).

    The benchmark's own train split is never read. When the source has the benchmark's name, it
    must be a generated dataset (no data root) drawn with another seed: by default the benchmark's
    ``data.seed + 1000`` and the benchmark's ``data.options`` (so ``shapes`` on ``shapes`` means
    new images from other random streams). Datasets on disk cannot be their own source.

    Each round draws ``batch_size`` gallery-side images (uniformly, or class-balanced over the
    teacher labels with ``balanced``) and gives each a query-side image that its judge put in the
    same class when the source has one, else a random one.
    """

    Options = AltDataOptions
    SAME_SOURCE_SEED_OFFSET = 1000

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        refuse_weights("alt-data", weights)
        if options["split"] not in ("train", "test"):
            raise ConfigError(f"params.inversion.split must be 'train' or 'test', got {options['split']!r}.")
        self.generator = ctx.rng("alt-data/draws")
        self.source = self._load_source()
        self.images, self.logits, self.labels, self.by_class = {}, {}, {}, {}
        cap = int(options["max_images"])
        if cap < 1:
            raise ConfigError(f"params.inversion.max_images must be at least 1, got {cap}.")
        self.pair = pair_of(ctx)
        for m in self.pair:
            # the source's modality on the same side (its gallery images stand in for the benchmark's gallery)
            src_key = self.source_pair.side(self.pair[m].role).key
            imageset = self.source.get(options["split"], src_key)
            n = len(imageset)
            if n == 0:
                raise ConfigError(f"The alt-data source '{options['source']}' has no {options['split']} {src_key} images.")
            idx = torch.randperm(n, generator=self.generator)[:cap].sort().values.tolist()
            images = imageset.load_uint8(idx)  # uint8, kept on the CPU
            self.images[m] = images
            logits = torch.cat([teacher_logits(ctx, self._float(images[i : i + 256]), m, variant) for i in range(0, len(images), 256)])
            self.logits[m] = logits
            self.labels[m] = logits.argmax(1).cpu()
        gk, qk = self.pair.keys
        order = torch.argsort(self.labels[qk], stable=True)
        counts = torch.bincount(self.labels[qk], minlength=ctx.num_classes)
        self.query_order, self.query_counts = order, counts
        self.query_starts = torch.cumsum(counts, 0) - counts
        self.gallery_classes = torch.unique(self.labels[gk])
        self.last_parts: dict = {}

    def _float(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.ctx.device).float().div_(127.5).sub_(1.0)

    def source_spec(self) -> dict:
        """The resolved source: dataset name, root, seed and options."""
        from dfbench.api.plugins import registry

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

        from dfbench.api.datasets import DatasetOptions

        spec = self.source_spec()
        opts = DatasetOptions(
            data_root=Path(spec["root"]).expanduser() if spec["root"] else None,
            image_size=self.ctx.image_size,
            seed=spec["seed"],
            cache_dir=self.ctx.cache_dir,
            extra=spec["options"],
        )
        from dfbench.api.modalities import declared_pair

        self.spec = {k: v for k, v in spec.items() if k != "plugin"}
        self.source_pair = declared_pair(spec["plugin"], spec["name"])
        return spec["plugin"]().load(opts)

    def synthesize(self, students) -> SynthBatch:
        n = int(self.options["batch_size"])
        g = self.generator
        gk, qk = self.pair.keys
        labels_p = self.labels[gk]
        if self.options["balanced"]:
            classes = self.gallery_classes[torch.randint(0, len(self.gallery_classes), (n,), generator=g)]
            p_idx = torch.empty(n, dtype=torch.long)
            for c in torch.unique(classes).tolist():
                rows = torch.nonzero(classes == c).flatten()
                members = torch.nonzero(labels_p == c).flatten()
                p_idx[rows] = members[torch.randint(0, len(members), (len(rows),), generator=g)]
        else:
            p_idx = torch.randint(0, len(labels_p), (n,), generator=g)
        want = labels_p[p_idx]
        count = self.query_counts[want]
        offset = (torch.rand(n, generator=g) * count.clamp_min(1)).long().clamp_max(count.clamp_min(1) - 1)
        matched = self.query_order[(self.query_starts[want] + offset).clamp_max(len(self.query_order) - 1)]
        random_query = torch.randint(0, len(self.labels[qk]), (n,), generator=g)
        s_idx = torch.where(count > 0, matched, random_query)
        dev = self.ctx.device
        return SynthBatch.of(
            self.pair,
            {gk: self._float(self.images[gk][p_idx]), qk: self._float(self.images[qk][s_idx])},
            {gk: labels_p[p_idx].to(dev), qk: self.labels[qk][s_idx].to(dev)},
            {gk: self.logits[gk][p_idx.to(dev)], qk: self.logits[qk][s_idx.to(dev)]},
        )

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
