"""Fourier loss term: ``(1 - w) * pixel loss + w * L1(|FFT(pred patch)| - |FFT(target patch)|)`` (CA-MAE).

The reference implementation (recursionpharma/maes_microscopy ``FourierLoss``) reshapes the token
sequence into one image per channel, which is only right for 16 px patches on 256 px crops. Here the FFT
is taken per *patch*: each token's target vector is reshaped to its patch (``(p, q, c)`` for 2D, ``(pz,
py, px, c)`` for cubes, the layout every grid embedding's ``target_patches`` uses), transformed over its
spatial axes in float32, and the absolute differences of the magnitudes are averaged per token, then over
the tokens the pixel loss counts (the same token weights: masked and valid). Any patch size works.

    model = with_fourier_loss(build_grid_mae(embedding, config), weight=0.01)
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from mae_domains.grid.batch import GridBatch
from mae_domains.models.embeddings.base import GridEmbedding
from mae_domains.models.grid_mae import GridMAE, GridMAEOutput


def patch_geometry(embedding: GridEmbedding) -> tuple[tuple[int, ...], int]:
    """Spatial shape of one token's patch and its channel count, from ``patch_size`` and ``target_dim``."""
    size = getattr(embedding, "patch_size", None)
    if size is None:
        raise ValueError(f"{type(embedding).__name__} has no patch_size; the Fourier term needs the patch shape")
    shape = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    channels, rest = divmod(embedding.target_dim, math.prod(shape))
    if rest or channels < 1:
        raise ValueError(f"target width {embedding.target_dim} is not a multiple of patch {shape}")
    return shape, channels


def patch_fft_magnitude(patches: torch.Tensor, shape: Sequence[int], channels: int) -> torch.Tensor:
    """``|FFT|`` over the spatial axes of per-token patches ``(B, N, prod(shape) * channels)`` (channels
    last inside a patch) -> ``(B, N, channels, *shape)``, in float32."""
    b, n, _ = patches.shape
    x = patches.float().reshape(b, n, *shape, channels)
    x = x.movedim(-1, 2)  # (B, N, C, *shape)
    dims = tuple(range(3, 3 + len(shape)))
    return torch.fft.fftn(x, dim=dims).abs()


def fourier_patch_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, token_weight: torch.Tensor,
                       shape: Sequence[int], channels: int) -> torch.Tensor:
    """Mean over tokens (weighted by ``token_weight``; tokens without valid values drop out) of the mean
    absolute difference of patch FFT magnitudes. Invalid values are zeroed in both patches first."""
    valid = (weight > 0).to(torch.float32)
    diff = (patch_fft_magnitude(pred.float() * valid, shape, channels)
            - patch_fft_magnitude(target.float() * valid, shape, channels)).abs()
    per_token = diff.flatten(2).mean(-1)
    token_weight = token_weight.float() * (weight.sum(-1) > 0)
    return (per_token * token_weight).sum() / token_weight.sum().clamp_min(1.0)


class FourierGridMAE(GridMAE):
    """A :class:`GridMAE` whose loss mixes in the Fourier term with weight ``fourier_weight`` (in [0, 1));
    ``last_terms`` keeps the pixel and Fourier parts of the last forward for logging."""

    def __init__(self, *args: Any, fourier_weight: float = 0.01, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= fourier_weight < 1.0:
            raise ValueError(f"the Fourier loss weight must be in [0, 1), got {fourier_weight}")
        self.fourier_weight = float(fourier_weight)
        self.patch_shape, self.patch_channels = patch_geometry(self.embedding)
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, images: torch.Tensor | GridBatch | Mapping[str, Any], mask_seeds=None, mask_ratio=None,
                valid=None, meta=None, target_images=None) -> GridMAEOutput:
        out = super().forward(images, mask_seeds, mask_ratio, valid, meta, target_images)
        if self.fourier_weight > 0:
            fourier = fourier_patch_loss(out.pred, out.target, out.weight, out.token_weight, self.patch_shape,
                                         self.patch_channels)
            self.last_terms = {"pixel": out.loss.detach(), "fourier": fourier.detach()}
            out.loss = (1.0 - self.fourier_weight) * out.loss + self.fourier_weight * fourier
        return out


def with_fourier_loss(model: GridMAE, weight: float) -> GridMAE:
    """The same parts (and state-dict keys) as ``model``, with the Fourier term at ``weight``; ``weight=0``
    returns ``model`` unchanged."""
    if weight == 0:
        return model
    return FourierGridMAE(model.encoder, model.decoder, model.head, masker=model.masker, target=model.target,
                          mask_ratio=model.mask_ratio, query=model.query, loss=model.loss_kind,
                          loss_on=model.loss_on, fourier_weight=weight)
