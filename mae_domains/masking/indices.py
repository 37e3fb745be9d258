"""Random token masking in the MAE convention, with caller-supplied or per-sample seeded noise.

Per sample: uniform noise over the N tokens, ``ids_shuffle = argsort(noise)``, keep the first
``int(N * (1 - ratio))``, ``ids_restore = argsort(ids_shuffle)``; the binary mask is 1 for removed
tokens and 0 for kept ones, in the original token order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class MaskIndices:
    """Which tokens each sample keeps: all index tensors are ``int64`` with a batch dimension."""

    ids_keep: torch.Tensor  # (B, n_keep) token ids the encoder sees, in shuffled order
    ids_masked: torch.Tensor  # (B, N - n_keep) removed token ids, in shuffled order
    ids_restore: torch.Tensor  # (B, N) position of every original token in the shuffled order
    mask: torch.Tensor  # (B, N) float, 1 = removed

    @property
    def num_keep(self) -> int:
        return self.ids_keep.shape[1]


def num_kept_tokens(num_tokens: int, mask_ratio: float) -> int:
    """``int(N * (1 - ratio))`` as in the original code, validated."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {mask_ratio}")
    return int(num_tokens * (1 - mask_ratio))


def noise_from_seeds(seeds: Sequence[int] | torch.Tensor, num_tokens: int, device=None) -> torch.Tensor:
    """One row of uniform noise per sample, each drawn from its own seed.

    A sample's mask then depends only on its seed, never on which other samples share its batch.
    """
    rows = []
    for seed in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds):
        gen = torch.Generator().manual_seed(int(seed) % (2**63))
        rows.append(torch.rand(num_tokens, generator=gen))
    return torch.stack(rows).to(device)


def masking_from_noise(noise: torch.Tensor, num_keep: int) -> MaskIndices:
    """Turn ``(B, N)`` noise into keep/restore ids and the binary mask (low noise is kept)."""
    b, n = noise.shape
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    mask = torch.ones(b, n, device=noise.device)
    mask[:, :num_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return MaskIndices(ids_shuffle[:, :num_keep], ids_shuffle[:, num_keep:], ids_restore, mask)


def random_masking(
    batch_size: int,
    num_tokens: int,
    mask_ratio: float,
    noise: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> MaskIndices:
    """MAE random masking for ``batch_size`` samples of ``num_tokens`` tokens each."""
    if noise is None:
        noise = torch.rand(batch_size, num_tokens, generator=generator, device=device if generator is None else None)
        noise = noise.to(device)
    elif noise.shape != (batch_size, num_tokens):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(batch_size, num_tokens)}")
    return masking_from_noise(noise, num_kept_tokens(num_tokens, mask_ratio))


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Select ``ids`` (B, K) along the token axis of ``x`` (B, N, D) -> (B, K, D)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
