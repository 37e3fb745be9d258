"""Reading a sample by windows: a pixel window of a larger field or scene, and the retry over seeded
windows until one holds enough valid (non-nodata) pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

from mae_domains.data.sample import BadSampleError

T = TypeVar("T")


@dataclass(frozen=True)
class PixelWindow:
    """A rectangle in pixels: top row, left column, height and width."""

    row: int
    col: int
    height: int
    width: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.row, self.col, self.height, self.width)

    def clipped(self, height: int, width: int) -> tuple[slice, slice, tuple[int, int, int, int]]:
        """Row and column slices inside a ``height x width`` field and the padding ``(top, bottom, left,
        right)`` that brings the read block back to the window's size."""
        r0, c0 = max(self.row, 0), max(self.col, 0)
        r1, c1 = min(self.row + self.height, height), min(self.col + self.width, width)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"window {self.as_tuple()} lies outside a {height}x{width} field")
        pad = (r0 - self.row, self.row + self.height - r1, c0 - self.col, self.col + self.width - c1)
        return slice(r0, r1), slice(c0, c1), pad


def read_first_valid(read_attempt: Callable[[int], tuple[T, float]], attempts: int, min_valid: float,
                     source: str, what: str = "chip") -> tuple[T, float]:
    """``read_attempt(k)`` for ``k = 0, 1, ...`` (each attempt draws its own seeded window) until the
    valid fraction it returns beside its result is at least ``min_valid`` and above 0; after ``attempts``
    a :class:`BadSampleError` names ``source`` and the last fraction."""
    fraction = 0.0
    for attempt in range(max(1, attempts)):
        result, fraction = read_attempt(attempt)
        if fraction >= min_valid and fraction > 0:
            return result, fraction
    state = "all nodata" if fraction == 0 else f"only {fraction:.0%} valid pixels"
    raise BadSampleError(source, f"{what} is {state} (min_valid_fraction={min_valid}; "
                                 f"{max(1, attempts)} window(s) tried)")
