"""Device and precision selection: CUDA when present, bf16 autocast where supported, fp32 on CPU."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an explicit request that is unavailable is an error."""
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} was requested but CUDA is not available")
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None = fp32) and whether a GradScaler is needed (fp16 only)."""

    dtype: torch.dtype | None
    use_grad_scaler: bool

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def select_precision(device: torch.device, requested: str = "auto") -> Precision:
    """bf16 on GPUs that have it, fp16 + GradScaler on those that do not, fp32 on CPU (or on request)."""
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"unknown precision {requested!r}; use auto, fp32, bf16 or fp16")
    if device.type != "cuda" or requested == "fp32":
        return Precision(None, False)
    if requested == "fp16" or (requested == "auto" and not torch.cuda.is_bf16_supported()):
        return Precision(torch.float16, True)
    return Precision(torch.bfloat16, False)


def autocast(device: torch.device, precision: Precision):
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)
