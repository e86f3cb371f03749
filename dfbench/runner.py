"""Runs one method on one dataset with one seed, and writes its record.

The runner owns everything a method should not: names, config, seeds, device, data, teachers,
evaluation, timings and the record. Methods only ``fit``.
"""

from __future__ import annotations

import csv
import io
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from dfbench import config as cfgmod
from dfbench import distributed as dist
from dfbench import queries as queries_file
from dfbench import subset
from dfbench.errors import ConfigError, DfbenchError
from dfbench.progress import Reporter
from dfbench.records import SCHEMA, artifacts_dir, environment, now, read_record, record_path, write_record


@dataclass
class RunRequest:
    method: str
    dataset: str = "shapes"
    profile: str = "cpu"
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    results: Path = Path("results")
    cache_dir: Path | None = None
    force: bool = False
    skip_bad_images: bool = False
    suite: dict | None = None  # {name, label, seeds} when run by 'dfbench bench'
    limit: int | None = None  # --limit: first N images per class of every split (dfbench.subset)


@dataclass
class RunOutcome:
    record: dict
    path: Path
    skipped: bool = False


def resolve_request(req: RunRequest) -> tuple[dict, object]:
    """Resolved config and the method object of a request (raises on bad names or keys)."""
    from dfbench.plugins import registry

    file_cfg = cfgmod.load_yaml(req.config_file) if req.config_file else {}
    overrides = cfgmod.parse_set(req.overrides)
    method_name = req.method or file_cfg.get("method")
    if not method_name:
        raise DfbenchError("No method given: pass --method NAME (see 'dfbench list --kind methods').")
    dataset_name = req.dataset or file_cfg.get("dataset") or "shapes"
    profile = req.profile or file_cfg.get("profile") or "cpu"
    method_cls = registry("methods").load(method_name)
    registry("datasets").get(dataset_name)  # unknown names fail before any work
    if req.data_root:
        overrides = cfgmod.deep_merge(overrides, {"data": {"root": str(req.data_root)}})
    if req.skip_bad_images:
        overrides = cfgmod.deep_merge(overrides, {"data": {"skip_bad_images": True}})
    cfg = cfgmod.resolve(
        method=method_name,
        dataset=dataset_name,
        profile=profile,
        seed=req.seed,
        device=req.device,
        method_profiles=getattr(method_cls, "profiles", {}),
        file_config=file_cfg,
        overrides=overrides,
    )
    registry("teachers").get(cfg["teachers"]["loader"])
    return subset.with_limit(cfg, req.limit), method_cls()


def load_benchmark(cfg: dict, cache_dir: Path):
    from dfbench.datasets import DatasetOptions
    from dfbench.plugins import registry

    plugin = registry("datasets").load(cfg["dataset"])()
    opts = DatasetOptions(
        data_root=Path(cfg["data"]["root"]).expanduser() if cfg["data"]["root"] else None,
        image_size=int(cfg["data"]["image_size"]),
        seed=int(cfg["data"]["seed"]),
        cache_dir=cache_dir,
        skip_bad_images=bool(cfg["data"]["skip_bad_images"]),
        extra=dict(cfg["data"]["options"]),
    )
    return subset.apply(plugin.load(opts), cfg["data"].get("limit"))


def execute(req: RunRequest, reporter: Reporter | None = None) -> RunOutcome:
    reporter = reporter or Reporter()
    cfg, method = resolve_request(req)
    return execute_resolved(cfg, method, req, reporter)


