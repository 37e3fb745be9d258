"""FG-MAE feature targets: HOG per band and normalized difference indices, for any remote-sensing adapter.

Selected with ``data.options.target``: ``pixels`` (default), ``hog``, ``indices`` or ``hog+indices``.

- HOG, as FG-MAE's ``HOGLayerC`` (from MaskFeat): per band, reflect-padded 3x3 Sobel gradients
  (``[[1, 0, -1], [2, 0, -2], [1, 0, -1]]`` and its transpose), magnitude ``sqrt(gx^2 + gy^2)``,
  unsigned orientation ``floor(atan2(gx, gy) / pi * 9) mod 9`` (hard assignment to 9 bins of 20 degrees),
  magnitudes weighted by a Gaussian window (side ``hog_window`` px, std half of it, tiled over the image),
  summed over 8x8 cells and L2-normalized over the bins of each cell (FG-MAE's ``--hog_norm``). A token's
  target lists, per band of the token (a band group's bands, padded), its cells' 9 bins.
- Indices from named bands in physical units (the per-band normalization is undone first):
  NDVI = (NIR - Red) / (NIR + Red), NDWI = (Green - NIR) / (Green + NIR) (McFeeters),
  NDBI = (SWIR1 - NIR) / (SWIR1 + NIR); NIR is B8 (else B8A), Red B4, Green B3, SWIR1 B11. A token's target
  is its patch of every index (channel last, as MAE's patchify); band-group tokens at one place share it.
- ``hog+indices``: FG-MAE's two losses summed: each part's values are weighted so the per-token loss is
  the mean of the parts' mean errors. ``model.norm_pix_loss`` normalizes each part per token (FG-MAE).

SAR (VV/VH/HH/HV bands) takes ``hog`` only. All statistics in fp32; weights are 0 for nodata cells/pixels
and for the padding slots of smaller band groups.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mae_domains.grid import GridLayout
from mae_domains.grid.batch import GridBatch, pixel_weights
from mae_domains.models.decoding import LinearHead, RoutedHead
from mae_domains.models.targets import normalize_valid_patches

TARGET_CHOICES = ("pixels", "hog", "indices", "hog+indices")
HOG_BINS = 9
HOG_CELL = 8
SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SAR_BANDS = frozenset({"VV", "VH", "HH", "HV"})

# index -> (name of the band pair role, candidate band names) for numerator (a - b) / (a + b)
NIR = ("NIR", ("B8", "B8A"))
RED = ("red", ("B4",))
GREEN = ("green", ("B3",))
SWIR1 = ("SWIR1", ("B11",))
INDEX_BANDS: dict[str, tuple[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...]]]] = {
    "NDVI": (NIR, RED),
    "NDWI": (GREEN, NIR),
    "NDBI": (SWIR1, NIR),
}
DEFAULT_INDICES = tuple(INDEX_BANDS)


# ----- features ------------------------------------------------------------------------------------
def gaussian_window(size: int, device: torch.device | None = None) -> torch.Tensor:
    """``(size, size)`` Gaussian summing to 1 with std ``size // 2`` (FG-MAE's ``get_gkern``)."""
    n = torch.arange(size, dtype=torch.float32, device=device)
    n = (n - n.mean()) / max(size // 2, 1)
    g = torch.exp(-0.5 * n**2)
    kernel = g[:, None] * g[None, :]
    return kernel / kernel.sum()


def hog_cells(images: torch.Tensor, bins: int = HOG_BINS, cell: int = HOG_CELL, window: int = 16,
              normalize: bool = True) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, bins, H / cell, W / cell)``: FG-MAE's HOG of every band on its own.

    ``window`` = 0 switches the Gaussian weighting off; otherwise H and W must be multiples of it."""
    x = images.float()
    n, c, h, w = x.shape
    if h % cell or w % cell:
        raise ValueError(f"HOG needs an image size divisible by the {cell} px cell, got {h}x{w}")
    flat = F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="reflect")
    kx = torch.tensor(SOBEL_X, dtype=torch.float32, device=x.device).view(1, 1, 3, 3)
    gx = F.conv2d(flat, kx)
    gy = F.conv2d(flat, kx.transpose(2, 3))
    magnitude = torch.sqrt(gx**2 + gy**2)
    bin_index = torch.floor(torch.atan2(gx, gy) / math.pi * bins).long() % bins
    if window:
        if h % window or w % window:
            raise ValueError(f"HOG Gaussian window of {window} px does not tile a {h}x{w} image "
                             "(set data.options.hog_window to a divisor, or 0 for none)")
        magnitude = magnitude * gaussian_window(window, x.device).repeat(h // window, w // window)
    # sum each pixel's magnitude straight into its (bin, cell): no (bins, H, W) histogram in memory
    gh, gw = h // cell, w // cell
    rows = torch.arange(h, device=x.device) // cell
    cols = torch.arange(w, device=x.device) // cell
    cell_index = (rows[:, None] * gw + cols[None, :]).reshape(1, -1)
    slot = bin_index.reshape(n * c, -1) * (gh * gw) + cell_index
    cells = torch.zeros(n * c, bins * gh * gw, dtype=torch.float32, device=x.device)
    cells.scatter_add_(1, slot, magnitude.reshape(n * c, -1))
    cells = cells.reshape(n * c, bins, gh, gw)
    if normalize:
        cells = F.normalize(cells, p=2, dim=1)
    return cells.reshape(n, c, bins, h // cell, w // cell)


def normalized_difference(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a - b) / (a + b)`` clipped to [-1, 1], and where it is defined (``a + b`` above ``eps``)."""
    a, b = a.float(), b.float()
    total = a + b
    defined = total.abs() > eps
    value = torch.where(defined, (a - b) / torch.where(defined, total, torch.ones_like(total)), torch.zeros_like(total))
    return value.clamp(-1.0, 1.0), defined


