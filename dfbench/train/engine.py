"""The data-free training loop every data-free method shares.

A data-free method is a declaration: a teacher variant, an inversion strategy with its options,
weighted synthesis loss terms, an alignment loss, a schedule and a readout. Each round:

1. the strategy synthesises a batch of pairs of the benchmark's two modalities (its own optimisation steps,
   with the students frozen and in eval mode);
2. the batch joins a replay pool of recent pairs;
3. the encoders take ``encoder_steps`` steps of the alignment loss on batches drawn from the fresh
   batch and the pool.

No host synchronisation happens inside the loop except every ``log_every`` rounds, where the
curves are recorded and losses checked for NaN/inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from dfbench.train import distributed as dist
from dfbench.api.modalities import pair_of
from dfbench.api.errors import ConfigError, TrainingDivergedError
from dfbench.api.inversion import ReplayPool, SynthBatch, concat_batches
from dfbench.api.methods import Method
from dfbench.api.options import Options, component, component_options, option, section, weights_of
from dfbench.api.perf import modules_of as perf_modules
from dfbench.train.students import StudentEmbedder, Students
from dfbench.api.teachers import TeacherPasses, roles_for_variant
from dfbench.train.terms import check_weights, needs_of

@dataclass
class OptimizerOptions(Options):
    """An optimiser (``build_optimizer``); ``momentum`` (sgd) and ``betas`` (adam) left unset take
    the optimiser's usual values (0.9; 0.9 and 0.999)."""

    name: Literal["adam", "adamw", "sgd"] = option("adam", help="the optimiser")
    lr: float = option(1e-3, min=0.0, help="learning rate (0: the parameters stay as they are)")
    momentum: float | None = option(None, min=0.0, max=1.0, max_exclusive=True, optional=True, help="sgd momentum")
    betas: list[float] | None = option(None, min=0.0, max=1.0, max_exclusive=True, optional=True, help="adam betas")
    weight_decay: float = option(0.0, min=0.0, help="weight decay")


@dataclass
class DataFreeOptions(Options):
    """The ``params`` of every data-free method: a teacher variant, an inversion strategy, weighted
    synthesis terms, an alignment loss, a schedule and a readout."""

    variant: Literal["unified", "independent"] = option(
        "unified", help="teachers judged against: one unified classifier, or one classifier per modality trained apart"
    )
    inversion: dict = component("inversions", "strategy", help="how pairs are synthesised from the teachers")
    weights: dict = weights_of("terms", help="weight of each synthesis loss term (0 or absent: not computed)")
    alignment: dict = component("losses", "loss", help="the loss that aligns the two encoders")
    rounds: int = option(200, min=0, help="synthesis rounds (0: evaluate the students as initialised); with a budget, the most rounds")
    budget: int | None = option(
        None, min=1, optional=True,
        help="compute budget in teacher image passes (docs/protocol.md): the run stops after the round in which the teachers "
        "have seen this many images, the encoders' cosine schedule runs over the budget, and curve evaluations happen at "
        "each eighth of it (unset: rounds decide)",
    )
    encoder_steps: int = option(1, min=1, help="encoder steps per round")
    warmup_rounds: int = option(
        0, min=0,
        help="synthesis-only rounds before the first encoder step, without the terms that need the (untrained) students; "
        "their teacher passes count towards the budget",
    )
    batch_size: int = option(64, min=1, help="encoder batch, in pairs")
    fresh_fraction: float = option(
        0.5, min=0.0, max=1.0, min_exclusive=True, help="share of each encoder batch drawn from the newest synthesised batch"
    )
    replay_size: int = option(0, min=0, help="pairs kept for replay (0: no pool, only the fresh batch)")
    optimizer: OptimizerOptions = section(
        OptimizerOptions, help="the encoders' optimiser", name="adam", lr=1e-3, momentum=0.9, weight_decay=0.0
    )
    schedule: Literal["cosine", "constant"] = option("cosine", help="encoder learning-rate schedule")
    readout: Literal["raw", "proxy"] = option(
        "raw", help="retrieval embedding: the encoders' raw embedding, or its scaled cosines to the teacher proxies"
    )
    proxy_scale: float = option(32.0, min=0.0, min_exclusive=True, help="scale of the students' cosine class logits")
    student_head: Literal["cosine", "linear"] = option(
        "cosine", help="the students' class logits in adversarial terms: proxy_scale * cos(e, W), or the teacher's head W e + b (the DF-SBIR release)"
    )
    entropy_log_base: Literal["e", 10] = option(
        "e", help="base of the logarithm in the entropy synthesis term: e (natural), or 10 (the DF-SBIR release: 1/ln 10 as strong)"
    )
    init_from_teachers: bool = option(False, help="initialise the encoders from the teachers' backbones")
    student_bn: Literal["train", "frozen"] = option(
        "train",
        help="encoder BatchNorm during their steps: batch statistics (train) or the running statistics they start with (frozen)",
    )
    log_every: int = option(10, min=1, help="rounds between curve rows (and NaN checks)")
    select: Literal["last", "best-val"] | None = option(
        None, optional=True,
        help="the students a run is evaluated with: its last round's (unset: the same), or those of the curve "
        "evaluation with the best validation mAP@all (needs data.validation and curve_eval_every; docs/protocol.md)",
    )

    @classmethod
    def check_run(cls, cfg: dict) -> None:
        """Checks across sections, when the config is resolved (before any work)."""
        if cfg["params"].get("select") == "best-val":
            if not cfg["data"].get("validation"):
                raise ConfigError(
                    "params.select=best-val picks the round with the best validation mAP@all, but the run has no "
                    "validation split: set data.validation (for example 0.1; docs/protocol.md)."
                )
            if not cfg.get("curve_eval_every"):
                raise ConfigError("params.select=best-val needs curve evaluations: set curve_eval_every to a positive number of rounds.")


