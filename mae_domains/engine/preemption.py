"""Cluster pre-emption: SIGTERM asks the run to stop at the end of the current step, write a checkpoint
and exit with :data:`PREEMPTED_EXIT_CODE`; ``pretrain --resume`` then continues exactly."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("mae_domains.engine")

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: what schedulers expect of a job that ended on SIGTERM
STOP_SIGNALS = (signal.SIGTERM,)


class StopRequest:
    """``with StopRequest() as stop:`` SIGTERM sets ``stop.signal`` (its name) instead of killing the
    process; the previous handlers come back on exit. Only the main thread can take signals; elsewhere
    this does nothing."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.signal: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
            log.warning("%s received: stopping after the current step, with a checkpoint", self.signal)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
