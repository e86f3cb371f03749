"""``real`` (the supervised reference bound): class-matched photo/sketch pairs of the benchmark's
train split with their true labels; only methods that declare ``uses_train_data`` may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dfbench.api.errors import ConfigError
from dfbench.api.inversion import InversionStrategy, SynthBatch
from dfbench.api.options import Options, option
from dfbench_inversions.common import refuse_weights
from dfbench.api.modalities import pair_of


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
        from dfbench.api.plugins import registry

        method = ctx.config.get("method")
        method_cls = registry("methods").load(method) if method else None
        if method_cls is None or not getattr(method_cls, "uses_train_data", False):
            raise ConfigError(
                f"The 'real' inversion strategy reads the benchmark's train split, but method "
                f"'{method}' is data-free (it does not declare uses_train_data). Use the "
                "'supervised' method for the data-dependent bound."
            )
        refuse_weights("real", weights)
        bench = ctx.benchmark
        self.pair = pair_of(ctx)
        gk, qk = self.pair.keys
        self.sets = {m: bench.get("train", m) for m in self.pair}
        labels = {m: self.sets[m].labels.cpu() for m in self.pair}
        c = ctx.num_classes
        counts = torch.bincount(labels[qk], minlength=c)
        self.query_order = torch.argsort(labels[qk], stable=True)
        self.query_counts = counts
        self.query_starts = torch.cumsum(counts, 0) - counts
        self.gallery_pool = torch.nonzero(counts[labels[gk]] > 0).flatten()
        if len(self.gallery_pool) == 0:
            raise ConfigError(f"The benchmark's train split has no class with both {self.pair.gallery.plural} and {self.pair.query.plural}.")
        self.gallery_labels = labels[gk]
        self.generator = ctx.rng("real-pairs/draws")
        self.last_parts: dict = {}

    def sample_indices(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices into the train images of the gallery and the query modality of ``n`` class-matched pairs."""
        g = self.generator
        p_idx = self.gallery_pool[torch.randint(0, len(self.gallery_pool), (n,), generator=g)]
        y = self.gallery_labels[p_idx]
        count = self.query_counts[y]
        offset = (torch.rand(n, generator=g) * count).long().clamp_max(count - 1)
        s_idx = self.query_order[self.query_starts[y] + offset]
        return p_idx, s_idx

    def synthesize(self, students) -> SynthBatch:
        n = int(self.options["batch_size"])
        p_idx, s_idx = self.sample_indices(n)
        dev = self.ctx.device
        gk, qk = self.pair.keys
        gallery = self.sets[gk].batch(p_idx.tolist(), dev)
        query = self.sets[qk].batch(s_idx.tolist(), dev)
        if self.options["augment"]:
            gallery, query = _shift_flip(gallery, self.generator), _shift_flip(query, self.generator)
        return SynthBatch.of(self.pair, {gk: gallery, qk: query}, {gk: self.sets[gk].labels[p_idx].to(dev), qk: self.sets[qk].labels[s_idx].to(dev)})

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