def execute_resolved(cfg: dict, method, req: RunRequest, reporter: Reporter) -> RunOutcome:
    from dfbench.datasets import default_cache_dir

    chash = cfgmod.config_hash(cfg)
    rid = cfgmod.run_id(cfg)
    path = record_path(req.results, cfg["dataset"], cfg["method"], rid)
    existing = read_record(path)
    if dist.requested():  # under torchrun: start the process group; every rank follows rank 0's results
        from dfbench.reproducibility import choose_device

        dist.init(choose_device(cfg["device"]))
        existing = dist.broadcast_object(existing)
    if existing is not None and existing.get("status") == "completed" and not req.force:
        return RunOutcome(existing, path, skipped=True)

    import torch

    from dfbench.checkpoint import Checkpointer
    from dfbench.context import RunContext
    from dfbench.evaluation import evaluate_embedder
    from dfbench.plugins import registry
    from dfbench.reproducibility import choose_device, make_deterministic, seed_everything

    device = dist.init(choose_device(cfg["device"]))  # under torchrun: this rank's device
    cache_dir = Path(req.cache_dir) if req.cache_dir else default_cache_dir()
    art = artifacts_dir(req.results, cfg["dataset"], cfg["method"], rid)
    record = {
        **_record_head(cfg, rid, "running"),
        "config": cfg,
        "config_hash": chash,
        "teachers": {},
        "timing": {},
        "env": environment(device),
        "world_size": dist.world(),
        "started_at": now(),
        "finished_at": None,
        "artifacts": str(art.relative_to(req.results)) if art.is_relative_to(req.results) else str(art),
    }
    if dist.active():
        record["env"]["backend"] = dist.backend()
    from dfbench.perf import Perf

    record["env"]["perf"] = Perf.from_config(cfg.get("perf"), device).describe()  # what was applied
    if req.suite:
        record["suite"] = req.suite
    timing = record["timing"]
    t_start = time.perf_counter()
    seed_everything(cfg["seed"])
    make_deterministic(device)
    ctx = None
    training = False  # errors before training (data, teachers) are input errors, not results
    try:
        t = time.perf_counter()
        with dist.main_first():  # data generated and cached once, by rank 0
            benchmark = load_benchmark(cfg, cache_dir)
        timing["data"] = round(time.perf_counter() - t, 3)
        record["data"] = {"classes": benchmark.classes, "counts": benchmark.counts(), "info": benchmark.info}
        ctx = RunContext(config=cfg, device=device, benchmark=benchmark, cache_dir=cache_dir, reporter=reporter, artifacts_dir=art)
        ctx.checkpointer = Checkpointer(art / "checkpoint.pt", int(cfg["checkpoint_every"]), chash)

        t = time.perf_counter()
        roles = method.teacher_roles(cfg["params"])
        loader = registry("teachers").load(cfg["teachers"]["loader"])()
        with dist.main_first():  # teachers trained and cached once, by rank 0; the others load them
            ctx.teachers = loader.load(ctx, roles)
        if dist.active():
            for model in ctx.teachers.models.values():
                dist.sync_module(model)  # rank 0's teachers everywhere, even without a shared cache
        timing["teachers"] = round(time.perf_counter() - t, 3)
        record["teachers"] = {
            role: {"accuracy": ctx.teachers.accuracy.get(role), **ctx.teachers.info.get(role, {})} for role in sorted(ctx.teachers.models)
        }

        seed_everything(cfg["seed"])  # training starts from the same state whether teachers were cached or not
        t = time.perf_counter()
        training = True
        embedder = method.fit(ctx)
        timing["train"] = round(time.perf_counter() - t, 3)

        t = time.perf_counter()
        embeddings: dict = {}
        metrics = evaluate_embedder(embedder, benchmark, device, int(cfg["eval"]["batch_size"]), reporter, keep=embeddings)
        timing["eval"] = round(time.perf_counter() - t, 3)
        record["metrics"] = {k: float(metrics[k]) for k in ("mAP@all", "mAP@200", "P@100", "P@200")}
        record["status"] = "completed"
        if ctx.checkpointer.resumed_from is not None:
            record["resumed_from_round"] = ctx.checkpointer.resumed_from
        if dist.is_main():  # only rank 0 writes files
            _write_artifacts(art, benchmark, ctx)
            record["pictures"] = _write_pictures(art, benchmark, ctx, embeddings)
            record["per_query"] = queries_file.save(art, embeddings)  # each query's AP and top gallery ids
    except DfbenchError as exc:
        # a run that diverged (or failed while training or evaluating) is a result: record it;
        # bad input (data, teachers, config) is the user's to fix: no record, nothing written
        if training and not isinstance(exc, ConfigError):
            _finish_failed(record, path, timing, t_start, exc, ctx, art)
        raise
    except KeyboardInterrupt as exc:
        # the checkpoint (if any) stays; no record: the run is not over
        ckpt = ctx.checkpointer if ctx is not None else None
        exc.dfbench_checkpoint = (ckpt.path, ckpt.last_round, ckpt.every) if ckpt is not None else None
        raise
    except Exception as exc:  # a bug or a crash in a plugin: keep the record, then let it surface
        _finish_failed(record, path, timing, t_start, exc, ctx, art, tb=traceback.format_exc())
        raise
    timing["total"] = round(time.perf_counter() - t_start, 3)
    record["finished_at"] = now()
    if dist.is_main():
        write_record(path, record)
    ctx.checkpointer.remove()  # the record is the result now (rank 0 only)
    dist.barrier()  # every rank returns once the record exists
    return RunOutcome(record, path)


