"""Scale-MAE's frequency targets and the upsampling heads that reconstruct them (Reed et al. 2023).

From a dense decoder grid ``(B, Dd, gh, gw)`` two heads upsample to their own scales. The target image
may be larger than the input (``target_scale``: Scale-MAE reconstructs a 448 px target from a 224 px
input, so its high band is at 2x the input and its low band at 1x):

- **low frequency**: the target area-averaged to ``low_scale`` of its size (half by default), scored with
  L2 (Scale-MAE ``target_low = interpolate(imgs, pred_low.shape, mode="area")``);
- **high frequency**: the residual ``x - up(down(x))`` at the target's resolution, ``down`` an area average
  to ``residual_size`` (Scale-MAE's ``band_config[0]``: 7 in ``main_pretrain.py``), ``up`` bilinear
  (``target_high = imgs - interpolate(interpolate(imgs, dim1, "area"), size, "bilinear")``), scored with
  L2 (the reference's default) or L1 (``--use_l1_loss``).

Both losses count masked pixels only (the token mask upsampled nearest to each scale, as in the
reference) and valid pixels only. ``reduction="band_sum"`` is Scale-MAE's ``forward_loss``: errors summed
over bands, divided by the number of masked pixels (a loss C times the per-value mean for C bands);
``"mean"`` averages over bands too. Any band count works (the heads end in ``out_chans`` channels).
Everything is computed in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def area_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x.float(), size=size, mode="area")


def low_pass_target(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The low-frequency target: ``images`` ``(B, C, H, W)`` area-averaged to ``size``."""
    return area_resize(images, size)


