"""Masking policies over a token grid: which tokens the encoder sees.

Modes (``axes`` names the grid axes the policy is about, e.g. ``("group",)``, ``("time",)``):

- ``random``: uniform over all N tokens (MAE; CA-MAE over all C x L tokens); keeps ``int(N * (1 - r))``.
- ``consistent``: one spatial mask shared by every index along ``axes`` (same mask for every group /
  date / channel, "tube" masking; SatMAE's ``--spatial_mask`` / ``same_mask``); keeps ``int(L * (1 - r))``
  per slice, L = tokens per slice.
- ``independent``: SatMAE's independent masking: uniform over all slice x location tokens, keeping
  ``int(N * (1 - r))``; the kept count per slice varies (3 groups x 144 tokens at 0.75: 20-54 per
  group, mean 36). Each slice draws its own spatial noise pattern (matters for ColorMAE noise).
- ``stratified``: every index along ``axes`` gets its own mask with the same kept count per slice,
  ``int(L * (1 - r))`` (what ``independent`` meant in 0.1.0: a different method from SatMAE's).

The spatial pattern is uniform noise or :class:`~mae_domains.masking.color_noise.ColorNoise`. Invalid
tokens are pushed behind every valid one, so they are masked whenever the masked set can hold them and
the kept count never changes. With ``seeds`` each sample's mask comes from its own generator, so it is
the same in every run and independent of which samples share the batch.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol, Sequence

import torch

from mae_domains.grid import GridLayout
from mae_domains.masking.indices import MaskIndices, masking_from_noise, num_kept_tokens

MASK_MODES = ("random", "consistent", "independent", "stratified")
SLICED_MODES = ("consistent", "stratified")  # kept count fixed per slice

log = logging.getLogger(__name__)
_told_about_independent = False


def note_independent_meaning(axes: Sequence[str]) -> None:
    """Say once per process what ``independent`` means now, for configs written for 0.1.0."""
    global _told_about_independent
    if _told_about_independent:
        return
    _told_about_independent = True
    along = "/".join(axes) or "slice"
    log.info("mask strategy 'independent' is SatMAE's: uniform over all %s x location tokens, so the kept count "
             "per %s varies; in mae-domains 0.1.0 it kept the same count per %s, which is now "
             "mask.strategy=stratified", along, along, along)


class NoiseSource(Protocol):
    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor: ...


class UniformNoise:
    """Uniform [0, 1) noise; with a seed, the same draws as :func:`mae_domains.models.noise_from_seeds`."""

    def draw(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(math.prod(shape), generator=generator).reshape(shape)


def per_sample_noise(source: NoiseSource, shape: tuple[int, ...], batch_size: int,
                     seeds: Sequence[int] | torch.Tensor | None) -> torch.Tensor:
    """``(B, *shape)`` noise: one generator per seed, or torch's global RNG without seeds."""
    if seeds is None:
        if isinstance(source, UniformNoise):
            return torch.rand(batch_size, *shape)
        return torch.stack([source.draw(shape, None) for _ in range(batch_size)])
    seeds = seeds.tolist() if isinstance(seeds, torch.Tensor) else list(seeds)
    if len(seeds) != batch_size:
        raise ValueError(f"{len(seeds)} mask seeds for a batch of {batch_size}")
    return torch.stack([source.draw(shape, torch.Generator().manual_seed(int(s) % (2**63))) for s in seeds])


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Rank of every entry along the last dim (0 = smallest), as float."""
    return torch.argsort(torch.argsort(x, dim=-1), dim=-1).to(torch.float32)


class TokenMasker:
    """A masking policy; call it with a layout to get :class:`~mae_domains.masking.indices.MaskIndices`."""

    def __init__(self, mode: str = "random", axes: Sequence[str] | str = (), noise: NoiseSource | None = None) -> None:
        if mode not in MASK_MODES:
            raise ValueError(f"unknown masking mode {mode!r}; use one of {', '.join(MASK_MODES)}")
        self.mode = mode
        self.axes = (axes,) if isinstance(axes, str) else tuple(axes)
        if mode != "random" and not self.axes:
            raise ValueError(f"{mode} masking needs the axes it applies across, e.g. axes=('group',)")
        self.noise = noise or UniformNoise()

    def __repr__(self) -> str:
        return f"TokenMasker(mode={self.mode!r}, axes={self.axes}, noise={type(self.noise).__name__})"

    def split(self, layout: GridLayout) -> tuple[int, int]:
        """(slices along ``axes``, tokens per slice)."""
        slices = math.prod(layout.axis(a).size for a in self.axes)
        return slices, layout.num_tokens // slices

    def num_keep(self, layout: GridLayout, mask_ratio: float) -> int:
        if self.mode not in SLICED_MODES:
            return num_kept_tokens(layout.num_tokens, mask_ratio)
        slices, per_slice = self.split(layout)
        return slices * num_kept_tokens(per_slice, mask_ratio)

    def scores(self, layout: GridLayout, batch_size: int, seeds: Sequence[int] | torch.Tensor | None) -> torch.Tensor:
        """``(B, N)`` keep order: the ``num_keep`` lowest scores are kept."""
        if self.mode in ("random", "independent"):
            return per_sample_noise(self.noise, layout.shape, batch_size, seeds).reshape(batch_size, -1)
        slice_dims = [layout.index(a) for a in self.axes]
        other_dims = [i for i in range(len(layout)) if i not in slice_dims]
        slices, per_slice = self.split(layout)
        perm = [d + 1 for d in slice_dims + other_dims]
        permuted_shape = tuple(layout.shape[d] for d in slice_dims + other_dims)
        if self.mode == "consistent":
            shared = per_sample_noise(self.noise, tuple(layout.shape[d] for d in other_dims), batch_size, seeds)
            rank = ranks(shared.reshape(batch_size, 1, per_slice)).expand(-1, slices, -1)
            tie = torch.arange(slices, dtype=torch.float32).reshape(1, slices, 1) / slices
        else:
            noise = per_sample_noise(self.noise, layout.shape, batch_size, seeds)
            noise = noise.permute(0, *perm).reshape(batch_size, slices, per_slice)
            rank = ranks(noise)
            tie = ranks(noise.reshape(batch_size, -1)).reshape(batch_size, slices, per_slice) / layout.num_tokens
        score = (rank + tie).reshape(batch_size, *permuted_shape)
        inverse = [0] + [perm.index(d + 1) + 1 for d in range(len(layout))]
        return score.permute(*inverse).reshape(batch_size, -1)

    def __call__(
        self,
        layout: GridLayout,
        mask_ratio: float,
        batch_size: int,
        seeds: Sequence[int] | torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> MaskIndices:
        """Mask indices for a batch; ``valid`` ``(B, N)`` bool sends invalid tokens to the masked set."""
        score = self.scores(layout, batch_size, seeds).to(torch.float32)
        if valid is not None:
            score = score + (~valid.bool()).cpu().to(torch.float32) * (2.0 * layout.num_tokens + 2.0)
        masking = masking_from_noise(score, self.num_keep(layout, mask_ratio))
        if device is not None:
            masking = MaskIndices(*(t.to(device) for t in (masking.ids_keep, masking.ids_masked,
                                                         masking.ids_restore, masking.mask)))
        return masking


def build_masker(mode: str = "random", axes: Sequence[str] | str = (), color: str | None = None,
                 cache_dir: str | None = None, **noise_settings) -> TokenMasker:
    """``build_masker("independent", "group")``; ``color`` in red/blue/green/purple uses ColorMAE noise."""
    if mode == "independent":
        note_independent_meaning((axes,) if isinstance(axes, str) else tuple(axes))
    noise: NoiseSource | None = None
    if color is not None:
        from mae_domains.masking.color_noise import ColorNoise

        noise = ColorNoise(cache_dir=cache_dir, color=color, **noise_settings)
    return TokenMasker(mode, axes, noise)
