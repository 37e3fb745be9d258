"""Pictures of multispectral chips for a person: colour composites chosen by wavelength and labelled by
what they show, the mask of every band group, and the reconstruction, all with one stretch per chip.

- Composites: true colour = the bands nearest red, green and blue (labelled ``true colour (B4, B3, B2)``);
  the vegetation composite = near infrared, red, green (``false colour (B8, B4, B3)``). Only a composite
  with a band outside the visible range is called false colour; bands of unknown wavelength make a
  plain ``composite (...)``.
- Stretch: per displayed band, the 2-98 % percentiles of the chip's valid *input* pixels, shared by the
  input, masked, reconstruction and pasted panels (and by all frames of a time series), so brightness
  is comparable across a row.
- Masks: band groups are masked independently, so each group's hidden pixels get their own panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from mae_domains.visualize import HIDDEN_GRAY, Stretch, save_panel_rows, stretch_limits, to_display
from mae_remote_sensing.bands import FALSE_COLOUR, TRUE_COLOUR, normalize_band_name, wavelength_of

VISIBLE_NM = (380.0, 700.0)
# (low, high, centre) in nm of the display colours and of near infrared
RED, GREEN, BLUE, NIR = (620.0, 700.0, 665.0), (500.0, 600.0, 560.0), (430.0, 500.0, 490.0), (760.0, 900.0, 842.0)


def band_wavelengths(band_names: Sequence[str], wavelengths: Sequence[float | None] | None = None) -> list[float | None]:
    """Centre wavelength (nm) per band: as given (a sample's ``meta["wavelengths"]``), else by band name."""
    if wavelengths is not None and len(wavelengths) == len(band_names):
        return [None if w is None else float(w) for w in wavelengths]
    return [wavelength_of(b) for b in band_names]


def _nearest(waves: Sequence[float | None], window: tuple[float, float, float]) -> int | None:
    low, high, centre = window
    inside = [(abs(w - centre), i) for i, w in enumerate(waves) if w is not None and low <= w <= high]
    return min(inside)[1] if inside else None


def _by_name(band_names: Sequence[str], wanted: Sequence[str]) -> list[int] | None:
    names = [normalize_band_name(b) for b in band_names]
    return [names.index(w) for w in wanted] if all(w in names for w in wanted) else None


def true_colour_indices(band_names: Sequence[str], wavelengths: Sequence[float | None] | None = None) -> list[int] | None:
    """The bands nearest red, green and blue (by wavelength, else by Sentinel-2 name); None without them."""
    waves = band_wavelengths(band_names, wavelengths)
    picked = [_nearest(waves, w) for w in (RED, GREEN, BLUE)]
    if all(p is not None for p in picked) and len(set(picked)) == 3:
        return picked  # type: ignore[return-value]
    return _by_name(band_names, TRUE_COLOUR) if all(w is None for w in waves) else None


def false_colour_indices(band_names: Sequence[str], wavelengths: Sequence[float | None] | None = None) -> list[int] | None:
    """Near infrared, red and green (the vegetation composite); None without them."""
    waves = band_wavelengths(band_names, wavelengths)
    picked = [_nearest(waves, w) for w in (NIR, RED, GREEN)]
    if all(p is not None for p in picked) and len(set(picked)) == 3:
        return picked  # type: ignore[return-value]
    return _by_name(band_names, FALSE_COLOUR) if all(w is None for w in waves) else None


def composite_indices(band_names: Sequence[str], wavelengths: Sequence[float | None] | None = None) -> list[int]:
    """The main composite: true colour when the bands allow, else the first three bands (or the first)."""
    return true_colour_indices(band_names, wavelengths) or ([0, 1, 2] if len(band_names) >= 3 else [0])


def composite_label(band_names: Sequence[str], indices: Sequence[int],
                    wavelengths: Sequence[float | None] | None = None) -> str:
    """What a composite of ``indices`` (shown as red, green, blue) is: true colour, false colour (a band
    outside the visible range), a visible composite in another order, or a composite of unknown bands."""
    waves = band_wavelengths(band_names, wavelengths)
    names = ", ".join(str(band_names[i]) for i in indices)
    chosen = [waves[i] for i in indices]
    if len(indices) == 1:
        return f"gray ({names})"
    if any(w is None for w in chosen):
        return f"composite ({names} as red, green, blue)"
    if any(not VISIBLE_NM[0] <= w <= VISIBLE_NM[1] for w in chosen):  # type: ignore[operator]
        return f"false colour ({names})"
    if all(a > b for a, b in zip(chosen, chosen[1:])):  # type: ignore[operator]
        return f"true colour ({names})"
    return f"visible bands ({names} as red, green, blue)"


def chip_limits(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``(C, 2)`` 2-98 % limits per band of a chip's input ``(C, H, W)`` or frames ``(T, C, H, W)``, over
    valid pixels: the one stretch all panels (and frames) of the chip share."""
    bands = image if image.ndim == 3 else np.moveaxis(image, 1, 0).reshape(image.shape[1], -1, image.shape[-1])
    mask = None
    if valid is not None:
        valid = np.asarray(valid, bool)
        mask = valid.reshape(bands.shape[1:]) if valid.size == bands[0].size else None
    return stretch_limits(bands, list(range(bands.shape[0])), valid=mask)


def _stretch(indices: Sequence[int], limits: np.ndarray, label: str) -> Stretch:
    return Stretch(tuple(indices), limits[list(indices), 0], limits[list(indices), 1], label)


def _rgb(picture: np.ndarray) -> np.ndarray:
    return np.repeat(picture[..., None], 3, axis=-1) if picture.ndim == 2 else picture


def composite(image: np.ndarray, band_names: Sequence[str], indices: Sequence[int] | None = None,
              hidden: np.ndarray | None = None, limits: np.ndarray | None = None) -> np.ndarray:
    """``(C, H, W)`` -> ``(H, W, 3)`` composite of ``indices`` (default: true colour) with ``limits``
    (default: this image's own stretch); ``hidden`` ``(H, W)`` pixels are gray."""
    indices = list(indices) if indices is not None else composite_indices(band_names)
    limits = chip_limits(image) if limits is None else limits
    return _rgb(to_display(image, stretch=_stretch(indices, limits, ""), hidden=hidden))


def chip_panels(image: np.ndarray, recon: np.ndarray, hidden: np.ndarray, band_names: Sequence[str],
                label: str = "", groups: dict[str, Sequence[int]] | None = None,
                limits: np.ndarray | None = None, valid: np.ndarray | None = None,
                wavelengths: Sequence[float | None] | None = None) -> list[tuple[str, np.ndarray]]:
    """Input (true colour, and false colour where the bands allow), the masked input of each band group
    (``groups``: name -> band indices; one panel when every group has the same mask), the reconstruction
    and the reconstruction with the visible pixels pasted back. ``hidden`` is ``(C, H, W)`` per band (or
    ``(H, W)``); ``limits`` (default :func:`chip_limits` of ``image``) is shared by every panel."""
    hidden = np.asarray(hidden, bool)
    per_band = hidden if hidden.ndim == 3 else np.broadcast_to(hidden, image.shape)
    limits = chip_limits(image, valid) if limits is None else limits
    main = composite_indices(band_names, wavelengths)
    composites = [(main, composite_label(band_names, main, wavelengths))]
    false = false_colour_indices(band_names, wavelengths)
    if false is not None and false != main:
        composites.append((false, composite_label(band_names, false, wavelengths)))
    main_stretch = _stretch(main, limits, composites[0][1])
    prefix = f"{label} " if label else ""
    panels = [(f"{prefix}input: {text}", _rgb(to_display(image, stretch=_stretch(idx, limits, text))))
              for idx, text in composites]
    masks = {name: per_band[list(idx)].any(axis=0) for name, idx in (groups or {"all bands": range(len(band_names))}).items()}
    if len({m.tobytes() for m in masks.values()}) == 1:
        masks = {"every group" if groups and len(groups) > 1 else next(iter(masks)): next(iter(masks.values()))}
    for name, mask in masks.items():
        title = f"masked: {name}" if groups else "masked"
        panels.append((title, _rgb(to_display(image, stretch=main_stretch, hidden=mask))))
    pasted = np.where(per_band, recon, image)
    panels += [(f"reconstruction: {text}", _rgb(to_display(recon, stretch=_stretch(idx, limits, text))))
               for idx, text in composites]
    panels.append((f"recon. + visible: {composites[0][1]}", _rgb(to_display(pasted, stretch=main_stretch))))
    return panels


def save_panels(rows: Sequence[Sequence[tuple[str, np.ndarray]]], path: str | Path, title: str = "") -> Path:
    """A grid of titled images (one list of ``(title, HxWx3)`` per row), written atomically as PNG."""
    return save_panel_rows(rows, path, title, size=2.4)


__all__ = ["HIDDEN_GRAY", "band_wavelengths", "chip_limits", "chip_panels", "composite", "composite_indices",
           "composite_label", "false_colour_indices", "save_panels", "true_colour_indices"]
