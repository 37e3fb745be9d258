"""Chip references and where chips are cut: random windows for training, a strided grid for embedding.

A :class:`ChipRef` is what the dataset indexes: the scene (or the frames of a time series), the chip's
window on the target grid, and an optional label. Training refs carry no window: the window is drawn
at read time from the ref's own seed (so discovery does not have to open every file), and a draw that
lands on mostly-nodata pixels is retried a few times within the scene before the chip is rejected.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from mae_domains.data.seeding import derive_seed
from mae_domains.data.windows import PixelWindow
from mae_remote_sensing.scene import Scene, TargetGrid


@dataclass(frozen=True)
class ChipRef:
    """One chip of one scene (``frames`` holds one scene, or the T frames of a time series, oldest first).

    ``window`` is ``(row, col, height, width)`` on the target grid, or None for a random window drawn from
    ``draw`` at read time. ``label`` is a class name, a tuple of names (multi-label) or None.
    """

    frames: tuple[Scene, ...]
    window: tuple[int, int, int, int] | None = None
    draw: int = 0
    label: Any = None

    @property
    def scene(self) -> Scene:
        return self.frames[0]

    @property
    def source(self) -> str:
        if len(self.frames) == 1:
            return self.frames[0].source
        return f"{self.frames[0].source} (+{len(self.frames) - 1} frames)"

    @property
    def files(self) -> tuple[str, ...]:
        """The files of the chip's scenes (a band-file scene reads one file per band)."""
        return tuple(dict.fromkeys(f for frame in self.frames for f in frame.files))

    @property
    def sample_id(self) -> str:
        where = f"@{'_'.join(map(str, self.window))}" if self.window else f"#{self.draw}"
        return f"{self.frames[0].source}{where}"

    def __str__(self) -> str:
        where = f" window (row, col, h, w)={self.window}" if self.window else f" random chip {self.draw}"
        return f"{self.source}{where}"


def stable_hash(text: str) -> int:
    """A process-independent hash of a path (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode())


def random_window(rng: np.random.Generator, grid: TargetGrid, size: tuple[int, int]) -> PixelWindow:
    """A uniformly placed window of ``size`` inside the grid (the whole grid when it is smaller)."""
    h, w = min(size[0], grid.height), min(size[1], grid.width)
    row = int(rng.integers(0, grid.height - h + 1))
    col = int(rng.integers(0, grid.width - w + 1))
    return PixelWindow(row, col, h, w)


def window_rng(ref: ChipRef, seed: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, stable_hash(ref.frames[0].source), ref.draw, attempt))


def grid_windows(height: int, width: int, size: int, stride: int | None = None) -> list[PixelWindow]:
    """Windows of ``size`` every ``stride`` pixels covering the grid; the last row/column of windows is
    moved inward to end at the edge, so every pixel is covered and no window leaves the scene."""
    stride = stride or size
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")

    def starts(extent: int) -> list[int]:
        if extent <= size:
            return [0]
        out = list(range(0, extent - size + 1, stride))
        if out[-1] != extent - size:
            out.append(extent - size)
        return out

    h, w = min(size, height), min(size, width)
    return [PixelWindow(r, c, h, w) for r in starts(height) for c in starts(width)]


def chips_for_scene(grid: TargetGrid, chip_size: int, overlap_fraction: float = 0.0) -> int:
    """How many random chips a scene deserves: its area in chips (at least one)."""
    per_chip = chip_size * chip_size * (1.0 - overlap_fraction)
    return max(1, int(round(grid.height * grid.width / per_chip)))