def index_band_positions(band_names: Sequence[str], indices: Sequence[str]) -> list[tuple[int, int]]:
    """Band positions ``(a, b)`` of each index; a missing band is a one-line ``ValueError``."""
    positions = []
    for index in indices:
        if index not in INDEX_BANDS:
            raise ValueError(f"unknown index {index!r} in data.options.indices; use {', '.join(INDEX_BANDS)}")
        pair = []
        for role, candidates in INDEX_BANDS[index]:
            found = [band_names.index(c) for c in candidates if c in band_names]
            if not found:
                raise ValueError(f"target indices: {index} needs the {role} band {' or '.join(candidates)}, "
                                 f"not among bands {list(band_names)}")
            pair.append(found[0])
        positions.append((pair[0], pair[1]))
    return positions


def spectral_indices(images: torch.Tensor, valid: torch.Tensor, positions: Sequence[tuple[int, int]],
                     eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``(..., C, H, W)`` physical values and validity -> indices ``(..., I, H, W)`` and their weights."""
    values, weights = [], []
    for a, b in positions:
        value, defined = normalized_difference(images[..., a, :, :], images[..., b, :, :], eps)
        values.append(value)
        weights.append((defined & (valid[..., a, :, :] > 0) & (valid[..., b, :, :] > 0)).float())
    return torch.stack(values, dim=-3), torch.stack(weights, dim=-3)


# ----- the target ----------------------------------------------------------------------------------
def parse_target(value: Any) -> tuple[str, ...]:
    """``"hog+indices"`` -> ``("hog", "indices")``; ``"pixels"`` -> ``()``."""
    text = str(value).strip().lower()
    if text not in TARGET_CHOICES:
        raise ValueError(f"data.options.target must be one of {', '.join(TARGET_CHOICES)}, got {value!r}")
    return () if text == "pixels" else tuple(text.split("+"))


def check_target_bands(parts: Sequence[str], band_names: Sequence[str], indices: Sequence[str]) -> None:
    """Refuse indices on SAR bands and indices whose bands are not selected (one line each)."""
    if "indices" not in parts:
        return
    sar = [b for b in band_names if str(b).upper() in SAR_BANDS]
    if sar:
        raise ValueError(f"data.options.target: SAR bands {sar} have no spectral indices; use target: hog")
    index_band_positions(list(band_names), indices)


class FeatureTarget:
    """``(target, weight)`` ``(B, N, P)`` of HOG and/or indices in the embedding's token order.

    Works for single images ``(B, C, H, W)`` and frames ``(B, T, C, H, W)`` (grid axis ``time``), with all
    bands per token or band groups (grid axis ``group``, the embedding's ``slot_bands``)."""

    def __init__(self, parts: Sequence[str], band_names: Sequence[str], patch_size: int,
                 indices: Sequence[str] = DEFAULT_INDICES, hog_window: int | None = None,
                 norm_per_token: bool = False, hog_norm: bool = True) -> None:
        if not parts:
            raise ValueError("FeatureTarget needs 'hog' and/or 'indices'")
        self.parts = tuple(parts)
        self.band_names = list(band_names)
        self.patch_size = int(patch_size)
        self.indices = tuple(indices)
        self.positions = index_band_positions(self.band_names, self.indices) if "indices" in parts else []
        if "hog" in parts and self.patch_size % HOG_CELL:
            raise ValueError(f"target hog needs model.patch_size divisible by the {HOG_CELL} px cell, "
                             f"got {self.patch_size}")
        self.hog_window = self.patch_size if hog_window is None else int(hog_window)
        self.norm_per_token = norm_per_token
        self.hog_norm = hog_norm

    def __repr__(self) -> str:
        return f"FeatureTarget({'+'.join(self.parts)}, indices={list(self.indices)}, hog_window={self.hog_window})"

    # ----- sizes ---------------------------------------------------------------------------------
    @property
    def cells_per_patch(self) -> int:
        return self.patch_size // HOG_CELL

    def slots(self, embedding: nn.Module) -> int:
        """Bands per token: a band group's (padded) size, else every band."""
        return int(embedding.max_group) if hasattr(embedding, "slot_bands") else len(self.band_names)

    def part_dims(self, embedding: nn.Module) -> dict[str, int]:
        dims = {}
        if "hog" in self.parts:
            dims["hog"] = self.slots(embedding) * HOG_BINS * self.cells_per_patch**2
        if "indices" in self.parts:
            dims["indices"] = len(self.indices) * self.patch_size**2
        return dims

    def output_dim(self, embedding: nn.Module) -> int:
        return sum(self.part_dims(embedding).values())

    # ----- token coordinates ---------------------------------------------------------------------
    def token_slots(self, embedding: nn.Module, layout: GridLayout, bands: int, device) -> torch.Tensor:
        """``(N, slots)`` band index per target slot; ``bands`` (the extra zero band) for padding."""
        if hasattr(embedding, "slot_bands") and "group" in layout.names:
            table = embedding.slot_bands.to(device)
            table = torch.where(table == int(embedding.num_bands), torch.full_like(table, bands), table)
            return table[layout.coordinates("group", device)]
        return torch.arange(bands, device=device).expand(layout.num_tokens, -1)

    @staticmethod
    def token_places(layout: GridLayout, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frame = layout.coordinates("time", device) if "time" in layout.names else \
            torch.zeros(layout.num_tokens, dtype=torch.int64, device=device)
        return frame, layout.coordinates("y", device), layout.coordinates("x", device)

    # ----- computation ---------------------------------------------------------------------------
    def physical(self, batch: GridBatch, images: torch.Tensor) -> torch.Tensor:
        """Undo the per-band normalization (``meta`` ``band_mean``/``band_std`` ``(B, C)``, when given)."""
        mean, std = batch.meta.get("band_mean"), batch.meta.get("band_std")
        if mean is None or std is None:
            return images
        shape = (images.shape[0], 1, images.shape[2], 1, 1)
        std = std.to(images.device, torch.float32).reshape(shape)
        return images * std + mean.to(images.device, torch.float32).reshape(shape)

    def hog_part(self, images: torch.Tensor, valid: torch.Tensor, embedding,
                 layout) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, c, h, w = images.shape
        k, gh, gw = self.cells_per_patch, h // self.patch_size, w // self.patch_size
        cells = hog_cells(images.reshape(b * s, c, h, w), window=self.hog_window, normalize=self.hog_norm)
        cell_valid = -F.max_pool2d(-valid.reshape(b * s, c, h, w), HOG_CELL)  # 1 where all pixels are valid
        cell_valid = cell_valid.unsqueeze(2).expand(-1, -1, HOG_BINS, -1, -1)

        def per_patch(x: torch.Tensor) -> torch.Tensor:  # (B*S, C, bins, gh*k, gw*k) -> (B, S*(C+1)*gh*gw, bins*k*k)
            x = x.reshape(b, s, c, HOG_BINS, gh, k, gw, k).permute(0, 1, 2, 4, 6, 3, 5, 7)
            x = x.reshape(b, s, c, gh, gw, HOG_BINS * k * k)
            x = torch.cat([x, torch.zeros_like(x[:, :, :1])], dim=2)
            return x.reshape(b, -1, HOG_BINS * k * k)

        frame, y, x = self.token_places(layout, images.device)
        slots = self.token_slots(embedding, layout, c, images.device)
        rows = ((frame[:, None] * (c + 1) + slots) * gh + y[:, None]) * gw + x[:, None]  # (N, slots)
        index = rows.reshape(1, -1, 1).expand(b, -1, HOG_BINS * k * k)
        target = torch.gather(per_patch(cells), 1, index).reshape(b, layout.num_tokens, -1)
        weight = torch.gather(per_patch(cell_valid), 1, index).reshape(b, layout.num_tokens, -1)
        return target, weight

    def index_part(self, batch: GridBatch, images: torch.Tensor, valid: torch.Tensor,
                   layout) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, _, h, w = images.shape
        p, gh, gw = self.patch_size, h // self.patch_size, w // self.patch_size
        values, weights = spectral_indices(self.physical(batch, images), valid, self.positions)

        def per_patch(x: torch.Tensor) -> torch.Tensor:  # (B, S, I, H, W) -> (B, S*gh*gw, p*p*I)
            n = x.shape[2]
            x = x.reshape(b, s, n, gh, p, gw, p).permute(0, 1, 3, 5, 4, 6, 2)
            return x.reshape(b, s * gh * gw, p * p * n)

        frame, y, x = self.token_places(layout, images.device)
        rows = (frame * gh + y) * gw + x
        return per_patch(values)[:, rows], per_patch(weights)[:, rows]

    def __call__(self, batch: GridBatch, embedding: nn.Module, layout: GridLayout) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(batch.images.device.type, enabled=False):  # fp32 gradients, histograms and ratios
            return self.compute(batch, embedding, layout)

    def compute(self, batch: GridBatch, embedding: nn.Module, layout: GridLayout) -> tuple[torch.Tensor, torch.Tensor]:
        images = (batch.target_images if batch.target_images is not None else batch.images).float()
        valid = pixel_weights(batch, images, embedding.channel_dim).float()
        if images.ndim == 4:  # single images: one frame
            images, valid = images.unsqueeze(1), valid.unsqueeze(1)
        if images.shape[2] != len(self.band_names):
            raise ValueError(f"feature target built for bands {self.band_names}, got {images.shape[2]} bands")
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        if "hog" in self.parts:
            parts.append(self.hog_part(images, valid, embedding, layout))
        if "indices" in self.parts:
            parts.append(self.index_part(batch, images, valid, layout))
        targets, weights = [], []
        for target, weight in parts:
            if self.norm_per_token:
                target = normalize_valid_patches(target, weight)
            # each part counts as much as the others, whatever its width (FG-MAE sums the parts' losses)
            weights.append(weight / target.shape[-1] * (self.output_dim(embedding) / len(parts)))
            targets.append(target * (weight > 0))
        return torch.cat(targets, dim=-1), torch.cat(weights, dim=-1)


def fit_head(model: nn.Module, out_dim: int) -> nn.Module:
    """Give a GridMAE a prediction head of width ``out_dim`` (same kind: shared or one per route)."""
    head = model.head
    if isinstance(head, RoutedHead):
        model.head = RoutedHead(head.heads[0].in_features, out_dim, head.axis, len(head.heads))
    elif isinstance(head, LinearHead):
        model.head = LinearHead(head.pred.in_features, out_dim)
    else:
        raise TypeError(f"feature targets need a LinearHead or RoutedHead, not {type(head).__name__}")
    return model


def build_feature_target(options: dict[str, Any], band_names: Sequence[str], patch_size: int,
                         norm_pix: bool) -> FeatureTarget | None:
    """The run's feature target from adapter options (None for ``pixels``)."""
    parts = parse_target(options.get("target", "pixels"))
    if not parts:
        return None
    window = options.get("hog_window")
    return FeatureTarget(parts, band_names, patch_size, tuple(options.get("indices") or DEFAULT_INDICES),
                         hog_window=None if window is None else int(window), norm_per_token=norm_pix)
