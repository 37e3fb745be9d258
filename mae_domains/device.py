"""Device and precision selection: the fastest arithmetic the hardware has natively.

``precision: auto`` resolves to

- **bf16 autocast** on a CPU with native bf16 arithmetic (x86 AVX-512 BF16 or AMX tiles, with oneDNN's
  bf16 kernels built in), where a bf16 GEMM runs several times faster than fp32;
- **bf16 autocast** on a CUDA GPU that supports bf16, **fp16 + GradScaler** on an older one;
- **fp32** elsewhere (CPUs without native bf16, where bf16 is emulated and slower; Apple MPS).

The decision and its reason are kept in :class:`Precision` (the engine logs them). Under autocast only
matmuls, linears, convolutions and attention run in the low precision: the models compute targets,
norm_pix statistics, sin-cos codes, FFTs and losses in fp32 (they cast to float), and the weights and
optimizer state stay fp32 (master weights).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger("mae_domains.device")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
    """Autocast dtype (None = fp32), whether a GradScaler is needed (fp16 only), and why it was chosen."""

    dtype: torch.dtype | None
    use_grad_scaler: bool
    reason: str = ""

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def describe(self) -> str:
        return f"{self.name} ({self.reason})" if self.reason else self.name


def _cpu_flag(name: str) -> bool:
    """A ``torch.cpu._is_*_supported`` probe; False when this torch build does not have it."""
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


def _onednn_bf16() -> bool:
    """Whether this torch build has oneDNN's bf16 kernels."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively, and the evidence.

    Native means AVX-512 BF16 or AMX tile instructions (``torch.cpu._is_avx512_bf16_supported``,
    ``torch.cpu._is_amx_tile_supported``) *and* oneDNN bf16 kernels in this build
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported``). The oneDNN probe alone is not enough: it is true on
    any AVX-512 CPU, where bf16 is emulated and slower than fp32.
    """
    features = [name for flag, name in (("_is_amx_tile_supported", "AMX"), ("_is_avx512_bf16_supported", "AVX512-BF16"))
                if _cpu_flag(flag)]
    capability = torch.backends.cpu.get_cpu_capability()
    if not features:
        return False, f"CPU ({capability}) has no native bf16 (no AVX512-BF16 or AMX)"
    if not _onednn_bf16():
        return False, f"CPU has {'+'.join(features)} but this torch build has no oneDNN bf16 kernels"
    return True, f"CPU has native bf16 ({'+'.join(features)})"


def select_precision(device: torch.device, requested: str = "auto", cpu_bf16: bool = False) -> Precision:
    """Resolve ``requested`` (auto, fp32, bf16, fp16) for ``device``; see the module docstring.

    ``cpu_bf16`` lets ``auto`` pick bf16 on a CPU with native bf16 (pretraining and fine-tuning pass True);
    without it ``auto`` stays fp32 on every CPU (frozen features, compared with fp32 references). An explicit ``bf16`` on a CPU without native bf16 is honoured (emulated, slow) with a
    warning; ``fp16`` needs a CUDA GPU.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; use {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return Precision(None, False, "requested")
    if device.type == "cuda":
        if requested == "fp16":
            return Precision(torch.float16, True, "requested; with a GradScaler")
        if requested == "bf16":
            return Precision(torch.bfloat16, False, "requested")
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, False, "the GPU supports bf16")
        return Precision(torch.float16, True, "the GPU has no bf16; fp16 with a GradScaler")
    if device.type != "cpu":
        if requested != "auto":
            raise ValueError(f"precision {requested!r} is not supported on {device.type}; use auto or fp32")
        return Precision(None, False, f"no mixed precision on {device.type}")
    if requested == "fp16":
        raise ValueError("precision 'fp16' needs a CUDA GPU; on a CPU use auto, bf16 or fp32")
    native, why = cpu_native_bf16()
    if requested == "bf16":
        if not native:
            log.warning("bf16 was requested but %s: it will be emulated and slower than fp32", why)
        return Precision(torch.bfloat16, False, "requested" if native else f"requested; {why}")
    if not cpu_bf16:
        return Precision(None, False, "auto keeps fp32 on CPU here")
    if native:
        return Precision(torch.bfloat16, False, why)
    return Precision(None, False, why)


def autocast(device: torch.device, precision: Precision):
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.dtype)
