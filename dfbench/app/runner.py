"""Runs one method on one dataset with one seed, and writes its record.

The runner owns everything a method should not: names, config, seeds, device, data, teachers,
evaluation, timings and the record. Methods only ``fit``.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import io
import json
import math
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dfbench.app import config as cfgmod
from dfbench.train import distributed as dist
from dfbench.app import queries as queries_file
from dfbench.app import interrupts
from dfbench.train import subset
from dfbench.api.errors import ConfigError, DfbenchError, OutputPathError
from dfbench.api.progress import Reporter
from dfbench.app.records import METRIC_KEYS, SCHEMA, artifacts_dir, environment, is_completed, now, read_record, record_path, write_record


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
    config: dict | None = None  # the config file's content as a dict (dfbench.run(config={...}))
    shard_seat: object = None  # dfbench.app.shards.ShardSeat of a shard of a suite: its share of the cores
    overrides: list[str] = field(default_factory=list)
    results: Path = Path("results")
    cache_dir: Path | None = None
    force: bool = False
    skip_bad_images: bool = False
    suite: dict | None = None  # {name, label, seeds} when run by 'dfbench bench'
    limit: int | None = None  # --limit: first N images per class of every split (dfbench.train.subset)


@dataclass
class RunOutcome:
    """What one run gave: its record (the JSON written at ``path``, schema ``dfbench.run/1``) and
    whether it was skipped because a completed record existed."""

    record: dict
    path: Path
    skipped: bool = False

    @property
    def status(self) -> str:
        return self.record.get("status", "")

    def completed(self) -> bool:
        """A valid completed record (the metrics are there and finite): what makes a run done."""
        from dfbench.app.records import is_completed

        return is_completed(self.record)

    def failed(self) -> bool:
        """A recorded failure (diverged, non-finite metrics): a result, with its error."""
        return self.status == "failed"

    @property
    def metrics(self) -> dict:
        return self.record.get("metrics") or {}


def resolve_request(req: RunRequest) -> tuple[dict, object]:
    """Resolved config and the method object of a request (raises on bad names, keys or values).

    The method, dataset, profile, seed and device come from the command line, else from the
    config file's top-level keys, else their defaults; a file that names another value than the
    command line is an error, not silently overruled."""
    from dfbench.api.plugins import registry

    if req.config_file and req.config is not None:
        raise ConfigError("Give the config as a file or as a dict, not both.")
    file_cfg = _load_config_file(req.config_file) if req.config_file else copy.deepcopy(dict(req.config or {}))
    overrides = cfgmod.parse_set(req.overrides)
    head = {}
    for key, default in (("method", None), ("dataset", None), ("profile", "cpu"), ("seed", 0), ("device", "auto")):
        given, written = getattr(req, key), file_cfg.get(key)
        if given is not None and written is not None and given != written:
            raise ConfigError(
                f"The config {f'file {req.config_file}' if req.config_file else 'given'} sets {key}: {written!r} but the command line gives "
                f"{given!r}. Remove one of them (the file's top-level '{key}' or the --{key} option)."
            )
        head[key] = given if given is not None else written if written is not None else default
    if head["dataset"] is None:  # the dataset its plugin declared the default
        head["dataset"] = registry("datasets").default_name()
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
    from dfbench.api.datasets import DatasetOptions

    return DatasetOptions(
        data_root=Path(cfg["data"]["root"]).expanduser() if cfg["data"]["root"] else None,
        image_size=int(cfg["data"]["image_size"]),
        seed=data_seed(cfg),
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
    from dfbench.api.plugins import build

    pair = dataset_modalities(cfg["dataset"])  # a declaration that does not parse fails before any data is read
    plugin = build("datasets", cfg["dataset"])
    benchmark = plugin.load(dataset_options(cfg, cache_dir))
    benchmark.modalities = pair
    benchmark = subset.apply(benchmark, cfg["data"].get("limit"))
    return subset.hold_out_validation(benchmark, cfg["data"].get("validation"), data_seed(cfg))


def data_seed(cfg: dict) -> int:
    """The seed that draws the run's data split: ``data.seed``, or the run's own seed with
    ``data.split_seed: run`` (each seed then trains and tests on its own split, so seeds are
    independent samples, not the same test queries counted again)."""
    return int(cfg["seed"] if cfg["data"].get("split_seed", "data") == "run" else cfg["data"]["seed"])


def method_teacher_roles(method, params: dict, pair) -> set[str]:
    """``method.teacher_roles(params, pair)``; a method written before modalities were declared
    (``teacher_roles(params)``) is asked without the pair."""
    import inspect

    try:
        accepts = "pair" in inspect.signature(method.teacher_roles).parameters
    except (TypeError, ValueError):
        accepts = False
    return set(method.teacher_roles(params, pair=pair) if accepts else method.teacher_roles(params))


def dataset_modalities(name: str):
    """The two modalities of the dataset ``name``, as it declares them
    (:attr:`dfbench.api.datasets.DatasetPlugin.modalities`; a :class:`dfbench.api.modalities.ModalityPair`).
    A declaration that does not parse is a plugin error that says what is wrong."""
    from dfbench.api.errors import DataError
    from dfbench.api.modalities import declared_pair
    from dfbench.api.plugins import registry

    try:
        return declared_pair(registry("datasets").load(name), name)
    except ValueError as exc:
        raise DataError(f"{exc}. Fix the dataset plugin's `modalities` declaration (docs/plugins.md).") from None


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
    from dfbench.api.plugins import build

    plugin = build("datasets", cfg["dataset"])
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


@dataclass
class RunPlan:
    """Where one run's record and files go: the one place that decides a run's path (``dfbench
    run`` and ``dfbench bench`` alike) and whether it is done."""

    cfg: dict
    results: Path
    data: dict | None  # data_identity(cfg): root and content revision, None for default data
    run_id: str
    readable: bool = True  # False: the data could not be read (a grid's plan, see ``of``)

    @classmethod
    def of(cls, cfg: dict, results: Path, *, strict: bool = True) -> "RunPlan":
        """The plan of ``cfg``. ``strict``: data that cannot be read is an error here (a run); else
        the run id of its root without a revision (a grid lists, skips and records it as failed)."""
        from dfbench.api.fileio import safe_component

        for key in ("dataset", "method"):  # they name the run's folders: never a way out of results
            safe_component(cfg[key], f"the run's {key}")
        try:
            data = data_identity(cfg)
        except DfbenchError:
            if strict:
                raise
            data = {"root": str(Path(cfg["data"]["root"]).expanduser().resolve()), "revision": None}
            return cls(cfg, Path(results), data, run_identity(cfg, data), readable=False)
        return cls(cfg, Path(results), data, run_identity(cfg, data))

    @property
    def path(self) -> Path:
        return record_path(self.results, self.cfg["dataset"], self.cfg["method"], self.run_id)

    @property
    def artifacts(self) -> Path:
        return artifacts_dir(self.results, self.cfg["dataset"], self.cfg["method"], self.run_id)

    def existing(self) -> dict | None:
        return read_record(self.path)

    def done(self) -> bool:
        """Whether a valid completed record exists (a failed or invalid one is run again)."""
        return is_completed(self.existing())


def preflight(req: RunRequest, record: Path, art: Path) -> Path:
    """Check every folder the run will write (results, its run folder, the cache) before any work,
    so a read-only or misnamed folder is an error up front, never a run lost at its end."""
    from dfbench.api.datasets import default_cache_dir
    from dfbench.api.fileio import check_writable_dir

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
    from dfbench.api.plugins import component_origin

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


def run(req: RunRequest, reporter: Reporter | None = None) -> RunOutcome:
    """Run one request (method, dataset, profile, seed, config layers) and write its record: the
    library call behind ``dfbench run``."""
    reporter = reporter or Reporter()
    cfg, method = resolve_request(req)
    return execute_resolved(cfg, method, req, reporter)


execute = run  # the name before run() had its public name


def execute_resolved(cfg: dict, method, req: RunRequest, reporter: Reporter, plan: RunPlan | None = None) -> RunOutcome:
    """Run ``method`` under ``cfg`` and write its record, unless a valid completed record exists
    (``req.force`` runs it again). Bad input fails before anything is written; a run that fails
    while training or evaluating is recorded as failed; Ctrl-C or SIGTERM raises
    :class:`dfbench.app.interrupts.RunInterrupted` with the checkpoint a rerun resumes from."""
    if plan is None or not plan.readable:  # unreadable data fails here, before anything is written
        plan = RunPlan.of(cfg, req.results)
    existing = plan.existing()
    if dist.requested():  # under torchrun: start the process group; every rank follows rank 0's results
        from dfbench.train.reproducibility import choose_device

        dist.init(choose_device(cfg["device"]))
        existing = dist.broadcast_object(existing)
    if is_completed(existing) and not req.force:
        return RunOutcome(existing, plan.path, skipped=True)
    cache_dir = preflight(req, plan.path, plan.artifacts)
    return _Run(plan, method, req, reporter, cache_dir, replaces=is_completed(existing)).execute()


class _Run:
    """One run's phases (data, teachers, training, evaluation), each timed into its record.

    A forced rerun over a completed record (``replaces``) writes its files to a staging folder beside
    the completed run's and swaps them in only once it has completed: a rerun that fails or is
    interrupted leaves the completed record and its files exactly as they were."""

    def __init__(self, plan: RunPlan, method, req: RunRequest, reporter: Reporter, cache_dir: Path, replaces: bool = False):
        from dfbench.train.reproducibility import choose_device

        self.plan, self.method, self.req, self.reporter, self.cache_dir = plan, method, req, reporter, cache_dir
        self.replaces = replaces
        #: where this run writes its files (the run folder, or its staging folder when it replaces a completed run)
        self.art = staging_dir(plan.artifacts) if replaces else plan.artifacts
        self.cfg = plan.cfg
        from dfbench.api.perf import Perf

        self.device = dist.init(choose_device(self.cfg["device"]))  # under torchrun: this rank's device
        if (self.cfg.get("perf") or {}).get("threads") is None and req.shard_seat is not None and self.device.type == "cpu":
            # shards side by side share the cores (dfbench.app.shards); the record's config says what ran
            self.cfg.setdefault("perf", {})["threads"] = req.shard_seat.threads()
        Perf.from_config(self.cfg.get("perf"), self.device).apply_threads()  # before the record states the count
        self._busy_note()
        self.record = self._new_record()
        self.events = None  # the run's loggers (dfbench.api.loggers.EventBus), made when it starts
        self.ctx = None
        self.t_start = time.perf_counter()
        self.cpu_start = time.process_time()  # this process's CPU time, every thread: what the run costs

    def _busy_note(self) -> None:
        """Say so when the machine is oversubscribed at the start, with the settings this run uses."""
        if self.device.type != "cpu":
            return
        import torch

        from dfbench.api.perf import busy_note

        note = busy_note(torch.get_num_threads())
        if note:
            self.reporter.log(note)

    def _stop_clocks(self) -> None:
        """The run's wall time (``timing.total``) and CPU time (``timing.cpu``: this process's CPU
        seconds over all its threads, the figure a CPU-hour budget counts; above ``total`` when
        several threads ran, below it when the run shared its cores)."""
        self.record["timing"]["total"] = round(time.perf_counter() - self.t_start, 3)
        self.record["timing"]["cpu"] = round(time.process_time() - self.cpu_start, 3)

    def _new_record(self) -> dict:
        from dfbench.api.perf import Perf

        cfg, plan, art, results = self.cfg, self.plan, self.plan.artifacts, self.req.results
        record = {
            **_record_head(cfg, plan.run_id, "running"),
            "config": cfg,
            "config_hash": cfgmod.config_hash(cfg),
            "components": components_used(cfg),
            "teachers": {},
            "timing": {},
            "env": environment(self.device),
            "world_size": dist.world(),
            "started_at": now(),
            "finished_at": None,
            "artifacts": str(art.relative_to(results)) if art.is_relative_to(results) else str(art),
        }
        if plan.data is not None:
            record["data_identity"] = plan.data
        if dist.active():
            record["env"]["backend"] = dist.backend()
        record["env"]["perf"] = Perf.from_config(cfg.get("perf"), self.device).describe()  # what was applied
        if self.req.suite:
            record["suite"] = self.req.suite
        return record

    @contextmanager
    def phase(self, name: str):
        t = time.perf_counter()
        yield
        self.record["timing"][name] = round(time.perf_counter() - t, 3)

    def execute(self) -> RunOutcome:
        from dfbench.train.reproducibility import make_deterministic, seed_everything

        seed_everything(self.cfg["seed"])
        make_deterministic(self.device)
        training = False  # errors before training (data, teachers) are input errors, not results
        self.events = self._loggers()  # a missing tracker package is bad input: before any work
        try:
            self._emit_started()
            self.load_data()
            self.load_teachers()
            interrupts.check()  # a Ctrl-C swallowed by a library on the way stops the run here
            seed_everything(self.cfg["seed"])  # training starts from the same state whether teachers were cached or not
            training = True
            with self.phase("train"):
                embedder = self.method.fit(self.ctx)
            self.evaluate(embedder)
        except KeyboardInterrupt as exc:  # the checkpoint (if any) stays; no record: the run is not over
            raise self.interrupted(exc) from None
        except Exception as exc:
            if interrupts.received() is not None:  # an interrupt a library swallowed caused this error
                raise self.interrupted(interrupts.received()) from None
            # a run that diverged (or failed while training or evaluating) is a result: record it;
            # bad input (data, teachers, config) is the user's to fix: no record, nothing written
            if not isinstance(exc, DfbenchError):  # a bug or a crash in a plugin: keep the record, then let it surface
                self.fail(exc, tb=traceback.format_exc())
            elif training and not isinstance(exc, ConfigError):
                self.fail(exc)
            raise
        finally:
            if self.events is not None and sys.exc_info()[0] is not None:  # interrupted or failed: release the loggers
                self.events.close()
        return self.finish()

    def _loggers(self):
        """The run's loggers (``loggers`` in its config), rank 0 only; None when there are none."""
        from dfbench.api.loggers import EventBus
        from dfbench.api.plugins import build

        names = self.cfg.get("loggers") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"'loggers' must be a list of logger names ('dfbench list --kind loggers'), got {names!r}.")
        if not names or not dist.is_main():
            return None
        loggers = {}
        for name in dict.fromkeys(names):
            loggers[name] = build("loggers", name)  # raises a one-paragraph error for an unknown name or backend
        return EventBus(loggers, self.reporter.log)

    def _emit_started(self) -> None:
        if self.events is not None:
            from dfbench.api.loggers import RunStarted

            self.events.emit("run_started", RunStarted(self.cfg, self.plan.run_id, self.plan.path, self.art))

    def _emit_finished(self, record: dict) -> None:
        if self.events is not None:
            from dfbench.api.loggers import RunFinished

            self.events.emit("run_finished", RunFinished(record, self.plan.path, self.plan.artifacts))
            self.events.close()

    def load_data(self) -> None:
        from dfbench.train.checkpoint import Checkpointer
        from dfbench.api.context import RunContext

        with self.phase("data"), dist.main_first():  # data generated and cached once, by rank 0
            benchmark = load_benchmark(self.cfg, self.cache_dir)
        self.record["data"] = {"classes": benchmark.classes, "counts": benchmark.counts(), "info": benchmark.info,
                               "modalities": benchmark.modalities.declaration()}
        from dfbench.api.rng import Streams

        self.ctx = RunContext(config=self.cfg, device=self.device, benchmark=benchmark, cache_dir=self.cache_dir,
                              reporter=self.reporter, artifacts_dir=self.art, events=self.events,
                              streams=Streams(int(self.cfg["seed"]), dist.rank()))
        self.ctx.checkpointer = Checkpointer(self.art / "checkpoint.pt", int(self.cfg["checkpoint_every"]), self.record["config_hash"],
                                           seed=int(self.cfg["seed"]))

    def load_teachers(self) -> None:
        from dfbench.api.plugins import build

        ctx = self.ctx
        with self.phase("teachers"):
            roles = method_teacher_roles(self.method, self.cfg["params"], ctx.benchmark.modalities)
            loader = build("teachers", self.cfg["teachers"]["loader"])
            with dist.main_first():  # teachers trained and cached once, by rank 0; the others load them
                ctx.teachers = loader.load(ctx, roles)
            ctx.teachers.modalities = ctx.benchmark.modalities
            if dist.active():
                for model in ctx.teachers.models.values():
                    dist.sync_module(model)  # rank 0's teachers everywhere, even without a shared cache
        from dfbench.train.models import weights_digest

        # the weights' digest names each teacher bit for bit: rows compared seed by seed must share it
        self.record["teachers"] = {
            role: {"accuracy": ctx.teachers.accuracy.get(role), **ctx.teachers.info.get(role, {}), "weights_sha256": weights_digest(model)}
            for role, model in sorted(ctx.teachers.models.items())
        }

    def evaluate(self, embedder) -> None:
        from dfbench.train.evaluation import evaluate_embedder
        from dfbench.train.metrics import registered_extra_metrics

        ctx, record, art = self.ctx, self.record, self.art
        embeddings: dict = {}
        extra = registered_extra_metrics()  # a plugin's metrics: the record carries what the run computed
        with self.phase("eval"):
            metrics = evaluate_embedder(embedder, ctx.benchmark, self.device, int(self.cfg["eval"]["batch_size"]), self.reporter,
                                        keep=embeddings, extra=extra)
        scores = {k: float(metrics[k]) for k in (*METRIC_KEYS, *extra)}
        check_finite_metrics(scores)  # a NaN is a failed run (its record holds no metric), never a result
        record["metrics"] = scores
        record["status"] = "completed"
        if ctx.synthesis is not None:  # a synthesis method: how its synthesis works at the end
            record["synthesis"] = ctx.synthesis
        if ctx.budget is not None:  # the compute a data-free run spent, and its validation mAP along the way
            record["budget"] = ctx.budget
            record["anytime"] = [{"round": r["round"], "teacher images": r.get("teacher images", 0.0), "metric": k, "value": v}
                                 for r in ctx.curves for k, v in r.items() if k.endswith("mAP@all")]
        if ctx.selection is not None:  # the round validation chose (params.select)
            record["selection"] = ctx.selection
        if ctx.checkpointer.resumed_from is not None:
            record["resumed_from_round"] = ctx.checkpointer.resumed_from
        if dist.is_main():  # only rank 0 writes files
            _write_artifacts(art, ctx.benchmark, ctx)
            record["pictures"] = _write_pictures(art, ctx.benchmark, ctx, embeddings)
            record["per_query"] = queries_file.save(art, embeddings)  # each query's AP and top gallery ids

    def finish(self) -> RunOutcome:
        self._stop_clocks()
        self.record["finished_at"] = now()
        self.ctx.checkpointer.remove()  # the record is the result now (rank 0 only)
        if dist.is_main():
            if self.replaces:  # the completed run's files give way to this run's, then its record
                _swap_in(self.art, self.plan.artifacts)
            write_record(self.plan.path, self.record)
            self._emit_finished(self.record)
        dist.barrier()  # every rank returns once the record exists
        return RunOutcome(self.record, self.plan.path)

    def interrupted(self, exc: KeyboardInterrupt):
        """The interrupt to raise: it names the checkpoint only when a rerun can resume from it
        (never a foreign or refused file)."""
        from dfbench.app.interrupts import RunInterrupted

        ckpt = self.ctx.checkpointer if self.ctx is not None else None
        if ckpt is None:
            return RunInterrupted(exc)
        return RunInterrupted(exc, ckpt.path if ckpt.resumable else None, ckpt.last_round, ckpt.every)

    def fail(self, exc: BaseException, tb: str | None = None) -> None:
        """Record a run that failed after its data loaded (rank 0); earlier failures leave nothing.
        A rerun that would replace a completed run records nothing and removes its staging folder: the
        completed record and its files stay as they were, and the failure reaches the caller."""
        if self.ctx is None or not dist.is_main():
            return
        if self.replaces:
            import shutil

            shutil.rmtree(self.art, ignore_errors=True)
            self.reporter.log(f"the rerun failed; the completed record {self.plan.path} and its files are kept")
            return
        record = self.record
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        if tb:
            record["traceback"] = tb
        self._stop_clocks()
        record["finished_at"] = now()
        try:
            _write_artifacts(self.art, self.ctx.benchmark, self.ctx)
        except Exception:
            pass
        write_record(self.plan.path, record)
        self._emit_finished(record)


