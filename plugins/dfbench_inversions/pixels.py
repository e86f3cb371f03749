"""``pixels``: images optimised directly with Adam, one batch per round (DeepInversion, Yin et al.
CVPR 2020; the inversion behind ADI and the Meta-Data baseline).

Each round starts a fresh batch of both modalities' images from Gaussian noise (a grey modality
such as sketches as one grey channel replicated over three, like the real ones) and takes ``steps`` Adam steps on the
weighted synthesis terms; the teachers see a randomly jittered and mirrored view at each step
(``jitter``, ``flip``), and pixels are kept in [-1, 1], the range of real images.

Class targets (``targets``): ``balanced`` or ``random`` draw one target class per row and give it
to *both* modalities (``SynthesisState(targets=...)``: the ``one_hot`` term becomes the
cross-entropy to that class), so row i is a pair of one class and the rows are labelled by their
targets. ``none`` inverts without targets (for instance only the ``bn`` term, as the Meta-Data
baseline does): samples are labelled by the teachers' argmax and the query side is paired with the
gallery side by label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from dfbench.train.engine import OptimizerOptions, build_optimizer
from dfbench.api.errors import ConfigError
from dfbench.api.inversion import InversionStrategy, SynthBatch
from dfbench.api.options import Options, option, section
from dfbench.train.terms import SynthesisState, students_frozen, weighted_sum
from dfbench_inversions.common import TARGET_MODES, bn_hooks, bn_modules, check_choice, jitter_flip, paired_batch, sample_targets
from dfbench.api.modalities import pair_of



@dataclass
class PixelOptions(Options):
    batch_size: int = option(64, min=1, help="pairs synthesised per round")
    steps: int = option(200, min=1, help="Adam steps on the pixels of each batch")
    optimizer: OptimizerOptions = section(
        OptimizerOptions, help="the pixels' optimiser", name="adam", lr=0.1, betas=[0.9, 0.999], weight_decay=0.0
    )
    targets: Literal["none", "random", "balanced"] = option("balanced", help="class targets of the pairs")
    jitter: int = option(2, min=0, help="the teachers' view is rolled by up to this many pixels (0: no jitter)")
    flip: bool = option(True, help="the teachers' view is mirrored at random")
    init_std: float = option(1.0, min=0.0, min_exclusive=True, help="standard deviation of the initial noise (clamped to [-1, 1])")
    grey_sketches: bool = option(True, help="grey modalities (sketches in the default pair) optimised as one grey channel")
    bn_first_layer_scale: float = option(1.0, min=0.0, help="weight of the first BatchNorm layer in the bn term")
    bn_momentum: float = option(0.0, min=0.0, max=1.0, max_exclusive=True, help="> 0: match a moving average of batch statistics (Fast)")


class PixelInversion(InversionStrategy):
    name = "pixels"
    Options = PixelOptions

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        check_choice(self.name, "targets", options["targets"], TARGET_MODES)
        if int(options["steps"]) < 1 or int(options["batch_size"]) < 1:
            raise ConfigError("params.inversion.steps and params.inversion.batch_size must be at least 1.")
        self.generator = ctx.rng("pixels/init")
        self.ocfg = {**self.defaults["optimizer"], **options["optimizer"]}
        self.hooks = bn_hooks(bn_modules(ctx, weights, variant), options["bn_first_layer_scale"], float(options["bn_momentum"]))
        self.last_parts: dict = {}

    def _channels(self, m: str) -> int:
        return 1 if pair_of(self.ctx)[m].channels == 1 and self.options["grey_sketches"] else 3

    @staticmethod
    def _rgb(x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def synthesize(self, students) -> SynthBatch:
        o = self.options
        ctx = self.ctx
        n, size = int(o["batch_size"]), ctx.image_size
        y = sample_targets(n, ctx.num_classes, o["targets"], self.generator)
        targets = None if y is None else {m: y.to(ctx.device) for m in pair_of(ctx)}
        pixels = {
            m: (torch.randn(n, self._channels(m), size, size, generator=self.generator) * float(o["init_std"])).clamp_(-1, 1).to(ctx.device).requires_grad_()
            for m in pair_of(ctx)
        }
        opt = build_optimizer(pixels.values(), self.ocfg, ctx.perf)
        with students_frozen(students), self.hooks:
            for _ in range(int(o["steps"])):
                views = {m: jitter_flip(self._rgb(x), int(o["jitter"]), bool(o["flip"]), self.generator) for m, x in pixels.items()}
                state = SynthesisState(views, ctx.teachers, self.variant, students, targets=targets, bn_hooks=self.hooks, **self.term_inputs)
                loss, self.last_parts = weighted_sum(state, self.weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for x in pixels.values():
                        x.clamp_(-1, 1)
        if hasattr(self.hooks, "update_ema"):
            self.hooks.update_ema()
        images = {m: self._rgb(x.detach()) for m, x in pixels.items()}
        with torch.no_grad():
            logits = {m: ctx.teachers.for_modality(m, self.variant)(images[m]) for m in pair_of(ctx)}
        if targets is not None:
            return SynthBatch.of(pair_of(ctx), images, targets, logits)
        labels = {m: logits[m].argmax(1) for m in pair_of(ctx)}
        batch, agree = paired_batch(pair_of(ctx), images, labels, logits, num_classes=ctx.num_classes)
        self.last_parts = {**self.last_parts, "paired": agree}
        return batch

    def state_dict(self) -> dict:
        state = {"generator": self.generator.get_state()}
        if hasattr(self.hooks, "state_dict"):
            state["bn_ema"] = self.hooks.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        if "bn_ema" in state and hasattr(self.hooks, "load_state_dict"):
            self.hooks.load_state_dict(state["bn_ema"])
