"""Signs that a pretraining run is learning, logged beside the loss: reconstruction PSNR on the masked
patches, the prediction-to-target spread ratio (collapse detector), the gradient norm and the share of
step time spent waiting for data.

All statistics are taken over the values the loss is taken over (queried tokens with a loss weight,
valid values only: ``w = token_weight * weight``), in the **target space** of the model (the per-patch
normalized pixels when ``norm_pix_loss`` is on, else the per-channel standardized pixels). For one
optimizer step (all micro-batches of an accumulation together), with ``p`` the predictions, ``t`` the
targets and ``W = sum(w)``:

- ``MSE = sum(w (p - t)^2) / W``; ``PSNR = 10 log10(R^2 / MSE)`` dB with ``R = max(t) - min(t)`` over
  those values (the data range, as ``skimage.metrics.peak_signal_noise_ratio`` takes it from the data);
- ``std ratio = std_w(p) / std_w(t)`` (weighted population standard deviations over all those values):
  about 1 for predictions with the targets' spread, near 0 when the decoder collapses to a constant
  (the mean) prediction.

Everything is accumulated on the device and read once per log row (no host sync per step); a row holds
the mean over the optimizer steps since the previous row. Outputs without ``pred`` / ``target`` (a
model with its own loss form) leave the reconstruction columns empty.
"""

from __future__ import annotations

import math
from typing import Any

import torch

HEALTH_FIELDS = ("recon_psnr", "pred_std_ratio", "grad_norm", "data_share", "knn_top1")  # metrics.csv columns
# Per-step sums, in this order, over the loss values of the step's micro-batches.
W, SE, P, PP, T, TT = range(6)
STEP_SUMS = 6
# Interval sums, in this order: PSNR, std ratio, steps with reconstruction statistics, grad norm, grad steps.
PSNR, RATIO, RECON_STEPS, GRAD, GRAD_STEPS = range(5)


def reconstruction_sums(output: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """``(sums, target max, target min)`` of one forward output (fp32, on its device), None when the
    output has no per-token predictions and targets of the same shape."""
    pred, target = getattr(output, "pred", None), getattr(output, "target", None)
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor) or pred.shape != target.shape:
        return None
    with torch.no_grad():
        p, t = pred.detach().float(), target.detach().float()
        weight = getattr(output, "weight", None)
        w = torch.ones_like(t) if weight is None else weight.detach().float().expand_as(t)
        token_weight = getattr(output, "token_weight", None)
        if token_weight is not None and token_weight.shape == t.shape[:-1]:
            w = w * token_weight.detach().float().unsqueeze(-1)
        sums = torch.stack([w.sum(), (w * (p - t) ** 2).sum(), (w * p).sum(), (w * p * p).sum(),
                            (w * t).sum(), (w * t * t).sum()])
        counted = w > 0
        high = torch.where(counted, t, torch.full_like(t, -math.inf)).amax()
        low = torch.where(counted, t, torch.full_like(t, math.inf)).amin()
    return sums, high, low


def psnr_and_ratio(sums: torch.Tensor, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR (dB) and std ratio of one step's sums (module docstring); device tensors."""
    total = sums[W].clamp_min(1e-12)
    mse = sums[SE] / total
    pred_var = (sums[PP] / total - (sums[P] / total) ** 2).clamp_min(0.0)
    target_var = (sums[TT] / total - (sums[T] / total) ** 2).clamp_min(0.0)
    data_range = (high - low).clamp_min(0.0)
    psnr = 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(1e-20))
    ratio = torch.sqrt(pred_var / target_var.clamp_min(1e-20))
    return psnr, ratio


class TrainingHealth:
    """Device-side running statistics between two log rows (module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.step_sums = torch.zeros(STEP_SUMS, device=device)
        self.high = torch.full((), -math.inf, device=device)
        self.low = torch.full((), math.inf, device=device)
        self.interval = torch.zeros(5, device=device)
        self.data_time = 0.0
        self.step_time = 0.0

    def add_micro_batch(self, output: Any) -> None:
        """Add one forward output of the current optimizer step."""
        found = reconstruction_sums(output)
        if found is None:
            return
        sums, high, low = found
        self.step_sums += sums
        torch.maximum(self.high, high, out=self.high)
        torch.minimum(self.low, low, out=self.low)

    def end_step(self, grad_norm: torch.Tensor | None, data_time: float, step_time: float) -> None:
        """Close an optimizer step: its PSNR, std ratio and gradient norm (before clipping) join the
        interval; non-finite gradient norms (steps a GradScaler skips) are left out."""
        has_values = self.step_sums[W] > 0
        psnr, ratio = psnr_and_ratio(self.step_sums, self.high, self.low)
        values = torch.stack([psnr, ratio, torch.ones_like(psnr)])
        self.interval[:3] += torch.where(has_values & torch.isfinite(values).all(), values, torch.zeros_like(values))
        if grad_norm is not None:
            norm = grad_norm.detach().float().to(self.device)
            finite = torch.isfinite(norm)
            self.interval[GRAD] += torch.where(finite, norm, torch.zeros_like(norm))
            self.interval[GRAD_STEPS] += finite.float()
        self.step_sums.zero_()
        self.high.fill_(-math.inf)
        self.low.fill_(math.inf)
        self.data_time += data_time
        self.step_time += step_time

    def read(self, reduce=None) -> dict[str, str]:
        """The interval's means as metrics.csv fields (empty where nothing was measured), then reset.
        ``reduce`` (a sum over ranks) averages the device statistics over ranks; every rank must call it."""
        interval = self.interval.clone()
        if reduce is not None:
            interval = reduce(interval)
        psnr_sum, ratio_sum, recon_steps, grad_sum, grad_steps = interval.tolist()
        share = self.data_time / self.step_time if self.step_time > 0 else math.nan
        self.interval.zero_()
        self.data_time = self.step_time = 0.0
        return {
            "recon_psnr": f"{psnr_sum / recon_steps:.4f}" if recon_steps else "",
            "pred_std_ratio": f"{ratio_sum / recon_steps:.4f}" if recon_steps else "",
            "grad_norm": f"{grad_sum / grad_steps:.6g}" if grad_steps else "",
            "data_share": f"{share:.4f}" if math.isfinite(share) else "",
        }
