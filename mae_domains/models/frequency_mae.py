"""A GridMAE whose decoder reconstructs Scale-MAE's low- and high-frequency targets densely.

    batch --embedding (visible only)--> encoder --self-attention decoder (every position)--> (B, Dd, gh, gw)
    --low head--> low-pass image at low_scale of the target (L2) ; --high head--> residual x - up(down(x))
    at the target's resolution (L2 or L1)

The target is ``batch.target_images`` (validity ``batch.target_valid``) when given, e.g. Scale-MAE's target
at ``target_scale`` = 2 x the input's resolution, else the input. Losses count masked, valid pixels only
(:mod:`mae_domains.models.decoding.frequency_heads`). The output is a
:class:`~mae_domains.models.grid_mae.GridMAEOutput` like every grid model's: ``pred`` holds the masked
tokens' patches of the combined reconstruction (low-pass + residual, Scale-MAE's ``split_pred``) at the
target's resolution (a token's patch is ``target side / grid side`` pixels wide), so reconstruction
figures, the trainer's loss denominator and exports work unchanged; the two predicted images are kept on
the output as ``pred_low`` / ``pred_high``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from mae_domains.config import ModelConfig
from mae_domains.grid import gather_tokens, scatter_tokens
from mae_domains.grid.batch import GridBatch, as_grid_batch, pixel_weights
from mae_domains.masking import TokenMasker
from mae_domains.models.decoding import SelfAttentionDecoder
from mae_domains.models.decoding.frequency_heads import (
    HIGH_LOSSES, REDUCTIONS, FrequencyHeads, area_resize, combine_frequencies, frequency_loss,
)
from mae_domains.models.embeddings.base import GridEmbedding
from mae_domains.models.grid_mae import GridEncoder, GridMAE, GridMAEOutput, build_encoder
from mae_domains.models.patchify import patchify, unpatchify
from mae_domains.models.targets import PixelTarget


@dataclass
class FrequencyMAEOutput(GridMAEOutput):
    pred_low: torch.Tensor | None = None  # (B, C, H * low_scale, W * low_scale)
    pred_high: torch.Tensor | None = None  # (B, C, H, W)
    loss_low: torch.Tensor | None = None
    loss_high: torch.Tensor | None = None


class FrequencyMAE(GridMAE):
    """Scale-MAE's decoding on a 2D ``(y, x)`` grid: dense decoder, two upsampling heads.

    ``residual_size``: the grid the residual's ``down`` averages to (None = the token grid; Scale-MAE's
    ``band_config[0]``); ``high_weight``: weight of the high-frequency term (Scale-MAE ``l1_loss_weight``;
    the reference applies it to L1 only, here to either); ``high_loss``: ``l2`` (Scale-MAE's default) or
    ``l1``; ``reduction``: ``band_sum`` (Scale-MAE: summed over bands, per masked pixel) or ``mean``."""

    def __init__(self, encoder: GridEncoder, decoder: torch.nn.Module, heads: FrequencyHeads,
                 masker: TokenMasker | None = None, mask_ratio: float = 0.75,
                 residual_size: Sequence[int] | None = None, high_weight: float = 1.0,
                 high_loss: str = "l2", reduction: str = "band_sum") -> None:
        super().__init__(encoder, decoder, heads, masker=masker, target=PixelTarget(False), mask_ratio=mask_ratio)
        if high_loss not in HIGH_LOSSES:
            raise ValueError(f"high_loss must be one of {HIGH_LOSSES}, got {high_loss!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"loss reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.residual_size = None if residual_size is None else (int(residual_size[0]), int(residual_size[1]))
        self.high_weight = float(high_weight)
        self.high_loss = high_loss
        self.reduction = reduction

    @staticmethod
    def target_of(batch: GridBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The target image (fp32) and its validity: ``target_images`` / ``target_valid`` where given."""
        if batch.target_images is None:
            return batch.images.float(), batch.valid
        target = batch.target_images.float()
        if batch.target_valid is not None or batch.valid is None:
            return target, batch.target_valid
        size = tuple(target.shape[-2:])
        if tuple(batch.valid.shape[-2:]) == size:
            return target, batch.valid
        spatial = batch.valid.reshape(batch.valid.shape[0], -1, *batch.valid.shape[-2:]).float()
        return target, torch.nn.functional.interpolate(spatial, size=size, mode="nearest") > 0.5

    @staticmethod
    def target_patch(target: torch.Tensor, grid_hw: tuple[int, int]) -> int:
        """Pixels per token side in the target: its side over the grid's (2 x the patch for a 2x target)."""
        h, w = target.shape[-2:]
        if h % grid_hw[0] or w % grid_hw[1] or h // grid_hw[0] != w // grid_hw[1]:
            raise ValueError(f"a {h}x{w} target does not tile the {grid_hw[0]}x{grid_hw[1]} token grid")
        return h // grid_hw[0]

    def dense_features(self, latent) -> torch.Tensor:
        """Decoder features of every grid position ``(B, N, Dd)`` (the self-attention decoder's dense mode)."""
        return self.decoder(latent, None)

    def forward(
        self,
        images: torch.Tensor | GridBatch | Mapping[str, Any],
        mask_seeds: Sequence[int] | torch.Tensor | None = None,
        mask_ratio: float | None = None,
        valid: torch.Tensor | None = None,
        meta: Mapping[str, Any] | None = None,
        target_images: torch.Tensor | None = None,
    ) -> FrequencyMAEOutput:
        batch = as_grid_batch(images, valid=valid, meta=meta, target_images=target_images)
        layout = self.embedding.layout(batch)
        if layout.names != ("y", "x"):
            raise ValueError(f"frequency decoding needs a 2D (y, x) grid, got axes {layout.names}")
        grid_hw = (layout.axis("y").size, layout.axis("x").size)
        token_valid = self.embedding.token_validity(batch, layout)
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        masking = self.masker(layout, ratio, batch.batch_size, seeds=mask_seeds, valid=token_valid,
                              device=batch.images.device)
        latent = self.encoder.forward_visible(batch, masking.ids_keep)
        pred_low, pred_high = self.head(self.dense_features(latent), grid_hw)
        target_images, target_valid = self.target_of(batch)
        patch = self.target_patch(target_images, grid_hw)
        pixel_valid = None if target_valid is None else pixel_weights(
            GridBatch(target_images, target_valid), target_images, self.embedding.channel_dim)
        residual = self.residual_size or grid_hw
        parts = frequency_loss(pred_low, pred_high, target_images, masking.mask, grid_hw, pixel_valid,
                               residual, self.high_weight, self.reduction, self.high_loss)
        # per-token view of the combined reconstruction at the target's resolution, for figures and the
        # trainer's denominator
        query_ids = masking.ids_masked
        combined = combine_frequencies(pred_low, pred_high, residual)
        if tuple(combined.shape[-2:]) != tuple(target_images.shape[-2:]):
            combined = area_resize(combined, tuple(target_images.shape[-2:]))
        pred = gather_tokens(patchify(combined, patch), query_ids)
        weight = patchify(pixel_valid if pixel_valid is not None else torch.ones_like(target_images), patch)
        target = patchify(target_images, patch) * (weight > 0)
        target, weight = gather_tokens(target, query_ids), gather_tokens(weight, query_ids)
        token_weight = torch.gather(masking.mask, 1, query_ids).float()
        if token_valid is not None:
            token_weight = token_weight * torch.gather(token_valid, 1, query_ids)
        return FrequencyMAEOutput(parts.total, pred, masking.mask, query_ids, target, weight, token_weight, masking,
                                  layout, pred_low=pred_low, pred_high=pred_high, loss_low=parts.low.detach(),
                                  loss_high=parts.high.detach())

    @torch.no_grad()
    def reconstruct_pixels(self, batch: torch.Tensor | GridBatch | Mapping[str, Any],
                           output: GridMAEOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, hidden)`` at the target's resolution: the masked tokens' combined prediction
        pasted into the target image, and the pixels the encoder did not see."""
        target, _ = self.target_of(as_grid_batch(batch))
        grid_hw = (output.layout.axis("y").size, output.layout.axis("x").size)
        patch = self.target_patch(target, grid_hw)
        patches = patchify(target, patch)
        recon = unpatchify(scatter_tokens(output.pred.float(), output.query_ids, patches), patch, grid_hw,
                           target.shape[1])
        hidden = output.mask.float().unsqueeze(-1).expand(-1, -1, patches.shape[-1]).contiguous()
        return recon, unpatchify(hidden, patch, grid_hw, target.shape[1]) > 0.5

    def reconstruct(self, batch: torch.Tensor | GridBatch, output: GridMAEOutput) -> torch.Tensor:
        """The target image with the masked tokens' patches replaced by the combined prediction."""
        return self.reconstruct_pixels(batch, output)[0]


def build_frequency_mae(embedding: GridEmbedding, config: ModelConfig | None = None, *, mask_ratio: float = 0.75,
                        masker: TokenMasker | None = None, low_scale: float = 0.5, head_width: int | None = None,
                        residual_size: Sequence[int] | None = None, high_weight: float = 1.0,
                        target_scale: int = 1, high_loss: str = "l2", reduction: str = "band_sum",
                        **overrides: Any) -> FrequencyMAE:
    """A :class:`FrequencyMAE` around a 2D ``embedding`` from a run's ``model`` section (``overrides``
    replace its fields, as in :func:`~mae_domains.models.grid_mae.build_grid_mae`). The heads output one
    channel per input channel of the embedding (``embedding.in_chans``); ``head_width`` (their hidden width)
    defaults to the decoder width (Scale-MAE: ``fcn_dim`` 512 beside a 512-wide decoder)."""
    config, preset, encoder = build_encoder(embedding, config, overrides)
    if config.decoder != "self":
        raise ValueError(f"model.decoder={config.decoder!r}: frequency decoding reconstructs every position, "
                         "so it uses the self-attention decoder (model.decoder=self)")
    decoder = SelfAttentionDecoder(preset.embed_dim, config.decoder_embed_dim, config.decoder_depth,
                                   config.decoder_num_heads, preset.mlp_ratio)
    patch = int(getattr(embedding, "patch_size", config.patch_size))
    heads = FrequencyHeads(config.decoder_embed_dim, int(embedding.in_chans), patch, low_scale,
                           int(head_width or config.decoder_embed_dim), target_scale)
    return FrequencyMAE(encoder, decoder, heads, masker=masker, mask_ratio=mask_ratio,
                        residual_size=residual_size, high_weight=high_weight, high_loss=high_loss,
                        reduction=reduction)
