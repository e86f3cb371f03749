"""The data-free training loop every data-free method shares.

A data-free method is a declaration: a teacher variant, an inversion strategy with its options,
weighted synthesis loss terms, an alignment loss, a schedule and a readout. Each round:

1. the strategy synthesises a batch of paired photos and sketches (its own optimisation steps,
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

from dfbench import distributed as dist
from dfbench.errors import ConfigError, TrainingDivergedError
from dfbench.inversion import ReplayPool, SynthBatch, concat_batches
from dfbench.methods import Method
from dfbench.options import Options, component, component_options, option, section, weights_of
from dfbench.perf import modules_of as perf_modules
from dfbench.students import StudentEmbedder, Students
from dfbench.teachers import roles_for_variant
from dfbench.terms import NEEDS_MODALITY_TEACHER, check_weights

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
        "unified", help="teachers judged against: one unified classifier, or a photo and a sketch classifier trained apart"
    )
    inversion: dict = component("inversions", "strategy", "estimators", help="how pairs are synthesised from the teachers")
    weights: dict = weights_of("terms", help="weight of each synthesis loss term (0 or absent: not computed)")
    alignment: dict = component("losses", "loss", "proxy-anchor", help="the loss that aligns the two encoders")
    rounds: int = option(200, min=0, help="synthesis rounds (0: evaluate the students as initialised)")
    encoder_steps: int = option(1, min=1, help="encoder steps per round")
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
    init_from_teachers: bool = option(False, help="initialise the encoders from the teachers' backbones")
    student_bn: Literal["train", "frozen"] = option(
        "train",
        help="encoder BatchNorm during their steps: batch statistics (train) or the running statistics they start with (frozen)",
    )
    log_every: int = option(10, min=1, help="rounds between curve rows (and NaN checks)")


#: the defaults of :class:`DataFreeOptions` as plain data, for methods' ``base`` declarations
DATA_FREE_BASE = DataFreeOptions.defaults()


def build_optimizer(params, ocfg: dict, perf=None):
    """The optimiser of ``ocfg`` ({name, lr, ...}); ``perf`` (the run's :class:`dfbench.perf.Perf`,
    ``ctx.perf``) picks its kernels (``perf.optimizer_impl``: default, foreach or fused)."""
    name = ocfg.get("name", "adam")
    lr = float(ocfg["lr"])
    wd = float(ocfg.get("weight_decay", 0.0))
    params = list(params)
    impl = perf.optimizer_kwargs() if perf is not None else {}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=tuple(ocfg.get("betas", (0.9, 0.999))), **impl)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, **impl)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(ocfg.get("momentum", 0.9)), weight_decay=wd, **impl)
    raise ConfigError(f"Unknown optimizer '{name}': use adam, adamw or sgd.")


class DataFreeMethod(Method):
    """Base of every data-free method: subclasses only declare ``profiles``."""

    Options = DataFreeOptions

    def teacher_roles(self, params: dict) -> set[str]:
        weights = check_weights(params.get("weights", {}))
        roles = roles_for_variant(params["variant"], modality=bool(NEEDS_MODALITY_TEACHER & set(weights)))
        return roles

    def fit(self, ctx):
        from dfbench.plugins import registry

        p = ctx.params
        device = ctx.device
        weights = check_weights(p["weights"])
        students = Students(ctx, p["variant"], scale=p["proxy_scale"], init_from_teachers=p["init_from_teachers"])

        strategy_cls = registry("inversions").load(p["inversion"]["strategy"])
        strategy = strategy_cls(ctx, _rank_options(component_options(strategy_cls, p["inversion"], "strategy", "params.inversion")), weights, p["variant"])
        dist.offset_generators(strategy)  # data-parallel runs: each rank draws its own samples
        loss_cls = registry("losses").load(p["alignment"]["loss"])
        align = loss_cls(ctx, component_options(loss_cls, p["alignment"], "loss", "params.alignment"), students)

        if p["student_bn"] not in ("train", "frozen"):
            raise ConfigError(f"params.student_bn must be 'train' or 'frozen', got '{p['student_bn']}'.")
        freeze_bn = p["student_bn"] == "frozen"
        bn_layers = [m for m in students.encoders.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        perf = ctx.perf
        perf.prepare(students, *perf_modules(strategy), *ctx.teachers.models.values())
        perf.compile_modules(students.encoders.values())
        opt = build_optimizer(list(students.encoders.parameters()) + list(align.parameters()), p["optimizer"], perf)
        rounds = int(p["rounds"])
        steps = max(1, rounds * int(p["encoder_steps"]))
        if p["schedule"] == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        elif p["schedule"] == "constant":
            sched = None
        else:
            raise ConfigError(f"Unknown schedule '{p['schedule']}': use cosine or constant.")
        pool = ReplayPool(_rank_pool(int(p["replay_size"])))
        gen = torch.Generator().manual_seed(dist.offset_seed(ctx.seed + 7))
        bs = dist.split_batch(int(p["batch_size"]), "params.batch_size")  # this rank's share
        n_fresh = max(1, int(round(bs * float(p["fresh_fraction"])))) if pool.capacity > 0 else bs
        log_every = max(1, int(p["log_every"]))
        eval_every = int(ctx.config.get("curve_eval_every", 0) or 0)
        ctx.extra["students"] = students
        ctx.extra["strategy"] = strategy

        acc_terms: dict = {}
        acc_align = torch.zeros((), device=device)
        count = 0
        parts_to_save = {"students": students, "opt": opt, "strategy": strategy, "align": align}
        if sched is not None:
            parts_to_save["sched"] = sched
        ckpt = ctx.checkpointer
        start = 0
        saved = ckpt.load() if ckpt is not None else None
        if saved is not None:
            _check_world(saved, ckpt)
            start = self._restore(saved, parts_to_save, pool, gen, ctx)
            _restore_rank(saved, pool, gen, strategy, ctx)
        last_eval = start
        encode = students  # encode(images, modality): the encoders' training forward pass
        align_params = list(align.parameters())
        if dist.active():
            encode = _distribute(students, strategy)
        if 0 < eval_every <= rounds and start == 0:  # where the students start, before any training
            ctx.log_curve({"round": 0, "test mAP@all": self._monitor(ctx, students, p["readout"])})
        with ctx.reporter.task(f"{self.name} training", total=rounds) as task:
            if start:
                task.advance(start)
                task.note(f"resumed at round {start}")
            for r in range(start, rounds):
                with perf.autocast():
                    batch = strategy.synthesize(students)
                parts = getattr(strategy, "last_parts", {})
                for k, v in parts.items():
                    acc_terms[k] = acc_terms.get(k, 0) + v
                pool.add(batch)
                ctx.extra["last_batch"] = batch
                students.train()
                if freeze_bn:
                    for mod in bn_layers:
                        mod.eval()
                for _ in range(int(p["encoder_steps"])):
                    b = self._encoder_batch(batch, pool, n_fresh, bs, gen)
                    with perf.autocast():
                        e_p = encode(b.photo, "photo")
                        e_s = encode(b.sketch, "sketch")
                        if getattr(align, "uses_teacher_logits", False):
                            loss = align(e_p, e_s, b.photo_labels, b.sketch_labels, **self._teacher_logits(ctx, b, p["variant"]))
                        else:
                            loss = align(e_p, e_s, b.photo_labels, b.sketch_labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if align_params:
                        dist.average_gradients(align_params)  # no-op in a single process
                    opt.step()
                    if sched is not None:
                        sched.step()
                    acc_align = acc_align + loss.detach()
                if dist.active():
                    dist.average_batchnorm(students.encoders)  # every rank holds the same students
                count += 1
                task.advance(1)
                if (r + 1) % log_every == 0 or r + 1 == rounds:
                    values = {"align": float(acc_align) / (count * int(p["encoder_steps"]))}
                    values.update({f"term/{k}": float(v) / count for k, v in acc_terms.items()})
                    row = {"round": r + 1, **dist.mean_floats(values)}  # means over the ranks
                    if eval_every > 0 and (r + 1) // eval_every > last_eval // eval_every:
                        row["test mAP@all"] = self._monitor(ctx, students, p["readout"])
                        last_eval = r + 1
                    bad = [k for k, v in row.items() if k != "round" and not math.isfinite(v)]
                    if bad:
                        raise TrainingDivergedError(
                            f"Training diverged at round {r + 1}: the loss {bad[0]} became {row[bad[0]]}. "
                            "Lower the learning rates (params.optimizer.lr, params.inversion.optimizer.lr) or the "
                            "weights of the synthesis terms (params.weights.*), then run again."
                        )
                    ctx.log_curve(row)
                    task.note(f"align {row['align']:.3f}")
                    acc_terms, acc_align, count = {}, torch.zeros((), device=device), 0
                    if ckpt is not None and r + 1 < rounds and ckpt.due(r + 1):
                        if dist.active():  # rank 0 writes every rank's own streams and pool
                            snap = self._snapshot(r + 1, parts_to_save, pool, gen, ctx) if dist.is_main() else {"round": r + 1}
                            snap["world_size"] = dist.world()
                            snap["ranks"] = dist.gather_objects(_rank_state(pool, gen, strategy))
                            ckpt.save(snap)
                        else:
                            ckpt.save(self._snapshot(r + 1, parts_to_save, pool, gen, ctx))
        return StudentEmbedder(students, p["readout"])

    @staticmethod
    def _monitor(ctx, students, readout: str) -> float:
        """Test mAP@all of the students as they are now, for the curves only (never for picking a
        model). Embedding runs in eval mode under no_grad and draws no random numbers, so training
        goes on exactly as without it; the train/eval mode of every module is restored."""
        from dfbench.evaluation import evaluate_embedder

        modes = {m: m.training for m in students.modules()}
        metrics = evaluate_embedder(StudentEmbedder(students, readout), ctx.benchmark, ctx.device, int(ctx.config["eval"]["batch_size"]))
        for m, mode in modes.items():
            m.training = mode
        return float(metrics["mAP@all"])

    @staticmethod
    def _snapshot(round_done: int, parts: dict, pool: ReplayPool, gen, ctx) -> dict:
        return {
            "round": round_done,
            "parts": {k: v.state_dict() for k, v in parts.items()},
            "pool": pool.state_dict(),
            "engine_generator": gen.get_state(),
            "curves": list(ctx.curves),
        }

    @staticmethod
    def _restore(saved: dict, parts: dict, pool: ReplayPool, gen, ctx) -> int:
        from dfbench.checkpoint import set_rng_state

        for k, v in parts.items():
            v.load_state_dict(saved["parts"][k])
        pool.load_state_dict(saved["pool"], ctx.device)
        gen.set_state(saved["engine_generator"])
        ctx.curves[:] = saved["curves"]
        set_rng_state(saved["rng"])
        return int(saved["round"])

    @staticmethod
    def _encoder_batch(fresh: SynthBatch, pool: ReplayPool, n_fresh: int, bs: int, gen) -> SynthBatch:
        if pool.capacity <= 0 or len(pool) == 0:
            if len(fresh) >= bs:
                return fresh
            idx = torch.randint(0, len(fresh), (bs,), generator=gen).to(fresh.photo.device)
            return fresh.index(idx)
        n_fresh = min(n_fresh, len(fresh))
        idx = torch.randperm(len(fresh), generator=gen)[:n_fresh].to(fresh.photo.device)
        a = fresh.index(idx)
        if bs - n_fresh <= 0:
            return a
        b = pool.sample(bs - n_fresh, gen)
        return concat_batches(a, b)

    @staticmethod
    @torch.no_grad()
    def _teacher_logits(ctx, b: SynthBatch, variant: str) -> dict:
        """The judging teachers' logits of a batch (for losses with ``uses_teacher_logits``):
        the batch's own when its strategy filled them, else one frozen-teacher pass."""
        out = {}
        for m in ("photo", "sketch"):
            logits = getattr(b, f"{m}_logits")
            if logits is None:
                logits = ctx.teachers.for_modality(m, variant)(getattr(b, m))
            out[f"{m}_logits"] = logits
        return out


