"""Paired estimators: one per modality from the same noise z (DF-SBIR's g_photo(z) and g_sketch(z)).

Two architectures (``arch``): ``upsample`` (dfbench's, nearest upsampling + conv + LeakyReLU,
:class:`dfbench.train.models.Estimator`) and ``convtranspose`` (the release's DCGAN stack,
:class:`dfbench.train.models.ConvTransposeEstimator`, ``width`` being its ngf). A colour modality's
estimator draws three channels; a grey modality's (the sketch estimator of the default pair) draws
one grey channel replicated to three (``sketch_channels: 1``) or three channels of its own as in
the release (``sketch_channels: 3``; the option keeps the name the release's setting was found under).

Each call of ``synthesize`` takes ``steps`` optimisation steps of both estimators on the weighted
synthesis terms (students frozen, in eval mode), and returns the pairs of the last step, labelled
by the teachers' argmax. With a ``bn`` weight the teachers' BatchNorm statistics are matched
through hooks that exist only inside ``synthesize``.
"""

from __future__ import annotations

import torch  # noqa: I001

from dfbench.train.distributed import average_batchnorm
from dataclasses import dataclass
from typing import Literal

from dfbench.train.engine import OptimizerOptions, build_optimizer
from dfbench.api.options import Options, option, section
from dfbench.api.inversion import InversionStrategy, SynthBatch
from dfbench.train.models import ESTIMATOR_ARCHES
from dfbench.train.terms import BatchNormStatsHooks, SynthesisState, students_frozen, weighted_sum
from dfbench.api.modalities import pair_of


@dataclass
class EstimatorOptions(Options):
    z_dim: int = option(256, min=1, help="noise dimension shared by the two estimators")
    width: int = option(32, min=1, help="channel width of the estimators (convtranspose: the DCGAN ngf)")
    arch: Literal["upsample", "convtranspose"] = option(
        "upsample", help="upsample + conv + LeakyReLU blocks, or the DF-SBIR release's DCGAN ConvTranspose + BatchNorm + ReLU stack"
    )
    sketch_channels: int = option(
        1, choices=(1, 3), help="channels the estimator of a grey modality (sketches) draws: 1 (grey, replicated to 3), or 3 (the DF-SBIR release)"
    )
    steps: int = option(1, min=1, help="estimator steps per round")
    batch_size: int = option(64, min=1, help="pairs per estimator step")
    optimizer: OptimizerOptions = section(
        OptimizerOptions, help="the estimators' optimiser", name="adam", lr=1e-3, betas=[0.5, 0.999], weight_decay=0.0
    )
    bn_first_layer_scale: float = option(1.0, min=0.0, help="weight of the first BatchNorm layer in the bn term")
    conditional: bool = option(
        False,
        help="class-conditional estimators: each noise vector comes with a class (balanced over the batch) that both "
        "estimators receive, and the pair is labelled with it (the one_hot term's target) instead of the teachers' argmax",
    )


class PairedEstimators(InversionStrategy):
    name = "estimators"
    Options = EstimatorOptions

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        size = ctx.image_size
        net = ESTIMATOR_ARCHES[options["arch"]]
        self.num_classes = ctx.num_classes
        in_dim = options["z_dim"] + (self.num_classes if options["conditional"] else 0)
        self.pair = pair_of(ctx)
        channels = {m: 3 if self.pair[m].channels == 3 else int(options["sketch_channels"]) for m in self.pair}
        self.estimators = torch.nn.ModuleDict({m: net(in_dim, size, channels=channels[m], width=options["width"]) for m in self.pair}).to(ctx.device)
        ocfg = {**self.defaults["optimizer"], **options["optimizer"]}
        self.opt = build_optimizer(self.estimators.parameters(), ocfg, ctx.perf)
        self.generator = ctx.rng("estimators/noise")
        teachers = ctx.teachers
        self.bn_modules = []
        if "bn" in weights:
            self.bn_modules = [teachers["unified"]] if variant == "unified" else [teachers[m] for m in self.pair]
        self.last_parts: dict = {}
        self._train_forward = None  # the DDP-wrapped pair in a data-parallel run (see distribute)

    def distribute(self, wrap) -> None:
        """Data-parallel runs: both estimators train through one DDP wrapper (one gradient
        all-reduce per step); ``self.estimators`` stays the unwrapped pair (state, optimiser).
        Their BatchNorm running statistics are averaged over the ranks after each ``synthesize``."""
        self._train_forward = wrap(_Pair(self.estimators), broadcast_buffers=False)

    def noise(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The estimators' input for ``n`` pairs, and the pairs' classes (conditional estimators:
        balanced classes, appended to the noise one-hot; else None)."""
        z = torch.randn(n, self.options["z_dim"], generator=self.generator)
        if not self.options["conditional"]:
            return z.to(self.ctx.device), None
        from dfbench_inversions.common import sample_targets

        y = sample_targets(n, self.num_classes, "balanced", self.generator)
        z = torch.cat([z, torch.nn.functional.one_hot(y, self.num_classes).float()], dim=1)
        return z.to(self.ctx.device), y.to(self.ctx.device)

    def synthesize(self, students) -> SynthBatch:
        opt = self.opt
        self.estimators.train()
        hooks = BatchNormStatsHooks(self.bn_modules, self.options["bn_first_layer_scale"])
        with students_frozen(students), hooks:
            for _ in range(int(self.options["steps"])):
                z, y = self.noise(int(self.options["batch_size"]))
                if self._train_forward is not None:
                    images = self._train_forward(z)
                else:
                    images = {m: g(z) for m, g in self.estimators.items()}
                targets = None if y is None else {m: y for m in images}
                state = SynthesisState(images, self.ctx.teachers, self.variant, students, bn_hooks=hooks, targets=targets,
                                       **self.term_inputs)
                loss, self.last_parts = weighted_sum(state, self.weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        if self._train_forward is not None:
            average_batchnorm(self.estimators)  # every rank holds the same estimators
        keys = self.pair.keys
        return SynthBatch.of(self.pair, {m: images[m].detach() for m in keys}, {m: state.labels(m).detach() for m in keys},
                             {m: state.teacher_logits(m).detach() for m in keys})

    @torch.no_grad()
    def sample(self, n: int) -> dict:
        """Pairs from fresh noise (for pictures), estimators in eval mode."""
        self.estimators.eval()
        z, _ = self.noise(n)
        return {m: g(z) for m, g in self.estimators.items()}

    def state_dict(self) -> dict:
        return {"estimators": self.estimators.state_dict(), "opt": self.opt.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.estimators.load_state_dict(state["estimators"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])


class _Pair(torch.nn.Module):
    """Both estimators as one module (what DistributedDataParallel wraps): z -> {modality: image}."""

    def __init__(self, estimators: torch.nn.ModuleDict):
        super().__init__()
        self.estimators = estimators

    def forward(self, z: torch.Tensor) -> dict:
        return {m: g(z) for m, g in self.estimators.items()}
