"""Graceful stop on SIGTERM / SIGUSR2 (SLURM pre-emption and time-limit warnings) and SIGINT (Ctrl-C).

The handler only sets a flag: the trainer finishes the current optimizer step, all ranks agree to
stop, a checkpoint is written and the process exits with ``REQUEUE_EXIT_CODE`` so a launcher can
requeue the job, which then resumes with ``--resume auto``.
"""
from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)

# EX_TEMPFAIL from sysexits.h: "temporary failure, try again" -- the run is resumable.
REQUEUE_EXIT_CODE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)


class StopFlag:
    """Installs handlers for ``STOP_SIGNALS`` on enter, restores the previous ones on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
        if self.signum is None:
            hint = " (Ctrl-C again to abort without it)" if signum == signal.SIGINT else ""
            log.warning("received %s: finishing the current step, then checkpointing%s", signal.Signals(signum).name,
                        hint)
        self.signum = signum

    def __enter__(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():  # signal() only works there
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, prev in self._previous.items():
            signal.signal(s, prev)
        self._previous.clear()
