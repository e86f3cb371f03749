"""Runs one method on one dataset with one seed, and writes its record.

The runner owns everything a method should not: names, config, seeds, device, data, teachers,
evaluation, timings and the record. Methods only ``fit``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from dfbench import config as cfgmod
from dfbench import distributed as dist
from dfbench import queries as queries_file
from dfbench import subset
from dfbench.errors import ConfigError, DfbenchError, OutputPathError
from dfbench.progress import Reporter
from dfbench.records import METRIC_KEYS, SCHEMA, artifacts_dir, environment, is_completed, now, read_record, record_path, write_record


@dataclass
class RunRequest:
    method: str | None
    # None: the config file's top-level key, else the default (shapes, cpu, 0, auto)
    dataset: str | None = None
    profile: str | None = None
    seed: int | None = None
    device: str | None = None
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
    """Resolved config and the method object of a request (raises on bad names, keys or values).

    The method, dataset, profile, seed and device come from the command line, else from the
    config file's top-level keys, else their defaults; a file that names another value than the
    command line is an error, not silently overruled."""
    from dfbench.plugins import registry

    file_cfg = _load_config_file(req.config_file) if req.config_file else {}
    overrides = cfgmod.parse_set(req.overrides)
    head = {}
    for key, default in (("method", None), ("dataset", "shapes"), ("profile", "cpu"), ("seed", 0), ("device", "auto")):
        given, written = getattr(req, key), file_cfg.get(key)
        if given is not None and written is not None and given != written:
            raise ConfigError(
                f"The config file {req.config_file} sets {key}: {written!r} but the command line gives "
                f"{given!r}. Remove one of them (the file's top-level '{key}' or the --{key} option)."
            )
        head[key] = given if given is not None else written if written is not None else default
    if not head["method"]:
        raise DfbenchError("No method given: pass --method NAME (see 'dfbench list --kind methods').")
    method_cls = registry("methods").load(head["method"])
    registry("datasets").get(head["dataset"])  # unknown names fail before any work
    if req.data_root:
        overrides = cfgmod.deep_merge(overrides, {"data": {"root": str(req.data_root)}})
    if req.skip_bad_images:
        overrides = cfgmod.deep_merge(overrides, {"data": {"skip_bad_images": True}})
    if req.limit is not None:
        overrides = cfgmod.deep_merge(overrides, {"data": {"limit": req.limit}})
    cfg = cfgmod.resolve(
        **head,
        method_profiles=getattr(method_cls, "profiles", {}),
        method_cls=method_cls,
        file_config=file_cfg,
        overrides=overrides,
    )
    return cfg, method_cls()


def dataset_options(cfg: dict, cache_dir: Path | None):
    from dfbench.datasets import DatasetOptions

    return DatasetOptions(
        data_root=Path(cfg["data"]["root"]).expanduser() if cfg["data"]["root"] else None,
        image_size=int(cfg["data"]["image_size"]),
        seed=int(cfg["data"]["seed"]),
        cache_dir=cache_dir,
        skip_bad_images=bool(cfg["data"]["skip_bad_images"]),
        extra=dict(cfg["data"]["options"]),
    )


def _load_config_file(path: str) -> dict:
    """The YAML config file at ``path``; a file that is not text is a one-paragraph error."""
    try:
        return cfgmod.load_yaml(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file {path} is not UTF-8 text (byte {exc.start} cannot be decoded): is it the right "
            "file? Save the config as plain UTF-8 YAML."
        ) from None


def load_benchmark(cfg: dict, cache_dir: Path):
    from dfbench.plugins import registry

    plugin = registry("datasets").load(cfg["dataset"])()
    return subset.apply(plugin.load(dataset_options(cfg, cache_dir)), cfg["data"].get("limit"))


def data_identity(cfg: dict) -> dict | None:
    """Where the data of a run lies and which revision of its content it is, when the run names a
    data root (None for a dataset's default data: generated, or under $DFBENCH_DATA).

    Part of a run's identity (:func:`run_identity`): the same config on another data root, or on
    the same root after its content changed, is another run with its own record. The revision comes
    from the dataset's ``revision(options)`` when it has one (the ``folder`` datasets list the files,
    without decoding them); bad data fails here, before anything is written."""
    root = cfg["data"]["root"]
    if not root:
        return None
    from dfbench.plugins import registry

    plugin = registry("datasets").load(cfg["dataset"])()
    revision_of = getattr(plugin, "revision", None)
    revision = revision_of(dataset_options(cfg, None)) if callable(revision_of) else None
    return {"root": str(Path(root).expanduser().resolve()), "revision": revision}


def run_identity(cfg: dict, data: dict | None) -> str:
    """The run id: ``<config_hash>-s<seed>`` for a dataset's default data (the ids of every record
    made before data roots entered the identity), ``<config_hash>-d<digest>-s<seed>`` for a data
    root, where the digest covers the resolved root and the content revision."""
    if data is None:
        return cfgmod.run_id(cfg)
    digest = hashlib.sha256(cfgmod.canonical_json(data).encode()).hexdigest()[:8]
    return f"{cfgmod.config_hash(cfg)}-d{digest}-s{cfg['seed']}"


def planned_run_id(cfg: dict) -> str:
    """The run id under which a grid lists, skips and records a run: for data that cannot be read
    (its error is recorded as the run's failure), the id of its root without a revision."""
    try:
        return run_identity(cfg, data_identity(cfg))
    except DfbenchError:
        return run_identity(cfg, {"root": str(Path(cfg["data"]["root"]).expanduser().resolve()), "revision": None})


def preflight(req: RunRequest, record: Path, art: Path) -> Path:
    """Check every folder the run will write (results, its run folder, the cache) before any work,
    so a read-only or misnamed folder is an error up front, never a run lost at its end."""
    from dfbench.datasets import default_cache_dir
    from dfbench.fileio import check_writable_dir

    check_writable_dir(req.results, "results folder", "--results")
    check_writable_dir(art, "run folder", "--results")
    for target in (record, art / "checkpoint.pt"):
        if target.is_dir():
            raise OutputPathError(
                f"{target} is a folder, so the run could not write its file there. Move or remove that "
                "folder (or pass another --results)."
            )
    cache_dir = Path(req.cache_dir) if req.cache_dir else default_cache_dir()
    check_writable_dir(cache_dir, "cache folder", "--cache-dir (or $DFBENCH_CACHE)")
    return cache_dir


def components_used(cfg: dict) -> dict:
    """The plugin, distribution and version of every component the run uses (the record names the
    code behind its number; a plugin can never stand in for another unseen)."""
    from dfbench.plugins import component_origin

    used = {"method": ("methods", cfg["method"]), "dataset": ("datasets", cfg["dataset"]),
            "teachers": ("teachers", cfg["teachers"]["loader"])}
    params = cfg.get("params") or {}
    if isinstance(params.get("inversion"), dict) and params["inversion"].get("strategy"):
        used["inversion"] = ("inversions", params["inversion"]["strategy"])
    if isinstance(params.get("alignment"), dict) and params["alignment"].get("loss"):
        used["alignment"] = ("losses", params["alignment"]["loss"])
    return {role: component_origin(kind, name) for role, (kind, name) in used.items()}


def check_finite_metrics(metrics: dict) -> None:
    """A metric that is NaN or infinite is no result: the run is recorded as failed."""
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise MetricsNotFiniteError(
            "The evaluation gave non-finite metrics ("
            + ", ".join(f"{k} = {v}" for k, v in bad.items())
            + "): the students' embeddings hold NaN or infinite values. The run is recorded as failed, "
            "not as a result. Lower the learning rates (params.optimizer.lr) and run again."
        )


class MetricsNotFiniteError(DfbenchError):
    """The evaluation of a trained model gave a NaN or infinite metric."""


def execute(req: RunRequest, reporter: Reporter | None = None) -> RunOutcome:
    reporter = reporter or Reporter()
    cfg, method = resolve_request(req)
    return execute_resolved(cfg, method, req, reporter)


def execute_resolved(cfg: dict, method, req: RunRequest, reporter: Reporter) -> RunOutcome:
    chash = cfgmod.config_hash(cfg)
    data_id = data_identity(cfg)
    rid = run_identity(cfg, data_id)
    path = record_path(req.results, cfg["dataset"], cfg["method"], rid)
    existing = read_record(path)
    if dist.requested():  # under torchrun: start the process group; every rank follows rank 0's results
        from dfbench.reproducibility import choose_device

        dist.init(choose_device(cfg["device"]))
        existing = dist.broadcast_object(existing)
    if is_completed(existing) and not req.force:
        return RunOutcome(existing, path, skipped=True)
    art = artifacts_dir(req.results, cfg["dataset"], cfg["method"], rid)
    cache_dir = preflight(req, path, art)
    components = components_used(cfg)

    import torch

    from dfbench.checkpoint import Checkpointer
    from dfbench.context import RunContext
    from dfbench.evaluation import evaluate_embedder
    from dfbench.plugins import registry
    from dfbench.reproducibility import choose_device, make_deterministic, seed_everything

    device = dist.init(choose_device(cfg["device"]))  # under torchrun: this rank's device
    record = {
        **_record_head(cfg, rid, "running"),
        "config": cfg,
        "config_hash": chash,
        "components": components,
        "teachers": {},
        "timing": {},
        "env": environment(device),
        "world_size": dist.world(),
        "started_at": now(),
        "finished_at": None,
        "artifacts": str(art.relative_to(req.results)) if art.is_relative_to(req.results) else str(art),
    }
    if data_id is not None:
        record["data_identity"] = data_id
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
        scores = {k: float(metrics[k]) for k in METRIC_KEYS}
        check_finite_metrics(scores)  # a NaN is a failed run (its record holds no metric), never a result
        record["metrics"] = scores
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
        # name the checkpoint only when a rerun can resume from it (never a foreign or refused file)
        exc.dfbench_checkpoint = (ckpt.path if ckpt.resumable else None, ckpt.last_round, ckpt.every) if ckpt is not None else None
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
    rid = planned_run_id(cfg)
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
        batch = ctx.last_batch
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
