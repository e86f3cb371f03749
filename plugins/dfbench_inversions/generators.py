"""``generators``: one generator per modality, each inverting its own teacher (DAFL, DFAD, ZSKT,
DFQ, CMI and Fast-Datafree, adapted cross-modally).

Each modality's generator makes images of its declared channels (colour, or one grey channel
replicated over three: photos in colour and sketches grey in the default pair); each gets its own noise. Every round takes ``steps`` optimisation steps of both on the
weighted synthesis terms (students frozen, in eval mode) and returns a batch of pairs.

Options, each one a mechanism of one of the papers:

- ``targets``: ``none`` (DAFL, DFAD, ZSKT, DFQ): samples are labelled by their teacher's argmax,
  and each gallery-side sample is paired with a query-side sample of the same label (:func:`~dfbench_inversions.common.pair_by_label`);
  ``random``/``balanced`` (CMI, Fast): one target class per row, given to both modalities, used by
  the ``one_hot`` term and as the pair's label.
- ``conditional``: the generators also receive the target class (one-hot, concatenated to the
  noise): class-conditional generators. Needs targets.
- ``learnable_z``: the round's noise is optimised together with the generators (``z_lr``), as in
  CMI and Fast; otherwise every step draws fresh noise.
- ``reinit``: the generators are re-initialised (DCGAN initialisation) and their optimiser
  restarted at the start of every round (CMI).
- ``meta``: ``reptile`` or ``fomaml`` (Fast): the persistent generators are meta-generators; each
  round adapts a copy for ``steps`` inner steps, returns the copy's samples, then moves the
  meta-generators towards the adapted copy (Reptile: gradient = meta - adapted) or by the sum of
  the inner gradients (first-order MAML, what the Fast release runs), with their own Adam
  (``meta_lr``; default: the generator learning rate times ``steps``, as in Fast).
- ``jitter``/``flip``: the teachers (and students) see a randomly shifted and mirrored view.
- ``samples``: after the steps, draw this many fresh batches from the updated generators (no
  gradient) and return them all: the fresh samples that DFAD and ZSKT give every student step.
  0 returns the last step's batch (DAFL, CMI, Fast).
- the ``contrastive`` term (CMI) gets a second view of every sample (random resized crop of area
  at least ``crop_scale``, mirrored at random) and a memory of ``memory_size`` earlier samples'
  teacher features, of which ``negatives`` serve as extra negatives at each step (``temperature``).
- ``bn_momentum`` > 0: the ``bn`` term matches a moving average of batch statistics (Fast).
- ``output_norm``: each generator's last layer batch-normalises its output per channel (no affine)
  before the tanh, the adaptation of DAFL's release (its generator ends in ``BatchNorm2d(channels,
  affine=False)``; here before the tanh, so images stay in [-1, 1]).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from dfbench.train.engine import OptimizerOptions, build_optimizer
from dfbench.api.errors import ConfigError
from dfbench.api.inversion import InversionStrategy, SynthBatch
from dfbench.train.models import Estimator
from dfbench.api.options import Options, option, section
from dfbench.train.terms import SynthesisState, students_frozen, weighted_sum
from dfbench.api.modalities import pair_of
from dfbench_inversions.common import (
    TARGET_MODES,
    bn_hooks,
    bn_modules,
    check_choice,
    dcgan_init,
    jitter_flip,
    paired_batch,
    random_resized_crop,
    sample_targets,
)

META_MODES = ("none", "reptile", "fomaml")


@dataclass
class GeneratorOptions(Options):
    z_dim: int = option(256, min=1, help="noise dimension of each generator")
    width: int = option(64, min=1, help="channel width of the generators")
    batch_size: int = option(64, min=1, help="samples per modality and generator step")
    steps: int = option(1, min=1, help="generator steps per round (inner steps with meta)")
    samples: int = option(0, min=0, help="fresh batches returned per round after the steps (0: the last step's)")
    targets: Literal["none", "random", "balanced"] = option("none", help="class targets of the samples")
    conditional: bool = option(False, help="the generators also receive the target class")
    learnable_z: bool = option(False, help="optimise the round's noise with the generators")
    z_lr: float | None = option(None, min=0.0, help="learning rate of a learnable z (null: the generator learning rate)")
    reinit: bool = option(False, help="re-initialise the generators every round")
    meta: Literal["none", "reptile", "fomaml"] = option("none", help="meta-learned generator initialisation (Fast)")
    meta_lr: float | None = option(None, min=0.0, help="learning rate of the meta update (null: generator lr x steps)")
    jitter: int = option(0, min=0, help="the teachers' view is rolled by up to this many pixels")
    flip: bool = option(False, help="the teachers' view is mirrored at random")
    crop_scale: float = option(0.25, min=0.0, max=1.0, min_exclusive=True, help="contrastive: smallest area fraction of the second view's crop")
    memory_size: int = option(4096, min=0, help="contrastive: earlier samples' features kept as negatives")
    negatives: int = option(1024, min=0, help="contrastive: memory features used at each step")
    temperature: float = option(0.1, min=0.0, min_exclusive=True, help="contrastive: InfoNCE temperature")
    bn_momentum: float = option(0.0, min=0.0, max=1.0, max_exclusive=True, help="> 0: bn matches a moving average of batch statistics (Fast)")
    bn_first_layer_scale: float = option(1.0, min=0.0, help="weight of the first BatchNorm layer in the bn term")
    output_norm: bool = option(
        False, help="DAFL's release: each generator's output batch normalised per channel (BatchNorm, no affine, before the tanh): "
        "mean 0 and variance 1 over the batch and its pixels, never a blank or saturated batch"
    )
    optimizer: OptimizerOptions = section(
        OptimizerOptions, help="the generators' optimiser", name="adam", lr=1e-3, betas=[0.5, 0.999], weight_decay=0.0
    )


class ModalityGenerators(InversionStrategy):
    name = "generators"
    Options = GeneratorOptions

    def __init__(self, ctx, options, weights, variant):
        super().__init__(ctx, options, weights, variant)
        o = options
        check_choice(self.name, "targets", o["targets"], TARGET_MODES)
        check_choice(self.name, "meta", o["meta"], META_MODES)
        if o["conditional"] and o["targets"] == "none":
            raise ConfigError(
                "params.inversion.conditional needs class targets: set params.inversion.targets to "
                "'random' or 'balanced'."
            )
        if int(o["steps"]) < 1 or int(o["batch_size"]) < 1 or int(o["samples"]) < 0:
            raise ConfigError("params.inversion.steps and batch_size must be at least 1, samples at least 0.")
        if o["meta"] != "none" and o["reinit"]:
            raise ConfigError("params.inversion.meta and params.inversion.reinit exclude each other: a "
                              "meta-generator learns across rounds, re-initialisation forgets every round.")
        self.num_classes = ctx.num_classes
        self.in_dim = int(o["z_dim"]) + (self.num_classes if o["conditional"] else 0)
        self.generator = ctx.rng("generators/noise")
        self.pair = pair_of(ctx)
        self.keys = self.pair.keys
        self.generators = torch.nn.ModuleDict(
            {m: Estimator(self.in_dim, ctx.image_size, channels=self.pair[m].channels, width=int(o["width"]), output_norm=bool(o["output_norm"]))
             for m in self.keys}
        ).to(ctx.device)
        if o["reinit"]:
            dcgan_init(self.generators, self.generator)
        self.ocfg = {**self.defaults["optimizer"], **o["optimizer"]}
        self.opt = build_optimizer(self.generators.parameters(), self.ocfg, self.ctx.perf)
        self.meta_opt = None
        if o["meta"] != "none":
            meta_lr = o["meta_lr"] if o["meta_lr"] is not None else float(self.ocfg["lr"]) * int(o["steps"])
            self.meta_opt = build_optimizer(self.generators.parameters(), {**self.ocfg, "lr": meta_lr}, self.ctx.perf)
        self.hooks = bn_hooks(bn_modules(ctx, weights, variant), o["bn_first_layer_scale"], float(o["bn_momentum"]))
        self.memory: dict = {m: None for m in self.keys}
        self.last_parts: dict = {}

    # -- pieces -----------------------------------------------------------------------------

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, int(self.options["z_dim"]), generator=self.generator).to(self.ctx.device)

    def targets(self, n: int) -> torch.Tensor | None:
        y = sample_targets(n, self.num_classes, self.options["targets"], self.generator)
        return None if y is None else y.to(self.ctx.device)

    def _input(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if not self.options["conditional"]:
            return z
        return torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)

    def reinitialise(self) -> None:
        """DCGAN re-initialisation of both generators and a fresh optimiser (CMI)."""
        dcgan_init(self.generators, self.generator)
        self.opt = build_optimizer(self.generators.parameters(), self.ocfg, self.ctx.perf)

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        return jitter_flip(x, int(self.options["jitter"]), bool(self.options["flip"]), self.generator)

    def _memory_sample(self, m: str) -> torch.Tensor | None:
        bank = self.memory[m]
        if bank is None:
            return None
        k = min(int(self.options["negatives"]), bank.shape[0])
        idx = torch.randperm(bank.shape[0], generator=self.generator)[:k].to(bank.device)
        return bank[idx]

    def _remember(self, m: str, feats: torch.Tensor) -> None:
        size = int(self.options["memory_size"])
        if size <= 0:
            return
        feats = F.normalize(feats.detach(), dim=1)
        old = self.memory[m]
        self.memory[m] = (feats if old is None else torch.cat([feats, old]))[:size]

    # -- data-parallel runs -------------------------------------------------------------------

    def distribute(self, wrap) -> None:
        """Data-parallel runs (torchrun): rather than DDP wrappers (the meta-learning copies and
        re-initialisation replace the modules), every generator step averages the generators'
        gradients over the ranks, re-initialised weights are broadcast from rank 0, and BatchNorm
        running statistics are averaged after each round, so all ranks hold the same generators.
        Learnable noise stays per rank (each rank optimises its own samples)."""
        from dfbench.train.distributed import sync_module

        self._data_parallel = True
        sync_module(self.generators)

    # -- one round ----------------------------------------------------------------------------

    def synthesize(self, students) -> SynthBatch:
        o = self.options
        ctx = self.ctx
        n = int(o["batch_size"])
        meta = o["meta"]
        parallel = getattr(self, "_data_parallel", False)
        if parallel:
            from dfbench.train.distributed import average_batchnorm, average_gradients, sync_module
        if o["reinit"]:
            self.reinitialise()
            if parallel:
                sync_module(self.generators)
        if meta == "none":
            nets, opt = self.generators, self.opt
        else:
            nets = copy.deepcopy(self.generators)
            opt = build_optimizer(nets.parameters(), self.ocfg, ctx.perf)
            if meta == "fomaml":
                for p in self.generators.parameters():
                    p.grad = torch.zeros_like(p)
        nets.train()
        y = self.targets(n)
        z = {m: self.noise(n) for m in self.keys}
        z_opt = None
        if o["learnable_z"]:
            for t in z.values():
                t.requires_grad_(True)
            z_lr = float(o["z_lr"]) if o["z_lr"] is not None else float(self.ocfg["lr"])
            z_opt = torch.optim.Adam(list(z.values()), lr=z_lr, betas=tuple(self.ocfg.get("betas", (0.5, 0.999))))
        contrastive = "contrastive" in self.weights
        with students_frozen(students), self.hooks:
            for step in range(int(o["steps"])):
                if step > 0 and not o["learnable_z"]:
                    y = self.targets(n)
                    z = {m: self.noise(n) for m in self.keys}
                out = {m: nets[m](self._input(z[m], y)) for m in self.keys}
                images = {m: self._view(x) for m, x in out.items()} if (int(o["jitter"]) > 0 or o["flip"]) else out
                state = SynthesisState(
                    images,
                    ctx.teachers,
                    self.variant,
                    students,
                    targets=None if y is None else {m: y for m in self.keys},
                    bn_hooks=self.hooks,
                    views={m: random_resized_crop(x, float(o["crop_scale"]), self.generator) for m, x in out.items()} if contrastive else None,
                    memory={m: self._memory_sample(m) for m in self.keys} if contrastive else None,
                    temperature=float(o["temperature"]),
                    **self.term_inputs,
                )
                loss, self.last_parts = weighted_sum(state, self.weights)
                opt.zero_grad(set_to_none=True)
                if z_opt is not None:
                    z_opt.zero_grad(set_to_none=True)
                loss.backward()
                if parallel:
                    average_gradients(nets.parameters())
                if meta == "fomaml":
                    for p, q in zip(self.generators.parameters(), nets.parameters()):
                        if q.grad is not None:
                            p.grad.add_(q.grad)
                opt.step()
                if z_opt is not None:
                    z_opt.step()
        if meta != "none":
            self._meta_update(nets)
        if parallel:
            average_batchnorm(self.generators)
            if nets is not self.generators:
                average_batchnorm(nets)
        if hasattr(self.hooks, "update_ema"):
            self.hooks.update_ema()
        if contrastive:
            for m in self.keys:
                self._remember(m, state.teacher_features(m))
        if int(o["samples"]) > 0:
            return self._fresh_samples(nets, int(o["samples"]) * n)
        exact = images is out  # the teachers saw exactly the returned images: keep their logits
        labels = {m: state.labels(m).detach() for m in self.keys}
        logits = {m: state.teacher_logits(m).detach() if exact else None for m in self.keys}
        return self._batch({m: x.detach() for m, x in out.items()}, labels, logits, y is not None)

    def _meta_update(self, adapted) -> None:
        """Move the meta-generators: Reptile (towards the adapted copy) or first-order MAML (the
        inner gradients, accumulated during the steps)."""
        if self.options["meta"] == "reptile":
            for p, q in zip(self.generators.parameters(), adapted.parameters()):
                p.grad = (p.detach() - q.detach()).clone()
        self.meta_opt.step()
        self.meta_opt.zero_grad(set_to_none=True)
        # BatchNorm running statistics are buffers, not parameters: take the adapted ones
        for b, a in zip(self.generators.buffers(), adapted.buffers()):
            b.copy_(a)

    @torch.no_grad()
    def _fresh_samples(self, nets, total: int) -> SynthBatch:
        y = self.targets(total)
        out = {m: nets[m](self._input(self.noise(total), y)) for m in self.keys}
        logits = {m: self.ctx.teachers.for_modality(m, self.variant)(out[m]) for m in self.keys}
        labels = {m: logits[m].argmax(1) if y is None else y for m in self.keys}
        return self._batch(out, labels, logits, y is not None)

    def _batch(self, images: dict, labels: dict, logits: dict, targeted: bool) -> SynthBatch:
        if targeted:  # rows already pair one target class
            return SynthBatch.of(self.pair, images, labels, logits)
        batch, agree = paired_batch(self.pair, images, labels, logits, num_classes=self.num_classes)
        self.last_parts = {**self.last_parts, "paired": agree}
        return batch

    @torch.no_grad()
    def sample(self, n: int) -> dict:
        """Fresh samples of both generators (for pictures)."""
        y = self.targets(n)
        return {m: g(self._input(self.noise(n), y)) for m, g in self.generators.items()}

    def state_dict(self) -> dict:
        state = {"generators": self.generators.state_dict(), "opt": self.opt.state_dict(), "generator": self.generator.get_state(), "memory": self.memory}
        if self.meta_opt is not None:
            state["meta_opt"] = self.meta_opt.state_dict()
        if hasattr(self.hooks, "state_dict"):
            state["bn_ema"] = self.hooks.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generators.load_state_dict(state["generators"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])
        self.memory = state.get("memory", self.memory)
        if self.meta_opt is not None and "meta_opt" in state:
            self.meta_opt.load_state_dict(state["meta_opt"])
        if "bn_ema" in state and hasattr(self.hooks, "load_state_dict"):
            self.hooks.load_state_dict(state["bn_ema"])
