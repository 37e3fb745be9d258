"""Elapsed time, rate and time left of a long loop, for log lines: what a progress bar shows, also when
the output is a file or a scheduler's log rather than a terminal."""

from __future__ import annotations

import time


def format_duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``3h02m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressClock:
    """Counts from ``done`` (a resumed run starts where it stopped) towards ``total`` units."""

    def __init__(self, total: int, done: int = 0, unit: str = "steps") -> None:
        self.total, self.first, self.unit = total, done, unit
        self.start = time.monotonic()

    def describe(self, done: int) -> str:
        """``elapsed 1m02s, 3.21 steps/s, 4m10s left``; the rate over the units done since the start."""
        elapsed = time.monotonic() - self.start
        rate = (done - self.first) / elapsed if elapsed > 0 and done > self.first else 0.0
        left = f"{format_duration((self.total - done) / rate)} left" if rate > 0 else "time left unknown"
        return f"elapsed {format_duration(elapsed)}, {rate:.3g} {self.unit}/s, {left}"
