"""The built-in loggers (dfbench.api.loggers)."""

from __future__ import annotations

import importlib.util
import json
import math

from dfbench.api.errors import ConfigError
from dfbench.api.loggers import CurvePoint, RunFinished, RunLogger, RunStarted


def _require(module: str, logger: str, package: str) -> None:
    """A logger's backend must be importable: else a one-paragraph error naming the extra, before any work."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"The logger '{logger}' needs the package {package}, which is not installed. Install it with "
            f'pip install "dfbench[{logger}]", or run without --logger {logger}.'
        )


class JsonLinesLogger(RunLogger):
    """Each event as one JSON object per line in ``<run folder>/events.jsonl``."""

    def __init__(self):
        self.fh = None

    def _write(self, kind: str, payload: dict) -> None:
        if self.fh is not None:
            self.fh.write(json.dumps({"event": kind, **payload}, default=str) + "\n")
            self.fh.flush()

    def run_started(self, event: RunStarted) -> None:
        event.artifacts.mkdir(parents=True, exist_ok=True)
        self.fh = open(event.artifacts / "events.jsonl", "w", encoding="utf-8")
        self._write("run_started", {"run_id": event.run_id, "config": event.config, "record": str(event.record_path)})

    def curve_point(self, event: CurvePoint) -> None:
        self._write("curve_point", {"round": event.round, "values": event.values})

    def run_finished(self, event: RunFinished) -> None:
        self._write("run_finished", {"status": event.record.get("status"), "metrics": event.record.get("metrics"),
                                     "record": str(event.record_path)})

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


class TensorBoardLogger(RunLogger):
    """TensorBoard event files in ``<run folder>/tensorboard``: every numeric curve column as the
    scalar ``curves/<column>`` at its round, the resolved config as the text ``config``, the final
    metrics as ``metrics/<name>`` (step: the last round)."""

    def __init__(self):
        _require("tensorboard", "tensorboard", "tensorboard")
        self.writer = None
        self.last_round = 0

    def run_started(self, event: RunStarted) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(event.artifacts / "tensorboard"))
        self.writer.add_text("config", "```\n" + json.dumps(event.config, indent=2, sort_keys=True, default=str) + "\n```", 0)

    def curve_point(self, event: CurvePoint) -> None:
        self.last_round = max(self.last_round, int(event.round))
        for key, value in event.values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"curves/{key}", float(value), int(event.round))

    def run_finished(self, event: RunFinished) -> None:
        for key, value in (event.record.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"metrics/{key}", float(value), self.last_round)
        self.writer.add_text("status", str(event.record.get("status")), self.last_round)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _mlflow_key(key: str) -> str:
    """A metric or parameter name MLflow accepts (letters, digits, ``_ - . / `` and spaces)."""
    import re

    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(key).replace("@", "_at_"))[:250]


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class MLflowLogger(RunLogger):
    """An MLflow run per dfbench run: params = the resolved config (flattened to dotted keys),
    metrics = the curves by round and the final metrics (``test.<metric>``), artifacts = the
    record, ``curves.csv`` and the pictures. Tracking store: ``$MLFLOW_TRACKING_URI`` when set,
    else a local file store ``<results>/mlruns`` beside the records (``mlflow ui --backend-store-uri
    <results>/mlruns`` browses it). Experiment: ``dfbench/<dataset>``."""

    def __init__(self):
        _require("mlflow", "mlflow", "mlflow (or mlflow-skinny)")
        self.client = None
        self.run_id = None

    def run_started(self, event: RunStarted) -> None:
        import os

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            results = event.record_path.parent.parent.parent
            uri = (results / "mlruns").resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow's local file store, chosen here
        self.client = MlflowClient(tracking_uri=uri)
        name = f"dfbench/{event.config.get('dataset')}"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment is not None else self.client.create_experiment(name)
        run = self.client.create_run(experiment_id, run_name=f"{event.config.get('method')} {event.run_id}",
                                     tags={"dfbench.run_id": event.run_id, "dfbench.record": str(event.record_path)})
        self.run_id = run.info.run_id
        params = [Param(_mlflow_key(k), str(v)[:500]) for k, v in sorted(_flatten(event.config).items())]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def curve_point(self, event: CurvePoint) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(_mlflow_key(k), float(v), stamp, int(event.round)) for k, v in event.values.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def run_finished(self, event: RunFinished) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(_mlflow_key(f"test.{k}"), float(v), stamp, 0) for k, v in (event.record.get("metrics") or {}).items()
                   if isinstance(v, (int, float)) and math.isfinite(v)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)
        if event.record_path.is_file():
            self.client.log_artifact(self.run_id, str(event.record_path))
        for path in sorted(event.artifacts.glob("*.png")) + sorted(event.artifacts.glob("curves.csv")):
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED" if event.record.get("status") == "completed" else "FAILED")
        self.run_id = None

    def close(self) -> None:
        if self.client is not None and self.run_id is not None:  # ended without a record: interrupted or bad input
            try:
                self.client.set_terminated(self.run_id, "KILLED")
            finally:
                self.run_id = None


class WandbLogger(RunLogger):
    """A Weights & Biases run per dfbench run, **offline** unless ``$WANDB_MODE`` says otherwise:
    ``<run folder>/wandb/offline-run-*/`` holds it, and ``wandb sync <that folder>`` uploads it
    later (nothing leaves the machine during the run). config = the resolved config, history = every
    numeric curve column at its round (W&B's step), summary = the final metrics (``test/<name>``)
    and the status, files = the record, ``curves.csv`` and the pictures. Project:
    ``$WANDB_PROJECT``, else ``dfbench-<dataset>``."""

    def __init__(self):
        _require("wandb", "wandb", "wandb")
        self.run = None

    def run_started(self, event: RunStarted) -> None:
        import os

        import wandb

        event.artifacts.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True, disable_code=True)
        self.run = wandb.init(
            mode=os.environ.get("WANDB_MODE", "offline"), dir=str(event.artifacts),
            project=os.environ.get("WANDB_PROJECT") or f"dfbench-{event.config.get('dataset')}",
            name=f"{event.config.get('method')} {event.run_id}", config=event.config, settings=settings,
            tags=[str(event.config.get("method")), str(event.config.get("dataset"))], reinit="create_new",
        )
        self.run.summary["dfbench/run_id"] = event.run_id

    def curve_point(self, event: CurvePoint) -> None:
        values = {k: float(v) for k, v in event.values.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if values:
            self.run.log(values, step=int(event.round))

    def run_finished(self, event: RunFinished) -> None:
        for key, value in (event.record.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.run.summary[f"test/{key}"] = float(value)
        self.run.summary["dfbench/status"] = str(event.record.get("status"))
        for path in [event.record_path, *sorted(event.artifacts.glob("*.png")), *sorted(event.artifacts.glob("curves.csv"))]:
            if path.is_file():
                self.run.save(str(path), base_path=str(path.parent), policy="now")
        self.run.finish(exit_code=0 if event.record.get("status") == "completed" else 1)
        self.run = None

    def close(self) -> None:
        if self.run is not None:  # ended without a record: interrupted or bad input
            try:
                self.run.finish(exit_code=1)
            finally:
                self.run = None
