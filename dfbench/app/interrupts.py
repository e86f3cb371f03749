"""Ctrl-C and SIGTERM: a message and a conventional exit status, never a traceback.

SIGINT raises ``KeyboardInterrupt``; SIGTERM (``kill``, a batch scheduler ending a job) raises
:class:`Terminated`, a ``KeyboardInterrupt`` too, so both take the same way out: atomic writes drop
their temporary file, a run keeps its last checkpoint and writes no record, and the CLI prints one
paragraph and exits 130 (SIGINT) or 143 (SIGTERM), 128 plus the signal number as shells do.
"""

from __future__ import annotations

import os
import signal
import sys
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


class InterruptExit(SystemExit):
    """``sys.exit`` after an interrupt's message. In process (click's test runner) it is a plain
    :class:`SystemExit`; the console entry points end the process with :func:`exit_now` instead."""


def exit_now(code: int) -> None:
    """End the process with ``code`` after flushing stdout and stderr, skipping interpreter shutdown.

    Observed: a Ctrl-C in the first seconds (while torch imports) printed its message and called
    ``sys.exit(130)``, yet the process ended killed by SIGINT (-2), depending on when the signal came.
    CPython's own ``Py_RunMain`` does that when it believes a ``KeyboardInterrupt`` went unhandled; the
    exact path was not pinned down, so the status is made certain here instead. Interrupted work has
    already unwound (temporary files dropped, checkpoints kept) when this runs, so nothing is lost by
    skipping shutdown.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


def _signal_of(exc: BaseException) -> BaseException:
    return exc.cause if isinstance(exc, RunInterrupted) else exc


def exit_status(exc: BaseException) -> int:
    return 128 + (signal.SIGTERM if isinstance(_signal_of(exc), Terminated) else signal.SIGINT)


def what(exc: BaseException) -> str:
    """'Terminated (SIGTERM)' or 'Interrupted': the first word of the CLI's message."""
    return "Terminated (SIGTERM)" if isinstance(_signal_of(exc), Terminated) else "Interrupted"


#: the signal received, once one was (the handlers of :func:`install` set it)
_received: int | None = None


def _on_signal(signum, frame):
    global _received
    _received = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install() -> None:
    """Turn SIGTERM into :class:`Terminated` and SIGINT into ``KeyboardInterrupt``, remembering which
    came (main thread only; a no-op elsewhere). The memory matters because a library may swallow the
    exception: an interrupt that lands inside a C extension's import (torch importing numpy, for one)
    is caught there, and the process goes on half-imported. :func:`check` and :func:`received` let
    dfbench honour the signal all the same."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)


def received() -> BaseException | None:
    """The interrupt a received signal stands for (None: no signal came)."""
    if _received is None:
        return None
    return Terminated() if _received == signal.SIGTERM else KeyboardInterrupt()


def check() -> None:
    """Raise the interrupt of a signal that came and was swallowed on its way (see :func:`install`)."""
    exc = received()
    if exc is not None:
        raise exc


def early_message(exc: BaseException) -> str:
    """The message for an interrupt outside a run's training (start-up, data, teachers)."""
    return (
        f"{what(exc)} before any result was written; nothing is half-written. Run the same command "
        "again to start over (cached data and teachers are kept)."
    )