def staging_dir(art: Path) -> Path:
    """Where a forced rerun of a completed run writes its files until it completes."""
    return art.with_name(art.name + ".rerun")


def _swap_in(staged: Path, art: Path) -> None:
    """Replace the run folder ``art`` by ``staged`` (renames within one folder: the old files go only
    once the new ones are in place)."""
    import shutil

    old = art.with_name(art.name + ".replaced")
    if old.exists():
        shutil.rmtree(old)
    if art.exists():
        art.rename(old)
    staged.rename(art)
    if old.exists():
        shutil.rmtree(old)


def _write_artifacts(art: Path, benchmark, ctx) -> None:
    from dfbench.api.fileio import atomic_write_json, atomic_write_text

    art.mkdir(parents=True, exist_ok=True)
    if benchmark.split_manifest:
        atomic_write_json(art / "split.json", benchmark.split_manifest)
    if ctx is not None and ctx.curves:
        from dfbench.app.pictures import curve_columns

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
    plan = RunPlan.of(cfg, req.results, strict=False)
    path = plan.path
    record = {
        **_record_head(cfg, plan.run_id, "failed"),
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

    from dfbench.app import pictures

    made = []
    try:
        batch = ctx.last_batch
        if batch is not None:
            g, q = benchmark.modalities.keys
            pictures.save_pairs(batch.images[g], batch.images[q], art / "pairs.png", (batch.labels[g], batch.labels[q]), benchmark.classes,
                                title=pictures.run_title(ctx), pair=benchmark.modalities)
            made.append("pairs.png")
        if emb:
            picks, top_idx = pictures.retrieval_examples(emb["queries"], emb["query_labels"], emb["gallery"], emb["gallery_labels"])
            qset, gset = benchmark.get("test", benchmark.modalities.query.key), benchmark.get("test", benchmark.modalities.gallery.key)
            needed = sorted(set(top_idx.flatten().tolist()))
            gallery_imgs = dict(zip(needed, gset.batch(needed)))
            pictures.save_retrieval(
                qset.batch(picks.tolist()), qset.labels[picks], gallery_imgs, gset.labels, top_idx, art / "retrieval.png",
                aps=emb["AP"][picks] if "AP" in emb else None, title=pictures.run_title(ctx), pair=benchmark.modalities,
            )
            made.append("retrieval.png")
        if ctx.curves and pictures.save_curves(ctx.curves, art / "curves.png"):
            made.append("curves.png")
    except Exception as exc:  # pictures are a convenience: never lose a result over one
        warnings.warn(f"could not draw the pictures of this run: {type(exc).__name__}: {exc}")
    return made


@dataclass
class SuiteRun:
    """One item of a suite run: its status ("completed", "skipped", "failed"; in a dry run "done" or
    "todo"), its record path (None when its config could not be resolved) and its error."""

    item: object  # dfbench.app.suites.SuiteItem
    status: str
    path: Path | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.item.label} / {self.item.dataset} / seed {self.item.seed}"

    def record(self) -> dict | None:
        return read_record(self.path) if self.path is not None else None


