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

import torch

from dfbench.errors import ConfigError, TrainingDivergedError
from dfbench.inversion import ReplayPool, SynthBatch, concat_batches, resolve_options as inversion_options
from dfbench.methods import Method
from dfbench.students import StudentEmbedder, Students
from dfbench.teachers import roles_for_variant
from dfbench.terms import NEEDS_MODALITY_TEACHER, check_weights

DATA_FREE_BASE = {
    "variant": "unified",  # teacher variant: unified | independent
    "inversion": {"strategy": "estimators"},
    "weights": {},
    "alignment": {"loss": "proxy-anchor"},
    "rounds": 200,
    "encoder_steps": 1,  # encoder steps per round
    "batch_size": 64,  # encoder batch (pairs)
    "fresh_fraction": 0.5,  # share of each encoder batch from the newest synthesised batch
    "replay_size": 0,  # pairs kept for replay (0: no pool, only the fresh batch)
    "optimizer": {"name": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0},
    "schedule": "cosine",  # encoder learning-rate schedule: cosine | constant
    "readout": "raw",  # raw | proxy (see dfbench.students)
    "proxy_scale": 32.0,  # scale of the students' cosine class logits
    "init_from_teachers": False,  # initialise the encoders from the teachers' backbones
    "log_every": 10,
}


def build_optimizer(params, ocfg: dict):
    name = ocfg.get("name", "adam")
    lr = float(ocfg["lr"])
    wd = float(ocfg.get("weight_decay", 0.0))
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=tuple(ocfg.get("betas", (0.9, 0.999))))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(ocfg.get("momentum", 0.9)), weight_decay=wd)
    raise ConfigError(f"Unknown optimizer '{name}': use adam, adamw or sgd.")


class DataFreeMethod(Method):
    """Base of every data-free method: subclasses only declare ``profiles``."""

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
        strategy = strategy_cls(ctx, inversion_options(strategy_cls, p["inversion"]), weights, p["variant"])
        from dfbench.alignment import resolve_options as alignment_options

        loss_cls = registry("losses").load(p["alignment"]["loss"])
        align = loss_cls(ctx, alignment_options(loss_cls, p["alignment"]), students)

        opt = build_optimizer(list(students.encoders.parameters()) + list(align.parameters()), p["optimizer"])
        rounds = int(p["rounds"])
        steps = max(1, rounds * int(p["encoder_steps"]))
        if p["schedule"] == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        elif p["schedule"] == "constant":
            sched = None
        else:
            raise ConfigError(f"Unknown schedule '{p['schedule']}': use cosine or constant.")
        pool = ReplayPool(int(p["replay_size"]))
        gen = torch.Generator().manual_seed(ctx.seed + 7)
        bs = int(p["batch_size"])
        n_fresh = max(1, int(round(bs * float(p["fresh_fraction"])))) if pool.capacity > 0 else bs
        log_every = max(1, int(p["log_every"]))
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
            start = self._restore(saved, parts_to_save, pool, gen, ctx)
        with ctx.reporter.task(f"{self.name} training", total=rounds) as task:
            if start:
                task.advance(start)
                task.note(f"resumed at round {start}")
            for r in range(start, rounds):
                batch = strategy.synthesize(students)
                parts = getattr(strategy, "last_parts", {})
                for k, v in parts.items():
                    acc_terms[k] = acc_terms.get(k, 0) + v
                pool.add(batch)
                ctx.extra["last_batch"] = batch
                students.train()
                for _ in range(int(p["encoder_steps"])):
                    b = self._encoder_batch(batch, pool, n_fresh, bs, gen)
                    e_p = students(b.photo, "photo")
                    e_s = students(b.sketch, "sketch")
                    if getattr(align, "uses_teacher_logits", False):
                        loss = align(e_p, e_s, b.photo_labels, b.sketch_labels, **self._teacher_logits(ctx, b, p["variant"]))
                    else:
                        loss = align(e_p, e_s, b.photo_labels, b.sketch_labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if sched is not None:
                        sched.step()
                    acc_align = acc_align + loss.detach()
                count += 1
                task.advance(1)
                if (r + 1) % log_every == 0 or r + 1 == rounds:
                    row = {"round": r + 1, "align": float(acc_align) / (count * int(p["encoder_steps"]))}
                    row.update({f"term/{k}": float(v) / count for k, v in acc_terms.items()})
                    bad = [k for k, v in row.items() if k != "round" and not math.isfinite(v)]
                    if bad:
                        raise TrainingDivergedError(
                            f"Training diverged at round {r + 1}: the loss {bad[0]} became {row[bad[0]]}. "
                            "Lower the learning rates (params.optimizer.lr, params.inversion.lr) or the "
                            "weights of the synthesis terms, then run again."
                        )
                    ctx.log_curve(row)
                    task.note(f"align {row['align']:.3f}")
                    acc_terms, acc_align, count = {}, torch.zeros((), device=device), 0
                    if ckpt is not None and r + 1 < rounds and ckpt.due(r + 1):
                        ckpt.save(self._snapshot(r + 1, parts_to_save, pool, gen, ctx))
        return StudentEmbedder(students, p["readout"])

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
