"""A GridMAE whose decoder reconstructs Scale-MAE's low- and high-frequency targets densely.

    batch --embedding (visible only)--> encoder --self-attention decoder (every position)--> (B, Dd, gh, gw)
    --low head--> low-pass image at low_scale (L2) ; --high head--> residual x - up(down(x)) (L1)

Losses count masked, valid pixels only (:mod:`mae_domains.models.decoding.frequency_heads`). The output
is a :class:`~mae_domains.models.grid_mae.GridMAEOutput` like every grid model's: ``pred`` holds the
masked tokens' patches of the combined reconstruction (low-pass + residual, Scale-MAE's ``split_pred``),
so reconstruction figures, the trainer's loss denominator and exports work unchanged; the two
predicted images are kept on the output as ``pred_low`` / ``pred_high``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from mae_domains.config import ModelConfig
from mae_domains.grid import gather_tokens
from mae_domains.grid.batch import GridBatch, as_grid_batch, pixel_weights
from mae_domains.masking import TokenMasker
from mae_domains.models.decoding import SelfAttentionDecoder
from mae_domains.models.decoding.frequency_heads import FrequencyHeads, combine_frequencies, frequency_loss
from mae_domains.models.embeddings.base import GridEmbedding
from mae_domains.models.grid_mae import GridEncoder, GridMAE, GridMAEOutput, build_encoder
from mae_domains.models.targets import PixelTarget


@dataclass
class FrequencyMAEOutput(GridMAEOutput):
    pred_low: torch.Tensor | None = None  # (B, C, H * low_scale, W * low_scale)
    pred_high: torch.Tensor | None = None  # (B, C, H, W)
    loss_low: torch.Tensor | None = None
    loss_high: torch.Tensor | None = None


class FrequencyMAE(GridMAE):
    """Scale-MAE's decoding on a 2D ``(y, x)`` grid: dense decoder, two upsampling heads.

    ``residual_size``: the grid the residual's ``down`` averages to (None = the token grid);
    ``high_weight``: weight of the L1 high-frequency term (Scale-MAE ``l1_loss_weight``)."""

    def __init__(self, encoder: GridEncoder, decoder: torch.nn.Module, heads: FrequencyHeads,
                 masker: TokenMasker | None = None, mask_ratio: float = 0.75,
                 residual_size: Sequence[int] | None = None, high_weight: float = 1.0) -> None:
        super().__init__(encoder, decoder, heads, masker=masker, target=PixelTarget(False), mask_ratio=mask_ratio)
        self.residual_size = None if residual_size is None else (int(residual_size[0]), int(residual_size[1]))
        self.high_weight = float(high_weight)

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
        target_images = (batch.target_images if batch.target_images is not None else batch.images).float()
        pixel_valid = None if batch.valid is None else pixel_weights(batch, target_images, self.embedding.channel_dim)
        residual = self.residual_size or grid_hw
        parts = frequency_loss(pred_low, pred_high, target_images, masking.mask, grid_hw, pixel_valid,
                               residual, self.high_weight)
        # per-token view of the combined reconstruction, for figures and the trainer's denominator
        query_ids = masking.ids_masked
        combined = combine_frequencies(pred_low, pred_high, residual)
        pred = gather_tokens(self.embedding.target_patches(combined, layout), query_ids)
        target, weight = self.target(batch, self.embedding, layout)
        target, weight = gather_tokens(target, query_ids), gather_tokens(weight, query_ids)
        token_weight = torch.gather(masking.mask, 1, query_ids).float()
        if token_valid is not None:
            token_weight = token_weight * torch.gather(token_valid, 1, query_ids)
        return FrequencyMAEOutput(parts.total, pred, masking.mask, query_ids, target, weight, token_weight, masking,
                                  layout, pred_low=pred_low, pred_high=pred_high, loss_low=parts.low.detach(),
                                  loss_high=parts.high.detach())


def build_frequency_mae(embedding: GridEmbedding, config: ModelConfig | None = None, *, mask_ratio: float = 0.75,
                        masker: TokenMasker | None = None, low_scale: float = 0.5, head_width: int | None = None,
                        residual_size: Sequence[int] | None = None, high_weight: float = 1.0,
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
                           int(head_width or config.decoder_embed_dim))
    return FrequencyMAE(encoder, decoder, heads, masker=masker, mask_ratio=mask_ratio,
                        residual_size=residual_size, high_weight=high_weight)
