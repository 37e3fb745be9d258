"""Render input / masked / reconstruction panels for a person (2D images, any channel count).

Panel arrays are computed first (:func:`reconstruction_panels`, no matplotlib), then drawn
(:func:`save_panel_rows`). Every panel of one sample uses the same :class:`Stretch`, so the input and its
reconstruction can be compared pixel for pixel. The stretch is either the recorded range (an RGB photograph
or an H&E slide is shown as it is: ``meta["display_range"]`` gives, per channel, the values that are black
and white) or one 2-98 % percentile stretch of the sample's input, shared by its panels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HIDDEN_GRAY = 0.5  # masked pixels in the "masked" panel
PANEL_NAMES = ("input", "masked", "reconstruction + visible", "error on masked pixels")
PANEL_TITLE_PT = 10  # panel titles, readable at a glance
FIGURE_TITLE_PT = 12
ERROR_COLORMAP = "magma"  # error panels: black = no error, bright = the row's whole display range


@dataclass(frozen=True)
class Stretch:
    """How one sample's channels become a picture: the displayed ``channels`` and per channel the value
    shown black (``low``) and white (``high``); ``label`` says what is shown."""

    channels: tuple[int, ...]
    low: np.ndarray
    high: np.ndarray
    label: str


def default_rgb(image: np.ndarray) -> list[int]:
    return [0, 1, 2] if image.shape[0] >= 3 else [0]


def stretch_limits(image: np.ndarray, rgb_channels: Sequence[int], stretch: tuple[float, float] = (2, 98),
                   valid: np.ndarray | None = None) -> np.ndarray:
    """Per displayed channel ``(low, high)`` percentiles of the finite (valid) values: shape ``(k, 2)``."""
    limits = np.zeros((len(rgb_channels), 2), np.float32)
    for i, c in enumerate(rgb_channels):
        keep = np.isfinite(image[c]) & (valid if valid is not None else True)
        vals = image[c][keep]
        if vals.size:
            limits[i] = np.percentile(vals, stretch)
    return limits


def _channel_text(channels: Sequence[int], names: Sequence[str] | None) -> str:
    return ", ".join(str(names[c]) if names and c < len(names) else f"channel {c}" for c in channels)


def percentile_stretch(image: np.ndarray, channels: Sequence[int] | None = None, valid: np.ndarray | None = None,
                       names: Sequence[str] | None = None, percent: tuple[float, float] = (2, 98)) -> Stretch:
    """A 2-98 % stretch per displayed channel of ``image`` (the sample's input), to share with its panels."""
    channels = tuple(channels) if channels is not None else tuple(default_rgb(image))
    limits = stretch_limits(image, channels, percent, valid)
    kind = "gray" if len(channels) == 1 else "composite"
    return Stretch(channels, limits[:, 0], limits[:, 1],
                   f"{kind} ({_channel_text(channels, names)}), {percent[0]:g}-{percent[1]:g} % stretch shared by the row")


def recorded_stretch(display_range: Sequence[Sequence[float]], channels: Sequence[int] | None = None,
                     label: str = "RGB as recorded (no stretch)") -> Stretch:
    """The recorded range: ``display_range`` = per channel ``(black, white)`` in the array's values (after
    normalization: ``((0 - mean) / std, (1 - mean) / std)`` for a [0, 1] reading)."""
    limits = np.asarray(display_range, np.float32).reshape(-1, 2)
    channels = tuple(channels) if channels is not None else tuple(range(min(3, len(limits))))
    return Stretch(channels, limits[list(channels), 0], limits[list(channels), 1], label)


def sample_stretch(image: np.ndarray, meta: Mapping[str, Any] | None = None, valid: np.ndarray | None = None,
                   channels: Sequence[int] | None = None) -> Stretch:
    """The stretch of one sample: its recorded range when ``meta["display_range"]`` gives one (RGB
    photographs, H&E), else a percentile stretch of its input."""
    meta = meta or {}
    names = meta.get("channel_names")
    if meta.get("display_range") is not None and image.shape[0] == 3 and channels is None:
        return recorded_stretch(meta["display_range"], (0, 1, 2))
    return percentile_stretch(image, channels, valid, names)


def to_display(image: np.ndarray, rgb_channels: Sequence[int] | None = None, limits: np.ndarray | None = None,
               stretch: Stretch | None = None, hidden: np.ndarray | None = None) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W[, 3])`` in [0, 1] with ``stretch`` (or ``rgb_channels`` and ``limits``,
    default: this image's own 2-98 % stretch); ``hidden`` ``(H, W)`` and non-finite pixels are gray."""
    if stretch is None:
        channels = list(rgb_channels) if rgb_channels is not None else default_rgb(image)
        limits = stretch_limits(image, channels) if limits is None else limits
        stretch = Stretch(tuple(channels), limits[:, 0], limits[:, 1], "")
    chosen = np.stack([image[c] for c in stretch.channels], axis=-1).astype(np.float32)
    lo, hi = np.asarray(stretch.low, np.float32), np.asarray(stretch.high, np.float32)
    out = np.clip((chosen - lo) / np.maximum(hi - lo, 1e-8), 0, 1)
    gray = ~np.isfinite(chosen).all(axis=-1)
    if hidden is not None:
        gray |= hidden.astype(bool)
    out[gray] = HIDDEN_GRAY
    return out[..., 0] if out.shape[-1] == 1 else out


def error_picture(image: np.ndarray, recon: np.ndarray, hidden: np.ndarray, stretch: Stretch) -> np.ndarray:
    """``(H, W, 3)``: the mean absolute error of the displayed channels on the hidden pixels, in units of the
    row's display range (0 black, the whole range or more bright; visible pixels black), coloured with
    :data:`ERROR_COLORMAP`."""
    channels = list(stretch.channels)
    span = np.maximum(np.asarray(stretch.high, np.float32) - np.asarray(stretch.low, np.float32), 1e-8)
    error = np.abs(recon[channels] - image[channels]).astype(np.float32) / span[:, None, None]
    error = np.where(hidden[channels] & np.isfinite(error), error, 0.0).mean(axis=0)
    return matplotlib.colormaps[ERROR_COLORMAP](np.clip(error, 0, 1))[..., :3].astype(np.float32)


def is_gray(picture: np.ndarray, tolerance: float = 1 / 255) -> bool:
    """An RGB picture whose three channels agree (a gray image read as three channels)."""
    return picture.ndim == 3 and bool(np.abs(picture - picture[..., :1]).max() <= tolerance)


def reconstruction_panels(image: np.ndarray, recon: np.ndarray, hidden: np.ndarray,
                          stretch: Stretch) -> list[tuple[str, np.ndarray]]:
    """Input, masked input (hidden pixels gray), reconstruction with the visible pixels pasted back, all with
    the same ``stretch``, and the error on the hidden pixels (:func:`error_picture`). ``hidden`` is ``(H, W)``
    or per channel ``(C, H, W)``. A gray input read as three channels is drawn gray in every panel, so the
    small differences between the three predicted channels do not show as colour noise."""
    hidden = hidden.astype(bool)
    per_channel = hidden if hidden.ndim == 3 else np.broadcast_to(hidden, image.shape)
    shown_hidden = per_channel[list(stretch.channels)].any(axis=0)
    pasted = np.where(per_channel, recon, image)
    pictures = [to_display(image, stretch=stretch), to_display(image, stretch=stretch, hidden=shown_hidden),
                to_display(pasted, stretch=stretch)]
    if is_gray(pictures[0]):
        pictures = [p.mean(axis=-1) for p in pictures]
    pictures.append(error_picture(image, recon, per_channel, stretch))
    return list(zip(PANEL_NAMES, pictures))


def reconstruction_rows(images: np.ndarray, reconstructions: np.ndarray, pixel_masks: np.ndarray,
                        metas: Sequence[Mapping[str, Any]] | None = None, valid: np.ndarray | None = None,
                        rgb_channels: Sequence[int] | None = None) -> list[list[tuple[str, np.ndarray]]]:
    """One row of :func:`reconstruction_panels` per sample, each with its own shared stretch; the row's
    first title says what is shown."""
    rows = []
    for i in range(images.shape[0]):
        meta = metas[i] if metas is not None and i < len(metas) else {}
        sample_valid = None if valid is None else np.asarray(valid[i]).reshape(images.shape[-2:])
        stretch = sample_stretch(images[i], meta, sample_valid, rgb_channels)
        row = reconstruction_panels(images[i], reconstructions[i], pixel_masks[i] > 0.5, stretch)
        gray = row[0][1].ndim == 2 and len(stretch.channels) == 3
        row[0] = (f"input: {stretch.label}" + (", three equal channels drawn gray" if gray else ""), row[0][1])
        rows.append(row)
    return rows


def save_panel_rows(rows: Sequence[Sequence[tuple[str, np.ndarray]]], path: str | Path, title: str = "",
                    size: float = 3.2) -> Path:
    """A grid of titled pictures (one list of ``(title, (H, W) or (H, W, 3))`` per row), as PNG."""
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(size * cols, size * len(rows) + 0.3), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_axis_off()
            if j < len(row):
                name, picture = row[j]
                ax.imshow(np.clip(picture, 0, 1), cmap="gray" if picture.ndim == 2 else None, vmin=0, vmax=1,
                          interpolation="nearest")
                ax.set_title(name, fontsize=PANEL_TITLE_PT, wrap=True)
    if title:
        fig.suptitle(title, fontsize=FIGURE_TITLE_PT)
    return save_figure(fig, path)


def save_reconstruction_grid(images: np.ndarray, reconstructions: np.ndarray, pixel_masks: np.ndarray,
                             path: str | Path, rgb_channels: Sequence[int] | None = None, title: str = "",
                             metas: Sequence[Mapping[str, Any]] | None = None, valid: np.ndarray | None = None) -> Path:
    """One row per sample (:func:`reconstruction_rows`): input, masked input, reconstruction with the
    visible patches pasted, error on the masked pixels."""
    return save_panel_rows(reconstruction_rows(images, reconstructions, pixel_masks, metas, valid, rgb_channels),
                           path, title)


def save_figure(fig, path: str | Path, dpi: int = 80) -> Path:
    """Lay out, write atomically (temp file + rename) and close a matplotlib figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path
