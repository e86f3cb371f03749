"""Run events and the loggers that subscribe to them (experiment trackers).

A run emits three typed events, once each (curve points once per curve row), for every method that
logs curves through :meth:`dfbench.api.context.RunContext.log_curve` (the data-free loop does, for
dfsbir, its baselines and the adapted distillation methods alike):

- :class:`RunStarted`: the resolved config, the run id, where its record and files go;
- :class:`CurvePoint`: one row of the training curves (round, losses, validation metrics,
  synthesis diagnostics), the same row ``curves.csv`` gets;
- :class:`RunFinished`: the record as written (status, metrics, timings), completed or failed.

A logger is a plugin component (``dfbench_register_loggers``) subclassing :class:`RunLogger`, chosen
per run by name with ``--logger NAME`` (repeatable) or ``loggers: [NAME]`` in a config. Loggers are
execution settings: they never enter the config hash. A logger whose backend package is missing
raises :class:`dfbench.api.errors.ConfigError` from its constructor (one paragraph naming the extra
to install), before the run does any work. A logger that fails while the run goes on is reported
once and dropped; the run and its record are never changed by a logger.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunStarted:
    config: dict  # the resolved config
    run_id: str
    record_path: Path  # where the record will be written
    artifacts: Path  # the run's folder (curves, pictures); a logger may write below it


@dataclass(frozen=True)
class CurvePoint:
    round: int
    values: dict  # column -> float: losses, validation metrics, synthesis diagnostics


@dataclass(frozen=True)
class RunFinished:
    record: dict  # the record as written
    record_path: Path
    artifacts: Path


class RunLogger:
    """Receives a run's events. Override what you need; every method defaults to doing nothing."""

    def run_started(self, event: RunStarted) -> None:
        pass

    def curve_point(self, event: CurvePoint) -> None:
        pass

    def run_finished(self, event: RunFinished) -> None:
        pass

    def close(self) -> None:
        """Flush and release what the logger holds (called once, after run_finished or on failure)."""


class EventBus:
    """The loggers of one run: each event goes to each; one that raises is reported and dropped."""

    def __init__(self, loggers: dict[str, RunLogger], report=None):
        self.loggers = dict(loggers)
        self.report = report or (lambda text: None)

    def emit(self, hook: str, event) -> None:
        for name, logger in list(self.loggers.items()):
            try:
                getattr(logger, hook)(event)
            except Exception as exc:  # a tracker's failure never changes the run
                self.report(f"warning: the logger '{name}' failed in {hook} ({type(exc).__name__}: {exc}); it is dropped for this run")
                self.loggers.pop(name, None)
                try:
                    logger.close()
                except Exception:
                    pass

    def close(self) -> None:
        for logger in self.loggers.values():
            try:
                logger.close()
            except Exception:
                pass
        self.loggers.clear()
