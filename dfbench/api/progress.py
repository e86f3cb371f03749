"""Progress on stderr: rich bars in a terminal, one line per phase otherwise (or nothing when quiet)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class _Task:
    """One phase. Without a terminal, a line is logged at most every ``LOG_SECONDS``."""

    LOG_SECONDS = 30.0

    def __init__(self, progress, task_id, reporter=None, description="", total=None):
        self._progress = progress
        self._id = task_id
        self._reporter = reporter
        self._description = description
        self._total = total
        self._done = 0
        self._last = time.perf_counter()
        self.info = ""

    def advance(self, n: int = 1) -> None:
        self._done += n
        if self._progress is not None:
            self._progress.advance(self._id, n)
        elif self._reporter is not None and not self._reporter.quiet:
            now = time.perf_counter()
            if now - self._last >= self.LOG_SECONDS:
                self._last = now
                extra = f" ({self.info})" if self.info else ""
                self._reporter.log(f"{self._description}: {self._done}/{self._total or '?'}{extra}")

    def note(self, text: str) -> None:
        """Short status shown beside the bar (losses, accuracy)."""
        self.info = text
        if self._progress is not None:
            self._progress.update(self._id, info=text)


class Reporter:
    def __init__(self, enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if enabled is None else enabled
        self.quiet = enabled is False

    def log(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def task(self, description: str, total: int | None):
        start = time.perf_counter()
        if self.interactive:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            with progress:
                task_id = progress.add_task(description, total=total, info="")
                yield _Task(progress, task_id)
        else:
            t = _Task(None, None, self, description, total)
            yield t
            if not self.quiet:
                extra = f" ({t.info})" if t.info else ""
                self.log(f"{description}: done in {time.perf_counter() - start:.1f}s{extra}")
