"""Ctrl-C and SIGTERM: a message and a conventional exit status, never a traceback.

SIGINT raises ``KeyboardInterrupt``; SIGTERM (``kill``, a batch scheduler ending a job) raises
:class:`Terminated`, a ``KeyboardInterrupt`` too, so both take the same way out: atomic writes drop
their temporary file, a run keeps its last checkpoint and writes no record, and the CLI prints one
paragraph and exits 130 (SIGINT) or 143 (SIGTERM), 128 plus the signal number as shells do.
"""

from __future__ import annotations

import signal
import threading


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM (``cause``), with what a rerun can resume from: the
    checkpoint file (None when there is none a rerun would accept), the last round it holds and how
    often one is saved. Raised by the runner; the CLI turns it into its message."""

    def __init__(self, cause: BaseException, checkpoint=None, last_round: int = 0, every: int = 0):
        super().__init__(str(cause))
        self.cause, self.checkpoint, self.last_round, self.every = cause, checkpoint, last_round, every


def _signal_of(exc: BaseException) -> BaseException:
    return exc.cause if isinstance(exc, RunInterrupted) else exc


def exit_status(exc: BaseException) -> int:
    return 128 + (signal.SIGTERM if isinstance(_signal_of(exc), Terminated) else signal.SIGINT)


def what(exc: BaseException) -> str:
    """'Terminated (SIGTERM)' or 'Interrupted': the first word of the CLI's message."""
    return "Terminated (SIGTERM)" if isinstance(_signal_of(exc), Terminated) else "Interrupted"


def _raise_terminated(signum, frame):
    raise Terminated()


def handle_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def early_message(exc: BaseException) -> str:
    """The message for an interrupt outside a run's training (start-up, data, teachers)."""
    return (
        f"{what(exc)} before any result was written; nothing is half-written. Run the same command "
        "again to start over (cached data and teachers are kept)."
    )
