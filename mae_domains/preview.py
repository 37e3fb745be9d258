"""A picture of one sample as an adapter read it, for a person checking their data (``mae-domains inspect``).

One channel is drawn gray and three channels as RGB; more channels give a colour composite and one labelled
panel per channel; a time series gives one panel per frame (a single frame is drawn like a 2D sample) and a
volume its three middle slices. When the
metadata lists wavelengths (nm), the composite uses the channels nearest red, green and blue. Values already
in [0, 1] are shown as they are; others are stretched per channel between their 1st and 99th percentiles.
Invalid (nodata) pixels are drawn magenta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mae_domains.visualize import FIGURE_TITLE_PT, PANEL_TITLE_PT, save_figure  # noqa: E402

NODATA_RGB = (1.0, 0.0, 1.0)
RGB_NM = (650.0, 555.0, 470.0)  # red, green, blue
MAX_NM_OFF = 60.0  # a channel farther than this from a colour does not stand in for it
MAX_COLUMNS = 5


def sample_axes(image: np.ndarray, meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the axes of a sample as read: ``meta["axes"]`` when the adapter gives them; else
    ``(y, x)``, ``(channel, y, x)``, ``(time, channel, y, x)`` for 4-D data with one date per leading entry,
    or ``(channel, z, y, x)`` for other 4-D data (a volume)."""
    given = meta.get("axes")
    if given is not None:
        axes = tuple(str(a) for a in given)
        if len(axes) != image.ndim:
            raise ValueError(f"meta['axes'] {axes} does not match an array of shape {image.shape}")
        return axes
    if image.ndim == 2:
        return ("y", "x")
    if image.ndim == 3:
        return ("channel", "y", "x")
    if image.ndim == 4:
        dates = meta.get("dates") or []
        return ("time", "channel", "y", "x") if len(dates) == image.shape[0] else ("channel", "z", "y", "x")
    raise ValueError(f"cannot preview an array of shape {image.shape}: expected 2 to 4 axes")


