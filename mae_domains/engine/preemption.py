"""Stopping a run cleanly: SIGTERM (cluster pre-emption) or Ctrl-C (SIGINT) asks the run to stop at the
end of the current step, write a checkpoint and exit with 128 + the signal's number (143, 130);
``pretrain --resume`` then continues exactly. A second Ctrl-C stops at once, without a checkpoint."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger("mae_domains.engine")

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: what schedulers expect of a job that ended on SIGTERM
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT


def stop_exit_code(signal_name: str | None) -> int:
    """128 + the signal's number, as a shell reports a process ended by it (143 when unknown)."""
    try:
        return 128 + int(signal.Signals[signal_name or ""])
    except KeyError:
        return PREEMPTED_EXIT_CODE


class StopRequest:
    """``with StopRequest() as stop:`` SIGTERM or Ctrl-C sets ``stop.signal`` (its name) instead of killing
    the process; a second Ctrl-C raises ``KeyboardInterrupt``. The previous handlers come back on exit.
    Only the main thread can take signals; elsewhere this does nothing."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.signals = signals
        self.signal: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.signal is None:
            self.signal = name
            again = " (Ctrl-C again stops at once, without one)" if signum == signal.SIGINT else ""
            log.warning("%s received: stopping after the current step, with a checkpoint%s", name, again)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


REASONS = {"SIGTERM": "a scheduler or `kill` asked the run to stop", "SIGINT": "Ctrl-C",
           "a second Ctrl-C": "Ctrl-C pressed twice stops at once"}


def stopped_summary(stopped_by: str, steps: int, checkpoint_step: int | None, total_steps: int | None,
                    run_dir: Any) -> str:
    """The last line of a run stopped by a signal: that it stopped, why, what is saved, how to continue."""
    why = f" ({REASONS[stopped_by]})" if stopped_by in REASONS else ""
    of_total = f" of {total_steps}" if total_steps else ""
    where = f"before step 1{of_total}, nothing trained yet" if steps == 0 else f"after step {steps}{of_total}"
    if checkpoint_step is None:
        return (f"stopped by {stopped_by} {where}{why}; no checkpoint was written; start again with: "
                f"mae-domains pretrain ... --out {run_dir} --overwrite")
    saved = (f"checkpoint of step {steps} written" if checkpoint_step == steps else
             f"the step under way was not saved, the checkpoint is of step {checkpoint_step}")
    return f"stopped by {stopped_by} {where}{why}; {saved}; continue with: mae-domains pretrain --resume {run_dir}"