# ---- data-parallel runs (torchrun; see dfbench.distributed and docs/scaling.md) ------------------
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
    from dfbench.errors import ConfigError
    from dfbench.inversion import InversionStrategy

    if getattr(type(strategy), "distribute", InversionStrategy.distribute) is InversionStrategy.distribute:
        trained = dist.trainable_parts(strategy)
        if trained:
            raise ConfigError(
                f"The inversion strategy '{getattr(strategy, 'name', type(strategy).__name__)}' trains "
                f"{', '.join(trained)} but does not support distributed runs yet (it has no "
                "distribute() method, see dfbench.inversion.InversionStrategy.distribute). Run it in one "
                "process (without torchrun), or shard a suite over machines with 'dfbench bench --shard i/n'."
            )
    else:
        strategy.distribute(dist.wrap)
    # BatchNorm statistics: averaged over the ranks after each round's encoder steps
    encoders = {m: dist.wrap(enc, broadcast_buffers=False) for m, enc in students.encoders.items()}
    return lambda x, m: encoders[m](x)


def _rank_state(pool: ReplayPool, gen, strategy) -> dict:
    """What differs between ranks: the replay pool and every random stream."""
    from dfbench.checkpoint import rng_state

    return {
        "pool": pool.state_dict(),
        "engine_generator": gen.get_state(),
        "generators": {k: g.get_state() for k, g in dist.generators_of(strategy).items()},
        "rng": rng_state(),
    }


def _check_world(saved: dict, ckpt) -> None:
    saved_world = int(saved.get("world_size", 1))
    if saved_world != dist.world():
        raise ConfigError(
            f"The checkpoint {ckpt.path} was written by a run with {saved_world} process(es) and this run has "
            f"{dist.world()}: resume it with the same number of processes, or delete the checkpoint to start over."
        )


def _restore_rank(saved: dict, pool: ReplayPool, gen, strategy, ctx) -> None:
    """This rank's pool and random streams from a checkpoint of a data-parallel run."""
    ranks = saved.get("ranks")
    if not ranks:
        return
    from dfbench.checkpoint import set_rng_state

    mine = ranks[dist.rank()]
    pool.load_state_dict(mine["pool"], ctx.device)
    gen.set_state(mine["engine_generator"])
    for k, g in dist.generators_of(strategy).items():
        if k in mine["generators"]:
            g.set_state(mine["generators"][k])
    set_rng_state(mine["rng"])