#: the defaults of :class:`DataFreeOptions` as plain data, for methods' ``base`` declarations
DATA_FREE_BASE = DataFreeOptions.defaults()


def build_optimizer(params, ocfg: dict, perf=None):
    """The optimiser of ``ocfg`` ({name, lr, ...}); ``perf`` (the run's :class:`dfbench.api.perf.Perf`,
    ``ctx.perf``) picks its kernels (``perf.optimizer_impl``: default, foreach or fused)."""
    name = ocfg.get("name", "adam")
    lr = float(ocfg["lr"])
    wd = float(ocfg.get("weight_decay", 0.0))
    params = list(params)
    impl = perf.optimizer_kwargs() if perf is not None else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=tuple(ocfg.get("betas") or (0.9, 0.999)), **impl)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **impl)
    if name == "sgd":
        momentum = ocfg.get("momentum")
        return torch.optim.SGD(params, lr=lr, momentum=0.9 if momentum is None else float(momentum), weight_decay=wd, **impl)
    raise ConfigError(f"Unknown optimizer '{name}': use adam, adamw or sgd.")


class DataFreeMethod(Method):
    """Base of every data-free method: subclasses only declare ``profiles`` (values of
    :class:`DataFreeOptions`); the shared :class:`DataFreeLoop` trains them."""

    Options = DataFreeOptions

    def teacher_roles(self, params: dict, pair=None) -> set[str]:
        weights = check_weights(params.get("weights", {}))
        return roles_for_variant(params["variant"], modality="modality_teacher" in needs_of(weights), pair=pair)

    def fit(self, ctx):
        loop = DataFreeLoop(ctx, DataFreeOptions.from_data(ctx.params, "params"))
        loop.run(default_hooks(ctx, loop.p))
        return StudentEmbedder(loop.students, loop.p.readout)


def _budget_cosine(loop: "DataFreeLoop", budget: int):
    """The cosine learning-rate factor over a budget of teacher image passes,
    ``(1 + cos(pi * spent / budget)) / 2``, read from the loop's counter at each encoder step (a
    plain function: LambdaLR leaves it out of its state, the counter is in the checkpoint)."""

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, loop.teacher_images / budget)))

    return factor