@dataclass
class SuiteResult:
    """What :func:`run_suite` did, item by item."""

    suite: object  # dfbench.app.suites.Suite
    runs: list[SuiteRun]
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.runs if r.status == status)

    def completed(self) -> list[SuiteRun]:
        return [r for r in self.runs if r.status == "completed"]

    def failed(self) -> list[SuiteRun]:
        return [r for r in self.runs if r.status == "failed"]

    def todo(self) -> int:
        """Items with a record path but no completed record there (what a run would run)."""
        return sum(1 for r in self.runs if r.path is not None and (r.record() or {}).get("status") != "completed")


def select_items(spec, seeds=None, methods=None, shard: str | tuple | None = None) -> list:
    """The items of suite ``spec`` run: only ``seeds``, only the rows of ``methods`` (a method name or
    a row's label), shard ``i/n`` of them."""
    from dfbench.app import suites

    items = spec.items
    if seeds:
        missing = sorted(set(seeds) - set(spec.seeds))
        if missing:
            raise DfbenchError(f"Suite {spec.name} has no seed {missing[0]}: its seeds are {spec.seeds}.")
        items = [item for item in items if item.seed in seeds]
    if methods:
        known = {item.method for item in spec.items} | {item.label for item in spec.items}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise DfbenchError(
                f"Suite {spec.name} has no row of method or label '{unknown[0]}'. Its methods: "
                f"{', '.join(sorted({item.method for item in spec.items}))}; row labels are listed by "
                f"'dfbench bench {spec.name} --dry-run'."
            )
        items = [item for item in items if item.method in methods or item.label in methods]
    return suites.shard_items(items, suites.parse_shard(shard) if isinstance(shard, str) or shard is None else shard)