def _finish_failed(record, path, timing, t_start, exc, ctx, art, tb=None):
    # only failures that happen after the data loaded are results worth recording (by rank 0)
    if ctx is None or not dist.is_main():
        return
    record["status"] = "failed"
    record["error"] = f"{type(exc).__name__}: {exc}"
    if tb:
        record["traceback"] = tb
    timing["total"] = round(time.perf_counter() - t_start, 3)
    record["finished_at"] = now()
    try:
        _write_artifacts(art, ctx.benchmark, ctx)
    except Exception:
        pass
    write_record(path, record)


def _write_artifacts(art: Path, benchmark, ctx) -> None:
    from dfbench.fileio import atomic_write_json, atomic_write_text

    art.mkdir(parents=True, exist_ok=True)
    if benchmark.split_manifest:
        atomic_write_json(art / "split.json", benchmark.split_manifest)
    if ctx is not None and ctx.curves:
        from dfbench.pictures import curve_columns

        keys = ["round", *curve_columns(ctx.curves)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(ctx.curves)
        atomic_write_text(art / "curves.csv", buf.getvalue())


def _record_head(cfg: dict, rid: str, status: str) -> dict:
    """The fields every record starts with."""
    return {
        "schema": SCHEMA,
        "run_id": rid,
        "method": cfg["method"],
        "dataset": cfg["dataset"],
        "profile": cfg["profile"],
        "seed": cfg["seed"],
        "status": status,
        "error": None,
        "metrics": {},
    }


def write_early_failure(cfg: dict, req: RunRequest, exc: BaseException) -> Path:
    """Record a run that failed before training started (bench mode: the grid goes on)."""
    rid = cfgmod.run_id(cfg)
    path = record_path(req.results, cfg["dataset"], cfg["method"], rid)
    record = {
        **_record_head(cfg, rid, "failed"),
        "error": f"{type(exc).__name__}: {exc}",
        "config": cfg,
        "config_hash": cfgmod.config_hash(cfg),
        "teachers": {},
        "timing": {},
        "world_size": 1,
        "started_at": now(),
        "finished_at": now(),
    }
    if req.suite:
        record["suite"] = req.suite
    write_record(path, record)
    return path


def _write_pictures(art: Path, benchmark, ctx, emb: dict) -> list[str]:
    """Pairs, retrieval panel and curves as PNG (names relative to the run's folder)."""
    import warnings

    from dfbench import pictures

    made = []
    try:
        batch = ctx.extra.get("last_batch")
        if batch is not None:
            pictures.save_pairs(batch.photo, batch.sketch, art / "pairs.png", (batch.photo_labels, batch.sketch_labels), benchmark.classes, title=pictures.run_title(ctx))
            made.append("pairs.png")
        if emb:
            picks, top_idx = pictures.retrieval_examples(emb["queries"], emb["query_labels"], emb["gallery"], emb["gallery_labels"])
            qset, gset = benchmark.get("test", "sketch"), benchmark.get("test", "photo")
            needed = sorted(set(top_idx.flatten().tolist()))
            gallery_imgs = dict(zip(needed, gset.batch(needed)))
            pictures.save_retrieval(
                qset.batch(picks.tolist()), qset.labels[picks], gallery_imgs, gset.labels, top_idx, art / "retrieval.png",
                aps=emb["AP"][picks] if "AP" in emb else None, title=pictures.run_title(ctx),
            )
            made.append("retrieval.png")
        if ctx.curves and pictures.save_curves(ctx.curves, art / "curves.png"):
            made.append("curves.png")
    except Exception as exc:  # pictures are a convenience: never lose a result over one
        warnings.warn(f"could not draw the pictures of this run: {type(exc).__name__}: {exc}")
    return made