class LoopHook:
    """Something the loop does around its rounds, apart from training (mmengine's hooks, small):
    ``before_train`` once (after a resume is restored), ``after_round`` after each round's
    encoder steps, ``after_train`` once after the last round. Hooks run in the order given."""

    def before_train(self, loop: "DataFreeLoop") -> None:
        pass

    def after_round(self, loop: "DataFreeLoop") -> None:
        pass

    def after_train(self, loop: "DataFreeLoop") -> None:
        pass


class DataFreeLoop:
    """The rounds of a data-free method: each one synthesises a batch of pairs (students frozen),
    adds it to the replay pool and takes ``encoder_steps`` steps of the alignment loss.

    What happens around the rounds (curves and the divergence guard, curve evaluation,
    checkpoints, data-parallel BatchNorm averaging) is in :class:`LoopHook` objects. The loop keeps
    running sums of the loss terms since the last curve row (``sums``, ``align_sum``, ``count``),
    which the curve hook reads and resets: no host synchronisation happens between curve rows."""

    def __init__(self, ctx, p: DataFreeOptions):
        from dfbench.api.plugins import component_class

        self.ctx, self.p = ctx, p
        self.pair = pair_of(ctx)  # the benchmark's modalities
        self.weights = check_weights(p.weights)
        with ctx.rng_scope("students/init"):
            self.students = Students(ctx, p.variant, scale=p.proxy_scale, init_from_teachers=p.init_from_teachers, head=p.student_head)
        self.passes = TeacherPasses(ctx.teachers)  # the compute spent: teacher image passes (the strategy's own setup included)
        strategy_cls = component_class("inversions", p.inversion["strategy"])
        options = _rank_options(component_options(strategy_cls, p.inversion, "strategy", "params.inversion"))
        with ctx.rng_scope("inversion/init"):  # the strategy's modules start from a stream of their own
            self.strategy = strategy_cls(ctx, options, self.weights, p.variant)
        loss_cls = component_class("losses", p.alignment["loss"])
        with ctx.rng_scope("alignment/init"):
            self.align = loss_cls(ctx, component_options(loss_cls, p.alignment, "loss", "params.alignment"), self.students)
        self.align_params = list(self.align.parameters())
        ctx.perf.prepare(self.students, *perf_modules(self.strategy), *ctx.teachers.models.values())
        ctx.perf.compile_modules(self.students.encoders.values())
        self.opt = build_optimizer(list(self.students.encoders.parameters()) + self.align_params, p.optimizer, ctx.perf)
        self.sched = self._schedule(p)
        self.pool = ReplayPool(_rank_pool(p.replay_size))
        self.gen = ctx.rng("loop/encoder-batches")
        self.batch_size = dist.split_batch(p.batch_size, "params.batch_size")  # this rank's share
        self.n_fresh = max(1, int(round(self.batch_size * p.fresh_fraction))) if self.pool.capacity > 0 else self.batch_size
        self.frozen_bn = [m for m in self.students.encoders.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)] if p.student_bn == "frozen" else []
        # the encoders' training forward pass, encode(images, modality): DDP-wrapped when distributed
        self.encode = _distribute(self.students, self.strategy) if dist.active() else self.students
        self.parts = {"students": self.students, "opt": self.opt, "strategy": self.strategy, "align": self.align}
        if self.sched is not None:
            self.parts["sched"] = self.sched
        self.round = 0  # rounds done
        self.finished = p.rounds == 0  # the last round is done (rounds reached, or the budget spent)
        self.monitored: tuple | None = None  # (round, value) of the last curve evaluation
        self.best: dict | None = None  # params.select=best-val: {round, value, state} of the best evaluation so far
        self.start = 0  # the round this process started from (a resumed run's checkpoint)
        self.batch: SynthBatch | None = None  # the newest synthesised batch
        self.task = None  # the progress task while running
        self._reset_sums()
        ctx.students, ctx.strategy = self.students, self.strategy

    def _schedule(self, p: DataFreeOptions):
        """The encoders' learning-rate schedule: cosine over the encoder steps, or over the budget's
        teacher image passes when the run has a budget (each step's factor reads the passes spent)."""
        if p.schedule != "cosine":
            return None
        if p.budget is None:
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, p.rounds * p.encoder_steps))
        return torch.optim.lr_scheduler.LambdaLR(self.opt, _budget_cosine(self, p.budget))

    @property
    def teacher_images(self) -> int:
        """Teacher image passes spent so far, over all ranks (each rank spends its equal share)."""
        return self.passes.images * dist.world()

    @property
    def at_curve_row(self) -> bool:
        """Whether the round just done ends a curve row (every ``log_every`` rounds, and the last)."""
        return self.round % self.p.log_every == 0 or self.finished

    def _reset_sums(self) -> None:
        self.sums: dict = {}
        self.align_sum = torch.zeros((), device=self.ctx.device)
        self.count = 0

    def run(self, hooks: list[LoopHook]) -> None:
        self.restore()
        self.finished = self.round >= self.p.rounds
        if self.start == 0 and not self.finished:
            self.warm_up()
        for hook in hooks:
            hook.before_train(self)
        with self.ctx.reporter.task(f"{self.ctx.config['method']} training", total=self.p.rounds) as self.task:
            if self.start:
                self.task.advance(self.start)
                self.task.note(f"resumed at round {self.start}")
            while not self.finished:
                self.train_round()
                for hook in hooks:
                    hook.after_round(self)
        for hook in hooks:
            hook.after_train(self)
        self.passes.remove()
        self.ctx.budget = {"teacher_images": self.teacher_images, "rounds": self.round, "budget": self.p.budget}

    def warm_up(self) -> None:
        """``warmup_rounds`` rounds of synthesis alone, before the encoders' first step, so that the
        encoders first meet pairs that work (docs/protocol.md, "Synthesis is judged after it
        works"). Terms that need the students (the adversarial ones) are left out: untrained students
        give them nothing to seek. A resumed run has done its warm-up."""
        if self.p.warmup_rounds <= 0:
            return
        full = self.strategy.weights
        self.strategy.weights = {k: w for k, w in full.items() if "students" not in needs_of({k: w})}
        try:
            with self.ctx.reporter.task("synthesis warm-up", total=self.p.warmup_rounds) as task:
                for i in range(self.p.warmup_rounds):
                    before = self.passes.images
                    with self.ctx.perf.autocast():
                        self.batch = self.strategy.synthesize(self.students)
                    task.advance(1)
                    if i == 0:
                        self._check_warmup_fits(self.passes.images - before)
        finally:
            self.strategy.weights = full

    def _check_warmup_fits(self, per_round: int) -> None:
        """A warm-up that would spend the whole budget leaves the encoders no round: bad config."""
        budget = self.p.budget
        if budget is None or per_round <= 0 or self.p.warmup_rounds * per_round < budget:
            return
        from dfbench.api.errors import ConfigError

        fits = max(0, (budget // 2) // per_round)
        raise ConfigError(
            f"params.warmup_rounds={self.p.warmup_rounds} synthesis-only rounds spend {self.p.warmup_rounds * per_round} teacher "
            f"image passes ({per_round} a round), at least the whole params.budget={budget}: the encoders would never train. "
            f"Set params.warmup_rounds to at most {fits} (half the budget, as the cpu profile spends), or raise params.budget."
        )

    def train_round(self) -> None:
        """One round: synthesise a batch, then the encoder steps on it and the pool."""
        with self.ctx.perf.autocast():
            batch = self.strategy.synthesize(self.students)
        for k, v in getattr(self.strategy, "last_parts", {}).items():
            self.sums[k] = self.sums.get(k, 0) + v
        self.pool.add(batch)
        self.batch = self.ctx.last_batch = batch
        self.students.train()
        for mod in self.frozen_bn:
            mod.eval()
        for _ in range(self.p.encoder_steps):
            self.align_sum = self.align_sum + self.encoder_step(self._encoder_batch(batch))
        self.round += 1
        self.count += 1
        spent = self.p.budget is not None and self.teacher_images >= self.p.budget
        self.finished = self.round >= self.p.rounds or spent
        self.task.advance(1)

    def encoder_step(self, b: SynthBatch) -> torch.Tensor:
        with self.ctx.perf.autocast():
            g, q = self.pair.keys
            e_g, e_q = self.encode(b.images[g], g), self.encode(b.images[q], q)
            extra = {}
            if getattr(self.align, "uses_teacher_logits", False):
                logits = teacher_logits(self.ctx, b, self.p.variant)
                extra = {"gallery_logits": logits[g], "query_logits": logits[q]}
            loss = self.align(e_g, e_q, b.labels[g], b.labels[q], **extra)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.align_params:
            dist.average_gradients(self.align_params)  # no-op in a single process
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        return loss.detach()

    def _encoder_batch(self, fresh: SynthBatch) -> SynthBatch:
        bs, pool, gen = self.batch_size, self.pool, self.gen
        if pool.capacity <= 0 or len(pool) == 0:
            if len(fresh) >= bs:
                return fresh
            idx = torch.randint(0, len(fresh), (bs,), generator=gen).to(fresh.device)
            return fresh.index(idx)
        n_fresh = min(self.n_fresh, len(fresh))
        idx = torch.randperm(len(fresh), generator=gen)[:n_fresh].to(fresh.device)
        a = fresh.index(idx)
        if bs - n_fresh <= 0:
            return a
        return concat_batches(a, pool.sample(bs - n_fresh, gen))

    # -- checkpoints --------------------------------------------------------------------------

    def snapshot(self) -> dict:
        return {
            "round": self.round,
            "teacher_images": self.passes.images,
            "parts": {k: v.state_dict() for k, v in self.parts.items()},
            "pool": self.pool.state_dict(),
            "streams": self.ctx.streams.state_dict(),
            "curves": list(self.ctx.curves),
            "best": self.best,
        }

    def restore(self) -> None:
        """Resume from the run's checkpoint, when it has one."""
        from dfbench.train.checkpoint import set_rng_state

        ckpt = self.ctx.checkpointer
        saved = ckpt.load() if ckpt is not None else None
        if saved is None:
            return
        problem = _checkpoint_problem(saved, self.parts, self.p.rounds)
        if problem is not None:  # checked before anything is restored: a run never resumes half-way
            ckpt.refuse(problem)
            return
        _check_world(saved, ckpt)
        for k, v in self.parts.items():
            v.load_state_dict(saved["parts"][k])
        self.pool.load_state_dict(saved["pool"], self.ctx.device)
        self.ctx.streams.load_state_dict(saved["streams"])
        self.ctx.curves[:] = saved["curves"]
        set_rng_state(saved["rng"])
        self.start = self.round = int(saved["round"])
        self.passes.images = int(saved["teacher_images"])
        self.best = saved.get("best")
        _restore_rank(saved, self.pool, self.ctx)


#: what a checkpoint of the data-free loop holds (DataFreeLoop.state)
CHECKPOINT_KEYS = ("parts", "pool", "streams", "curves", "rng", "round", "teacher_images")


def _checkpoint_problem(saved: dict, parts: dict, rounds: int) -> str | None:
    """Why a checkpoint cannot resume this loop (None: it can): keys missing, other parts, a round
    outside [0, rounds] (a checkpoint claiming round 10^9 would end the run untrained)."""
    missing = [k for k in CHECKPOINT_KEYS if k not in saved]
    if missing:
        return f"it lacks {', '.join(missing)} (it is not a checkpoint of this loop, or it was cut short)"
    if not isinstance(saved["parts"], dict) or set(saved["parts"]) != set(parts):
        return f"it holds the parts {sorted(saved['parts']) if isinstance(saved['parts'], dict) else saved['parts']!r}, this run {sorted(parts)}"
    if isinstance(saved["round"], bool) or not isinstance(saved["round"], int) or not 0 <= saved["round"] <= rounds:
        return f"it claims round {saved['round']!r}, outside this run's 0-{rounds}"
    if isinstance(saved["teacher_images"], bool) or not isinstance(saved["teacher_images"], int) or saved["teacher_images"] < 0:
        return f"it claims {saved['teacher_images']!r} teacher image passes"
    return None


def default_hooks(ctx, p: DataFreeOptions) -> list[LoopHook]:
    """The hooks of a data-free run, in order."""
    select = [SelectOnValidation()] if p.select == "best-val" else []
    return [DistributedBatchNorm(), CurveHook(int(ctx.config.get("curve_eval_every", 0) or 0)), *select, CheckpointHook()]


class DistributedBatchNorm(LoopHook):
    """Data-parallel runs: the encoders' BatchNorm statistics averaged over the ranks each round,
    so every rank holds the same students."""

    def after_round(self, loop):
        if dist.active():
            dist.average_batchnorm(loop.students.encoders)


#: a run with a budget evaluates its students each time another 1/BUDGET_EVALS of it is spent
BUDGET_EVALS = 8


class CurveHook(LoopHook):
    """At each curve row (every ``log_every`` rounds, and the last): a row of the mean loss terms since the
    previous row (means over the ranks), how well the newest synthesised batch works
    (:func:`synthesis_stats`, also kept as ``ctx.synthesis``: the record's final values), the
    monitored metric (at round 0, at the last round, and every ``eval_every`` rounds, or, in a run
    with a budget, each time another :data:`BUDGET_EVALS`-th of the budget is spent, so that runs
    of different methods are evaluated at the same compute), and the divergence guard: a
    non-finite value stops the run with a clear error."""

    def __init__(self, eval_every: int):
        self.eval_every = eval_every
        self.last_eval = 0
        self.last_eval_spent = 0

    def _eval_due(self, loop) -> bool:
        if self.eval_every <= 0:
            return False
        if loop.finished and loop.round > self.last_eval:  # the last round's students
            return True
        if loop.p.budget is not None:
            point = lambda spent: int(BUDGET_EVALS * spent / loop.p.budget)  # noqa: E731
            return point(loop.teacher_images) > point(self.last_eval_spent)
        return loop.round // self.eval_every > self.last_eval // self.eval_every

    def before_train(self, loop):
        self.last_eval, self.last_eval_spent = loop.start, loop.teacher_images
        if 0 < self.eval_every and (loop.p.budget is not None or self.eval_every <= loop.p.rounds) and loop.start == 0:  # the students before any training
            row = _monitor(loop.ctx, loop.students, loop.p.readout)
            loop.monitored = (0, next(iter(row.values())))
            if loop.batch is not None:  # after a synthesis warm-up: how its pairs work
                with loop.passes.paused():
                    row.update({f"synth/{k}": v for k, v in dist.mean_floats(synthesis_stats(loop.ctx, loop.batch, loop.p.variant)).items()})
            loop.ctx.log_curve({"round": 0, "teacher images": float(loop.teacher_images), **row})

    def after_round(self, loop):
        r = loop.round
        eval_due = self._eval_due(loop)
        if not (loop.at_curve_row or eval_due):
            return
        values = {"teacher images": float(loop.teacher_images), "align": float(loop.align_sum) / (loop.count * loop.p.encoder_steps)}
        values.update({f"term/{k}": float(v) / loop.count for k, v in loop.sums.items()})
        row = {"round": r, **dist.mean_floats(values)}  # means over the ranks
        row["teacher images"] = values["teacher images"]  # a count, not a mean over the ranks
        if loop.batch is not None:  # is the synthesis working? (monitoring only: no random draw, no state change)
            with loop.passes.paused():
                loop.ctx.synthesis = dist.mean_floats(synthesis_stats(loop.ctx, loop.batch, loop.p.variant))
            row.update({f"synth/{k}": v for k, v in loop.ctx.synthesis.items()})
        if eval_due:
            monitored = _monitor(loop.ctx, loop.students, loop.p.readout)
            loop.monitored = (r, next(iter(monitored.values())))
            row.update(monitored)
            self.last_eval, self.last_eval_spent = r, loop.teacher_images
        bad = [k for k, v in row.items() if k != "round" and not math.isfinite(v)]
        if bad:
            raise TrainingDivergedError(
                f"Training diverged at round {r}: the loss {bad[0]} became {row[bad[0]]}. "
                "Lower the learning rates (params.optimizer.lr, params.inversion.optimizer.lr) or the "
                "weights of the synthesis terms (params.weights.*), then run again."
            )
        loop.ctx.log_curve(row)
        loop.task.note(f"align {row['align']:.3f}")
        loop._reset_sums()


class SelectOnValidation(LoopHook):
    """``params.select: best-val``: the students of the curve evaluation with the best validation
    mAP@all (round 0, the untrained students, included) are kept and restored after the last round,
    so the run is evaluated (on test, once) with the students validation chose. The choice goes into
    the record (``selection``); the kept state is part of the checkpoint, so a resumed run chooses
    the same."""

    def before_train(self, loop):
        self._consider(loop)

    def after_round(self, loop):
        self._consider(loop)

    @staticmethod
    def _consider(loop):
        if loop.monitored is None or (loop.best is not None and loop.monitored[0] <= loop.best["seen"]):
            return
        r, value = loop.monitored
        if loop.best is None or value > loop.best["value"]:
            state = {k: v.detach().cpu().clone() for k, v in loop.students.state_dict().items()}
            loop.best = {"round": r, "value": value, "state": state, "seen": r}
        else:
            loop.best["seen"] = r

    def after_train(self, loop):
        if loop.best is None:
            return
        loop.students.load_state_dict(loop.best["state"])
        loop.ctx.selection = {"select": "best-val", "split": "val", "metric": "mAP@all", "round": loop.best["round"],
                              "value": loop.best["value"], "rounds": loop.round}


class CheckpointHook(LoopHook):
    """A resumable checkpoint when one is due, at a curve row (where the running sums are empty)
    and never after the last round (the record is the result then). In a data-parallel run rank 0
    writes every rank's own random streams and pool."""

    def after_round(self, loop):
        ckpt = loop.ctx.checkpointer
        if ckpt is None or not loop.at_curve_row or loop.finished or not ckpt.due(loop.round):
            return
        if dist.active():
            snap = loop.snapshot() if dist.is_main() else {"round": loop.round}
            snap["world_size"] = dist.world()
            snap["ranks"] = dist.gather_objects(_rank_state(loop.pool, loop.ctx))
            ckpt.save(snap)
        else:
            ckpt.save(loop.snapshot())


#: what :func:`synthesis_stats` measures, in the order curves and records show it
SYNTHESIS_STATS = ("pair agreement", "class coverage", "teacher confidence", "class KL", "query class coverage", "gallery class coverage")


@torch.no_grad()
def synthesis_stats(ctx, batch: SynthBatch, variant: str) -> dict:
    """Whether a synthesised batch works, judged by the teachers that judge each modality:

    - ``pair agreement``: the fraction of pairs whose two images the teachers label alike
      (1.0: every pair shows one class, the premise of cross-modal training on pairs);
    - ``class coverage``: the fraction of classes the batch's teacher labels cover (both modalities);
    - ``teacher confidence``: the teachers' mean top softmax probability over the batch;
    - ``class KL``: the mean KL(p_query || p_gallery) of a pair's class distributions (the paper's
      class-alignment term, KL(p_sketch || p_photo), measured whatever its weight);
    - ``query class coverage``, ``gallery class coverage``: the class coverage of each side alone:
      one side's generator that collapsed to a few classes shows here, where the joint coverage
      hides which side it was."""
    pair = pair_of(ctx)
    logits = teacher_logits(ctx, batch, variant)
    lp, ls = logits[pair.gallery.key].float(), logits[pair.query.key].float()
    pp, ps = lp.softmax(1), ls.softmax(1)
    yp, ys = pp.argmax(1), ps.argmax(1)
    covered = torch.unique(torch.cat([yp, ys])).numel()
    kl = torch.nn.functional.kl_div(lp.log_softmax(1), ps, reduction="batchmean")
    values = ((yp == ys).float().mean(), covered / ctx.num_classes, torch.cat([pp.max(1).values, ps.max(1).values]).mean(), kl,
              torch.unique(ys).numel() / ctx.num_classes, torch.unique(yp).numel() / ctx.num_classes)
    return {k: float(v) for k, v in zip(SYNTHESIS_STATS, values)}


def _monitor(ctx, students, readout: str) -> dict:
    """``{"<split> mAP@all": value}`` of the students as they are now, on the benchmark's selection
    split: validation under the protocol (docs/protocol.md; the test split is then read once, at
    the end), test in configs made before it (monitoring only: no model was picked by it).
    Embedding runs in eval mode under no_grad and draws no random numbers, so training goes on
    exactly as without it; the train/eval mode of every module is restored."""
    from dfbench.train.evaluation import evaluate_embedder

    modes = {m: m.training for m in students.modules()}
    split = ctx.benchmark.selection_split
    metrics = evaluate_embedder(StudentEmbedder(students, readout), ctx.benchmark, ctx.device, int(ctx.config["eval"]["batch_size"]), split=split)
    for m, mode in modes.items():
        m.training = mode
    return {f"{split} mAP@all": float(metrics["mAP@all"])}


@torch.no_grad()
def teacher_logits(ctx, b: SynthBatch, variant: str) -> dict:
    """The judging teachers' logits of a batch by modality key (for losses with
    ``uses_teacher_logits``): the batch's own when its strategy filled them, else one
    frozen-teacher pass."""
    out = {}
    for m in pair_of(ctx).keys:
        logits = None if b.logits is None else b.logits.get(m)
        out[m] = logits if logits is not None else ctx.teachers.for_modality(m, variant)(b.images[m])
    return out


# ---- data-parallel runs (torchrun; see dfbench.train.distributed and docs/scaling.md) ------------------
# In a single process every helper below returns its input unchanged.


def _rank_options(options):
    """The inversion options of this rank: ``batch_size`` is the global batch, split over the ranks."""
    import dataclasses

    if dist.world() == 1 or "batch_size" not in options:
        return options
    return dataclasses.replace(options, batch_size=dist.split_batch(options["batch_size"], "params.inversion.batch_size"))


def _rank_pool(capacity: int) -> int:
    """Each rank keeps its share of the replay pool (the pools of all ranks hold ``replay_size``)."""
    if capacity <= 0 or dist.world() == 1:
        return capacity
    return max(1, capacity // dist.world())


def _distribute(students, strategy):
    """Wrap the encoders and the strategy's trainable modules in DistributedDataParallel.

    Returns the encoders' training forward ``encode(images, modality)``. The students themselves
    stay unwrapped: the estimator loss calls them with frozen parameters (adversarial terms), and
    evaluation embeds with them."""
    from dfbench.api.errors import ConfigError
    from dfbench.api.inversion import InversionStrategy

    if getattr(type(strategy), "distribute", InversionStrategy.distribute) is InversionStrategy.distribute:
        trained = dist.trainable_parts(strategy)
        if trained:
            raise ConfigError(
                f"The inversion strategy '{getattr(strategy, 'name', type(strategy).__name__)}' trains "
                f"{', '.join(trained)} but does not support distributed runs yet (it has no "
                "distribute() method, see dfbench.api.inversion.InversionStrategy.distribute). Run it in one "
                "process (without torchrun), or shard a suite over machines with 'dfbench bench --shard i/n'."
            )
    else:
        strategy.distribute(dist.wrap)
    # BatchNorm statistics: averaged over the ranks after each round's encoder steps
    encoders = {m: dist.wrap(enc, broadcast_buffers=False) for m, enc in students.encoders.items()}
    return lambda x, m: encoders[m](x)


def _rank_state(pool: ReplayPool, ctx) -> dict:
    """What differs between ranks: the replay pool and every random stream."""
    from dfbench.train.checkpoint import rng_state

    return {"pool": pool.state_dict(), "streams": ctx.streams.state_dict(), "rng": rng_state()}


def _check_world(saved: dict, ckpt) -> None:
    saved_world = int(saved.get("world_size", 1))
    if saved_world != dist.world():
        raise ConfigError(
            f"The checkpoint {ckpt.path} was written by a run with {saved_world} process(es) and this run has "
            f"{dist.world()}: resume it with the same number of processes, or delete the checkpoint to start over."
        )


def _restore_rank(saved: dict, pool: ReplayPool, ctx) -> None:
    """This rank's pool and random streams from a checkpoint of a data-parallel run."""
    ranks = saved.get("ranks")
    if not ranks:
        return
    from dfbench.train.checkpoint import set_rng_state

    mine = ranks[dist.rank()]
    pool.load_state_dict(mine["pool"], ctx.device)
    ctx.streams.load_state_dict(mine["streams"])
    set_rng_state(mine["rng"])