def run_suite(suite, *, shard=None, seeds=None, methods=None, force: bool = False, dry_run: bool = False,
              results: Path, data_root=None, device: str = "auto", cache_dir: Path | None = None,
              reporter: Reporter | None = None, loggers: list | None = None) -> SuiteResult:
    """Run a suite (a :class:`dfbench.app.suites.Suite`, a suite's name or a suite file): every selected
    item whose valid completed record is missing (``force``: every one). A failed run is recorded
    (status failed) and the grid goes on; a folder no record can be written to stops it
    (:class:`OutputPathError`), and so does Ctrl-C or SIGTERM (``KeyboardInterrupt``). The library
    call behind ``dfbench bench``."""
    from dfbench.app import suites
    from dfbench.api.plugins import registry
    from dfbench.app.records import pin_code_state

    pin_code_state()  # before any plugin module is imported: records name the code the process started with
    spec = suite if isinstance(suite, suites.Suite) else suites.load_suite(suites.find_suite(str(suite)), registry("methods").names())
    items = select_items(spec, seeds, methods, shard)
    reporter = reporter or Reporter(enabled=not dry_run)
    root = data_root or spec.data_root
    done = SuiteResult(spec, [], dry_run)
    warned = [False]
    seat = None
    parsed = suites.parse_shard(shard) if isinstance(shard, str) else shard
    if parsed is not None and parsed[1] > 1 and not dry_run:
        from dfbench.api.datasets import default_cache_dir
        from dfbench.app.shards import ShardSeat

        seat = ShardSeat(Path(cache_dir) if cache_dir else default_cache_dir())
    with reporter.task(f"suite {spec.name}", total=len(items)) as task, (seat or contextlib.nullcontext()):
        for item in items:
            req = RunRequest(
                method=item.method, dataset=item.dataset, profile=item.profile, seed=item.seed, device=device,
                data_root=str(root) if root else None, results=Path(results),
                overrides=[*item.overrides, *([f"loggers={json.dumps(list(loggers))}"] if loggers else [])],
                cache_dir=cache_dir, force=force, suite={"name": spec.name, "label": item.label, "seeds": spec.seeds},
                shard_seat=seat,
            )
            done.runs.append(_suite_item(item, req, dry_run, reporter, warned))
            task.advance(1)
    return done


