"""The built-in loggers (dfbench.api.loggers)."""

from __future__ import annotations

import importlib.util
import json
import math

from dfbench.api.errors import ConfigError
from dfbench.api.loggers import CurvePoint, RunFinished, RunLogger, RunStarted


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
        if importlib.util.find_spec("tensorboard") is None:
            raise ConfigError(
                "The logger 'tensorboard' needs the package tensorboard, which is not installed. Install it with "
                'pip install "dfbench[tensorboard]", or run without --logger tensorboard.'
            )
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
