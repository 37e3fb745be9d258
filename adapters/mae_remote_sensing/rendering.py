"""Reconstruction figures of a GridMAE for a person: per chip (and per frame) true/false colour input,
masked input, reconstruction and reconstruction with the visible pixels pasted back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mae_domains.grid import scatter_tokens
from mae_domains.models.embeddings.base import GridBatch, pixel_weights
from mae_remote_sensing.visualize import chip_panels, save_panels


@torch.no_grad()
def reconstruct_pixels(model, batch: GridBatch, output) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reconstruction, hidden)`` in the layout of ``batch.images``: predictions of the queried tokens
    (de-normalized with each input patch's valid mean and std when ``norm_pix`` is on) pasted into the
    input, and a bool map of the pixels the encoder did not see."""
    embedding, layout = model.embedding, output.layout
    images = batch.images.float()
    patches = embedding.target_patches(images, layout)
    pred = output.pred.float()
    if getattr(model.target, "norm_pix", False):
        weight = embedding.target_patches(pixel_weights(batch, images, embedding.channel_dim), layout)
        count = weight.sum(-1, keepdim=True).clamp_min(1.0)
        mean = (patches * weight).sum(-1, keepdim=True) / count
        var = ((patches - mean) ** 2 * weight).sum(-1, keepdim=True) / (count - 1).clamp_min(1.0)
        std = (var + 1e-6) ** 0.5
        pred = pred * torch.gather(std, 1, output.query_ids.unsqueeze(-1)) + torch.gather(mean, 1, output.query_ids.unsqueeze(-1))
    merged = scatter_tokens(pred, output.query_ids, patches)
    recon = embedding.unpatchify(merged, layout)
    hidden_tokens = output.mask.float().unsqueeze(-1).expand(-1, -1, patches.shape[-1])
    hidden = embedding.unpatchify(hidden_tokens.contiguous(), layout) > 0.5
    return recon, hidden


def reconstruction_figure(adapter, model, batch: dict[str, Any], output, path: Path, frames: bool,
                          max_rows: int = 4) -> Path:
    """Rows of :func:`~mae_remote_sensing.visualize.chip_panels`: one per chip, or per frame of the first
    chips for time series (``frames``)."""
    inputs = adapter.model_inputs(batch, output.pred.device)
    grid_batch = GridBatch(inputs["images"], inputs.get("valid"), inputs["meta"])
    recon, hidden = reconstruct_pixels(model, grid_batch, output)
    images = grid_batch.images.float().cpu().numpy()
    recon, hidden = recon.cpu().numpy(), hidden.cpu().numpy()
    bands = list(adapter.bands)
    rows = []
    for i in range(images.shape[0]):
        if frames:  # (T, C, H, W) per sample
            dates = (batch["meta"][i].get("dates") if batch.get("meta") else None) or [None] * images.shape[1]
            for t in range(images.shape[1]):
                rows.append(chip_panels(images[i, t], recon[i, t], hidden[i, t].any(axis=0), bands, str(dates[t] or f"t{t}")))
                if len(rows) >= max_rows:
                    break
        else:  # a pixel counts as hidden when the group of the first composite band was masked
            from mae_remote_sensing.visualize import composite_indices

            first = composite_indices(bands)[0]
            rows.append(chip_panels(images[i], recon[i], hidden[i, first], bands, f"#{i}"))
        if len(rows) >= max_rows:
            break
    return save_panels(rows, path, title=adapter.name)