def _suite_item(item, req: RunRequest, dry_run: bool, reporter: Reporter, warned: list) -> SuiteRun:
    """Run (or, in a dry run, look up) one suite item."""
    try:
        cfg, method = resolve_request(req)
    except DfbenchError as exc:
        outcome = SuiteRun(item, "failed", error=str(exc))
        reporter.log(f"FAILED {outcome.name}: {exc}")
        return outcome
    plan = RunPlan.of(cfg, req.results, strict=False)  # unreadable data: recorded as this run's failure
    finished = plan.done()
    if dry_run:
        return SuiteRun(item, "done" if finished else "todo", plan.path)
    if finished and not req.force:
        return SuiteRun(item, "skipped", plan.path)
    _warn_code_change(reporter, warned)
    try:
        execute_resolved(cfg, method, req, reporter, plan)
        return SuiteRun(item, "completed", plan.path)
    except OutputPathError:  # no record can be written either: stop the grid
        raise
    except Exception as exc:  # a failed run is recorded and the grid goes on
        existing = read_record(plan.path) or {}
        if is_completed(existing):  # a forced rerun failed: the completed record stands
            reporter.log(f"{plan.path} (completed) is kept: its rerun failed")
        elif existing.get("status") != "failed":
            write_early_failure(cfg, req, exc)
        outcome = SuiteRun(item, "failed", plan.path, f"{type(exc).__name__}: {exc}")
        reporter.log(f"FAILED {outcome.name}: {outcome.error}")
        return outcome


def _warn_code_change(reporter: Reporter, warned: list) -> None:
    from dfbench.app.records import code_changed

    if not warned[0] and (changed := code_changed()) is not None:
        warned[0] = True
        reporter.log(
            f"WARNING: the checkout changed since this bench started ({changed[0]} -> {changed[1]}): "
            "modules it has not imported yet come from the new code, so its runs from now on mix two "
            "code states (each record says so in env.code_changed_since_start). Stop it and start "
            "it again to run one code state: finished runs are skipped."
        )