def full_validity(valid: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The validity mask broadcast to the image's shape (all valid when there is none)."""
    if valid is None:
        return np.ones(shape, dtype=bool)
    try:
        return np.broadcast_to(np.asarray(valid, dtype=bool), shape)
    except ValueError:
        raise ValueError(f"validity mask of shape {np.shape(valid)} does not fit an image of shape {shape}") from None


def composite_channels(count: int, wavelengths: Sequence[float | None] | None = None) -> list[int] | None:
    """Three channels for a colour picture: the ones nearest red, green and blue when every colour has a
    channel within ``MAX_NM_OFF`` nm, else the first three; None for fewer than three channels."""
    if count < 3:
        return None
    known = [(i, float(w)) for i, w in enumerate(wavelengths or []) if w is not None]
    if known:
        picked = [min(known, key=lambda item: abs(item[1] - nm)) for nm in RGB_NM]
        if all(abs(w - nm) <= MAX_NM_OFF for (_, w), nm in zip(picked, RGB_NM)) and len({i for i, _ in picked}) == 3:
            return [i for i, _ in picked]
    return [0, 1, 2]


def display_limits(channels: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-channel ``(low, high)`` of ``(C, ...)`` data: ``(0, 1)`` when all valid values lie in [0, 1], else
    the 1st and 99th percentiles; and a note saying which."""
    limits = np.zeros((channels.shape[0], 2), np.float64)
    values = [c[v & np.isfinite(c)] for c, v in zip(channels, valid)]
    if all(v.size == 0 or (v.min() >= 0.0 and v.max() <= 1.0) for v in values):
        limits[:, 1] = 1.0
        return limits, "as read, 0-1"
    for k, v in enumerate(values):
        if v.size:
            limits[k] = np.percentile(v, [1, 99])
    return limits, "stretched 1-99 %"


def to_picture(planes: np.ndarray, valid: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """``(k, H, W)`` planes (1 gray or 3 RGB) -> ``(H, W, 3)`` in [0, 1], invalid pixels magenta."""
    low, high = limits[:, 0, None, None], limits[:, 1, None, None]
    scaled = np.clip((planes - low) / np.maximum(high - low, 1e-12), 0.0, 1.0)
    scaled = np.where(np.isfinite(scaled), scaled, 0.0)
    picture = np.repeat(scaled, 3, axis=0) if planes.shape[0] == 1 else scaled
    picture = np.moveaxis(picture, 0, -1).astype(np.float32)
    picture[~valid.all(axis=0)] = NODATA_RGB
    return picture


def channel_label(index: int, names: Sequence[str] | None, wavelengths: Sequence[float | None] | None) -> str:
    name = str(names[index]) if names and index < len(names) else f"channel {index}"
    nm = wavelengths[index] if wavelengths and index < len(wavelengths) else None
    return f"{name} ({nm:g} nm)" if nm is not None else name


def _panels_2d(image: np.ndarray, valid: np.ndarray, names, wavelengths, note: str, limits: np.ndarray,
               prefix: str = "", per_channel: bool = True) -> list[tuple[str, np.ndarray]]:
    """Panels of one ``(C, H, W)`` plane set: gray, RGB, or a composite plus (``per_channel``) each channel."""
    count = image.shape[0]
    if count == 1:
        return [(f"{prefix}{channel_label(0, names, wavelengths)}, {note}", to_picture(image, valid, limits))]
    panels = []
    rgb = composite_channels(count, wavelengths)
    if rgb is not None:
        if count == 3 and rgb == [0, 1, 2] and not wavelengths:
            return [(f"{prefix}RGB, {note}", to_picture(image, valid, limits))]
        shown = "/".join(channel_label(i, names, None) for i in rgb)
        panels.append((f"{prefix}composite {shown}, {note}", to_picture(image[rgb], valid[rgb], limits[rgb])))
    if per_channel or rgb is None:
        for i in range(count):
            panels.append((f"{prefix}{channel_label(i, names, wavelengths)}",
                           to_picture(image[i:i + 1], valid[i:i + 1], limits[i:i + 1])))
    return panels


def preview_panels(image: np.ndarray, meta: Mapping[str, Any], valid: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
    """Titled ``(H, W, 3)`` pictures of one sample (see the module docstring for the layout)."""
    image = np.asarray(image, dtype=np.float32)
    axes = sample_axes(image, meta)
    mask = full_validity(valid, image.shape)
    if "channel" not in axes:  # (y, x) or (z, y, x) without channels: add one
        image, mask, axes = image[None], mask[None], ("channel",) + axes
    names = meta.get("channel_names")
    wavelengths = meta.get("wavelengths")
    c = axes.index("channel")
    image, mask = np.moveaxis(image, c, 0), np.moveaxis(mask, c, 0)  # channels first
    rest = axes[:c] + axes[c + 1:]
    flat = image.reshape(image.shape[0], -1)
    limits, note = display_limits(flat, mask.reshape(mask.shape[0], -1))
    if rest == ("y", "x"):
        return _panels_2d(image, mask, names, wavelengths, note, limits)
    if rest == ("time", "y", "x"):
        frames = image.shape[1]
        dates = list(meta.get("dates") or [])
        labels = [str(dates[t]) if t < len(dates) and dates[t] else (f"frame {t}" if frames > 1 else "")
                  for t in range(frames)]
        return [panel for t in range(frames)
                for panel in _panels_2d(image[:, t], mask[:, t], names, wavelengths, note, limits,
                                        prefix=f"{labels[t]}: " if labels[t] else "", per_channel=frames == 1)]
    if rest == ("z", "y", "x"):
        depth, height, width = image.shape[1:]
        slices = (("axial", np.s_[:, depth // 2]), ("coronal", np.s_[:, :, height // 2]),
                  ("sagittal", np.s_[:, :, :, width // 2]))
        return [panel for view, where in slices
                for panel in _panels_2d(image[where], mask[where], names, wavelengths, note, limits,
                                        prefix=f"{view} middle: ", per_channel=image.shape[0] <= 3)]
    raise ValueError(f"cannot preview axes {axes}; expected (channel,) y, x with an optional time or z axis")


def save_sample_preview(image: np.ndarray, path: str | Path, meta: Mapping[str, Any] | None = None,
                        valid: np.ndarray | None = None, title: str = "") -> Path:
    """Draw :func:`preview_panels` in a grid of at most ``MAX_COLUMNS`` columns and save it as PNG."""
    panels = preview_panels(image, meta or {}, valid)
    cols = min(MAX_COLUMNS, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.8 * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k < len(panels):
            name, picture = panels[k]
            ax.imshow(picture, interpolation="nearest")
            ax.set_title(name, fontsize=PANEL_TITLE_PT)
    if title:
        fig.suptitle(title, fontsize=FIGURE_TITLE_PT)
    return save_figure(fig, path)