def high_pass_target(images: torch.Tensor, residual_size: tuple[int, int]) -> torch.Tensor:
    """The high-frequency target ``x - up(down(x))``: area average to ``residual_size``, bilinear back."""
    x = images.float()
    smooth = F.interpolate(area_resize(x, residual_size), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x - smooth


def token_mask_image(mask: torch.Tensor, grid_hw: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Token mask ``(B, N)`` (1 = hidden) as a ``(B, 1, *size)`` pixel map, nearest upsampling."""
    m = mask.float().reshape(mask.shape[0], 1, *grid_hw)
    return F.interpolate(m, size=size, mode="nearest")


REDUCTIONS = ("band_sum", "mean")
HIGH_LOSSES = ("l2", "l1")


def masked_mean(error: torch.Tensor, weight: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``sum(error * weight) / sum(weight)`` with the weight broadcast over channels: per value (``mean``),
    or per pixel with the channels summed (``band_sum``: the denominator counts each pixel once)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"loss reduction must be one of {REDUCTIONS}, got {reduction!r}")
    weight = weight.expand_as(error)
    count = weight.sum() / error.shape[1] if reduction == "band_sum" else weight.sum()
    return (error * weight).sum() / count.clamp_min(1e-9)


@dataclass
class FrequencyLoss:
    """The parts of the loss: ``total = low + high_weight * high``."""

    total: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor


def frequency_loss(pred_low: torch.Tensor, pred_high: torch.Tensor, images: torch.Tensor, mask: torch.Tensor,
                   grid_hw: tuple[int, int], valid: torch.Tensor | None = None,
                   residual_size: tuple[int, int] | None = None, high_weight: float = 1.0,
                   reduction: str = "mean", high_loss: str = "l1") -> FrequencyLoss:
    """L2 on the low-pass target at ``pred_low``'s size plus ``high_weight`` x L2 or L1 (``high_loss``) on the
    residual at ``pred_high``'s size, over masked (and valid) pixels, reduced per value or per pixel
    (``reduction``). ``valid`` ``(B, 1 or C, H, W)`` at the target's resolution; a low-resolution pixel counts
    when all the pixels it averages are valid. A prediction larger than the target (a head at 2x scored on a
    batch that has no 2x target) is area-averaged to the target's size."""
    if high_loss not in HIGH_LOSSES:
        raise ValueError(f"high-frequency loss must be one of {HIGH_LOSSES}, got {high_loss!r}")
    images = images.float()
    residual_size = residual_size or grid_hw
    image_size = tuple(images.shape[-2:])
    if pred_high.shape[-2] > image_size[0]:
        pred_high = area_resize(pred_high, image_size)
    if pred_low.shape[-2] > image_size[0]:
        pred_low = area_resize(pred_low, image_size)
    low_size, high_size = tuple(pred_low.shape[-2:]), tuple(pred_high.shape[-2:])
    target_low = low_pass_target(images, low_size)
    target_high = high_pass_target(images, residual_size)
    if tuple(target_high.shape[-2:]) != high_size:
        target_high = area_resize(target_high, high_size)
    weight_low = token_mask_image(mask, grid_hw, low_size)
    weight_high = token_mask_image(mask, grid_hw, high_size)
    if valid is not None:
        valid = valid.float()
        weight_low = weight_low * (area_resize(valid, low_size) > 1 - 1e-6).float()
        weight_high = weight_high * (area_resize(valid, high_size) > 1 - 1e-6).float()
    low = masked_mean((pred_low.float() - target_low) ** 2, weight_low, reduction)
    error = pred_high.float() - target_high
    high = masked_mean(error.abs() if high_loss == "l1" else error ** 2, weight_high, reduction)
    return FrequencyLoss(low + high_weight * high, low, high)


def combine_frequencies(pred_low: torch.Tensor, pred_high: torch.Tensor, residual_size: tuple[int, int]) -> torch.Tensor:
    """One image from both predictions (Scale-MAE ``split_pred``): the low-pass prediction taken down to
    ``residual_size``, bilinear up to the full size, plus the high-frequency residual."""
    base = area_resize(pred_low, residual_size)
    base = F.interpolate(base, size=pred_high.shape[-2:], mode="bilinear", align_corners=False)
    return base + pred_high.float()


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of ``(B, C, H, W)`` (Scale-MAE's ``Norm2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def upsampling_factors(factor: int) -> list[int]:
    """Factor 8 -> [2, 2, 2]; 14 -> [2, 7]: transposed-conv strides whose product is ``factor``."""
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, got {factor}")
    steps = []
    while factor % 2 == 0 and factor > 1:
        steps.append(2)
        factor //= 2
    if factor > 1:
        steps.append(factor)
    return steps


class UpsamplingHead(nn.Module):
    """Dense features ``(B, in_dim, gh, gw)`` -> ``(B, out_chans, gh * factor, gw * factor)``.

    A 1x1 projection, a residual depthwise/pointwise conv block (Scale-MAE's ``HFFB``), then one
    transposed conv per upsampling step with LayerNorm2d and GELU between, and a 1x1 output conv.
    """

    def __init__(self, in_dim: int, out_chans: int, factor: int, hidden: int = 256) -> None:
        super().__init__()
        if hidden % 2:
            raise ValueError(f"hidden width must be even, got {hidden}")
        self.factor = factor
        self.proj = nn.Conv2d(in_dim, hidden, 1)
        self.mix = nn.Sequential(nn.GELU(), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden // 2), nn.GELU(),
                                 nn.Conv2d(hidden, hidden, 1))
        layers: list[nn.Module] = []
        width = hidden
        for step in upsampling_factors(factor):
            out = max(width // 2, 16)
            layers += [LayerNorm2d(width, eps=1e-6), nn.ConvTranspose2d(width, out, step, stride=step), nn.GELU()]
            width = out
        self.up = nn.Sequential(*layers)
        self.out = nn.Conv2d(width, out_chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        x = x + self.mix(x)
        return self.out(self.up(x))


class FrequencyHeads(nn.Module):
    """The two heads: high frequency at ``patch_size * target_scale`` x the token grid (the target's
    resolution; ``target_scale`` 2 = Scale-MAE's 448 px target of a 224 px input), low frequency at
    ``low_scale`` of that (``patch_size * target_scale * low_scale`` must be a whole number)."""

    def __init__(self, in_dim: int, out_chans: int, patch_size: int, low_scale: float = 0.5, hidden: int = 256,
                 target_scale: int = 1) -> None:
        super().__init__()
        if int(target_scale) != target_scale or target_scale < 1:
            raise ValueError(f"target_scale must be a whole number >= 1, got {target_scale}")
        high_factor = patch_size * int(target_scale)
        low_factor = high_factor * low_scale
        if low_factor < 1 or abs(low_factor - round(low_factor)) > 1e-9:
            raise ValueError(f"low_scale {low_scale} x patch size {patch_size} x target_scale {target_scale} must be a "
                             "whole factor >= 1")
        self.target_scale = int(target_scale)
        self.high = UpsamplingHead(in_dim, out_chans, high_factor, hidden)
        self.low = UpsamplingHead(in_dim, out_chans, int(round(low_factor)), hidden)

    def forward(self, features: torch.Tensor, grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense decoder tokens ``(B, N, Dd)`` in row-major grid order -> ``(pred_low, pred_high)``."""
        b, n, d = features.shape
        if n != grid_hw[0] * grid_hw[1]:
            raise ValueError(f"{n} decoder tokens for a {grid_hw[0]}x{grid_hw[1]} grid")
        x = features.transpose(1, 2).reshape(b, d, *grid_hw)
        return self.low(x), self.high(x)
