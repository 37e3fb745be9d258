"""GridMAE: a masked autoencoder over any token grid, from pluggable parts.

    batch --embedding(visible ids only)--> TokenGrid --encoder (timm blocks + CLS)--> latent
    latent --decoder(query ids)--> features --head (per token / per axis index)--> pred
    full-resolution batch --target--> (target, weight) --weighted loss on the queried tokens--> loss

The mask is drawn before embedding (masks are data-independent), so only visible patches are
projected. Adapters pick the embedding, masker, decoder, head and target; the model never asks which
domain it is in. For example (``w`` = the preset's width)::

    # CT: 16^3 cubes, voxel spacing (z, y, x) in meta["spacing"] scales the 3D code
    build_grid_mae(CubePatchEmbed3D(1, w, 16, reference_spacing=(2.0, 1.5, 1.5)), preset="base")
    # Sentinel-2 band groups, one projection and one head per group, independent masking
    groups = groups_from_band_names(band_names, SENTINEL2_GROUPS)
    build_grid_mae(BandGroupPatchEmbed(groups, w, 8, group_names=list(SENTINEL2_GROUPS)),
                   masker=build_masker("independent", "group"), preset="large")
    # time series: dates in meta["dates"] (B, T, K), tube masking, CrossMAE decoding 25% of tokens
    build_grid_mae(TemporalPatchEmbed(6, w, 16), masker=build_masker("consistent", "time"),
                   decoder="cross", query=0.25)
    # channel-agnostic microscopy: names in meta["channel_names"]; random over all C x L tokens
    build_grid_mae(ChannelSharedPatchEmbed(w, 16, ["DNA", "RNA", "ER", "AGP", "Mito"]))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from mae_domains.config import ModelConfig
from mae_domains.grid import GridLayout, TokenGrid, gather_tokens, pixel_weights, scatter_tokens
from mae_domains.masking import TokenMasker
from mae_domains.models.decoding import CrossAttentionDecoder, LinearHead, RoutedHead, SelfAttentionDecoder
from mae_domains.grid.batch import GridBatch, as_grid_batch
from mae_domains.models.embeddings.base import GridEmbedding
from mae_domains.models.blocks import build_blocks, init_mae_weights, pool_tokens
from mae_domains.masking.indices import MaskIndices
from mae_domains.models.presets import get_preset, with_preset_decoder
from mae_domains.models.targets import PixelTarget, weighted_patch_loss

TargetFn = Callable[[GridBatch, GridEmbedding, GridLayout], tuple[torch.Tensor, torch.Tensor]]


class GridEncoder(nn.Module):
    """Embedding + CLS token + timm ViT blocks + final norm (keys ``cls_token``, ``blocks.N``, ``norm``
    as in timm). The CLS token gets a zero code, as in MAE."""

    num_prefix_tokens = 1

    def __init__(self, embedding: GridEmbedding, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.embedding = embedding
        self.embed_dim = embedding.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.blocks = build_blocks(self.embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.norm = nn.LayerNorm(self.embed_dim, eps=1e-6)
        init_mae_weights(self.blocks)
        init_mae_weights(self.norm)
        nn.init.normal_(self.cls_token, std=0.02)

    def encode(self, grid: TokenGrid, feature_maps: list[torch.Tensor] | None = None) -> TokenGrid:
        """Run the blocks over CLS + the grid's tokens. A ``feature_maps`` list receives the tokens entering
        the first block and every block's output, before the final norm (CrossMAE's feature maps)."""
        grid = grid.with_prefix(self.cls_token.to(grid.tokens.dtype).expand(grid.batch_size, -1, -1))
        x = grid.sequence()
        if feature_maps is None:
            x = self.blocks(x)
        else:
            feature_maps.append(x)
            for block in self.blocks:
                x = block(x)
                feature_maps.append(x)
        return grid.replace_sequence(self.norm(x))

    def forward_visible(self, batch: GridBatch, ids_keep: torch.Tensor,
                        feature_maps: list[torch.Tensor] | None = None) -> TokenGrid:
        """Encode only positions ``ids_keep`` ``(B, K)`` (only those patches are projected); see
        :meth:`encode` for ``feature_maps``."""
        return self.encode(self.embedding(batch, ids_keep), feature_maps)

    def forward_grid(self, batch: GridBatch | torch.Tensor | Mapping[str, Any]) -> TokenGrid:
        """Encode every token; the result can be pooled over named axes (``.pool(["channel"])``)."""
        return self.encode(self.embedding(as_grid_batch(batch)))

    def forward_features(self, batch: GridBatch | torch.Tensor | Mapping[str, Any]) -> torch.Tensor:
        """``(B, 1 + N, D)``: CLS then all grid tokens, no masking."""
        return self.forward_grid(batch).sequence()

    def forward(self, batch: GridBatch | torch.Tensor | Mapping[str, Any]) -> torch.Tensor:
        """``(B, D)``: the CLS token of :meth:`forward_features`, as a timm ViT without a head returns."""
        return self.pool(self.forward_features(batch), "cls")

    def pool(self, features: torch.Tensor, mode: str = "cls") -> torch.Tensor:
        return pool_tokens(features, mode, self.num_prefix_tokens)

    def no_weight_decay(self) -> set[str]:
        return {"cls_token"}

    def timm_state_dict(self, grid_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Weights under timm ``VisionTransformer`` keys for a 2D patch embedding, with the fixed sin-cos
        table of a ``grid_hw`` grid as ``pos_embed`` (CLS row zero; unscaled positions)."""
        from mae_domains.models.embeddings.patch2d import PatchEmbed2D
        from mae_domains.grid.pos_embed import sincos_2d_with_prefix

        if not isinstance(self.embedding, PatchEmbed2D):
            raise TypeError(f"timm export needs a PatchEmbed2D, not {type(self.embedding).__name__}")
        state = {f"patch_embed.proj.{k}": v for k, v in self.embedding.proj.state_dict().items()}
        state["cls_token"] = self.cls_token.detach()
        state["pos_embed"] = sincos_2d_with_prefix(self.embed_dim, grid_hw).to(self.cls_token.device)
        state.update({f"blocks.{k}": v for k, v in self.blocks.state_dict().items()})
        state.update({f"norm.{k}": v for k, v in self.norm.state_dict().items()})
        return state


@dataclass
class GridMAEOutput:
    loss: torch.Tensor
    pred: torch.Tensor  # (B, Q, P) predictions for query_ids (target space: normalized if norm_pix)
    mask: torch.Tensor  # (B, N) 1 = removed
    query_ids: torch.Tensor  # (B, Q) grid positions of pred rows
    target: torch.Tensor  # (B, Q, P)
    weight: torch.Tensor  # (B, Q, P) per-value validity
    token_weight: torch.Tensor  # (B, Q) loss weight per query (0 for visible or invalid tokens)
    masking: MaskIndices
    layout: GridLayout

    @property
    def loss_denominator(self) -> torch.Tensor:
        """What the loss is averaged over: the summed weight of tokens with any valid value (the
        engine all-reduces it so distributed gradients equal those of one big batch)."""
        counted = self.token_weight.float() * (self.weight.sum(-1) > 0)
        return counted.sum().clamp_min(1.0).detach()

    def full_pred(self, fill: float = 0.0) -> torch.Tensor:
        """Predictions scattered to all N positions ``(B, N, P)``; positions not queried hold ``fill``."""
        b, _, p = self.pred.shape
        base = self.pred.new_full((1, self.layout.num_tokens, p), fill)
        return scatter_tokens(self.pred, self.query_ids, base.expand(b, -1, -1))


class GridMAE(nn.Module):
    """Masked autoencoder over a token grid.

    ``query``: which positions are decoded and scored: ``"masked"`` (all masked tokens, MAE), a float
    fraction of all N tokens taken from the masked ones (CrossMAE's ``kept_mask_ratio``, e.g. 0.25; count
    in :meth:`query_count`; the masked tokens with the highest noise, in grid order, as CrossMAE), or
    ``"all"`` (every token, e.g. deblurring scores visible tokens too).
    ``loss_on``: ``"masked"`` or ``"all"`` queried tokens. Invalid tokens never count. A decoder with
    ``uses_feature_maps`` (CrossMAE's feature mapping) gets the encoder's intermediate maps; others don't
    make the encoder keep them.
    """

    def __init__(
        self,
        encoder: GridEncoder,
        decoder: nn.Module,
        head: nn.Module,
        masker: TokenMasker | None = None,
        target: TargetFn | None = None,
        mask_ratio: float = 0.75,
        query: str | float = "masked",
        loss: str = "mse",
        loss_on: str = "masked",
    ) -> None:
        super().__init__()
        if isinstance(query, str) and query not in ("masked", "all"):
            raise ValueError(f"query must be 'masked', 'all' or a fraction, got {query!r}")
        if loss_on not in ("masked", "all"):
            raise ValueError(f"loss_on must be 'masked' or 'all', got {loss_on!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.head = head
        self.masker = masker or TokenMasker()
        self.target = target or PixelTarget()
        self.mask_ratio = mask_ratio
        self.query = query
        self.loss_kind = loss
        self.loss_on = loss_on

    @property
    def embedding(self) -> GridEmbedding:
        return self.encoder.embedding

    @property
    def uses_feature_maps(self) -> bool:
        """Whether the decoder reads the encoder's intermediate feature maps (CrossMAE feature mapping)."""
        return bool(getattr(self.decoder, "uses_feature_maps", False))

    @property
    def has_unused_parameters(self) -> bool:
        """True when pretraining leaves parameters without gradient (the encoder's final norm when the
        decoder mixes the pre-norm feature maps): distributed training must then look for them."""
        return self.uses_feature_maps

    def query_lr_factor(self, mask_ratio: float | None = None) -> float:
        """CrossMAE's learning-rate factor ``kept_mask_ratio / mask_ratio``: the decoded fraction of all
        tokens over the masked fraction when a fraction is decoded, else 1."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        if isinstance(self.query, str):
            return 1.0
        return min(float(self.query) / ratio, 1.0)

    def query_count(self, num_tokens: int, num_masked: int, mask_ratio: float) -> int:
        """Decoded tokens for a fractional ``query`` q, as CrossMAE computes it: the masked tokens less
        ``int(N * (mask_ratio - q))``, i.e. ``N - int(N * (1 - r)) - int(N * (r - q))`` under random
        masking; at least 1, at most the masked count."""
        skipped = int(num_tokens * (mask_ratio - float(self.query)))
        return min(max(1, num_masked - skipped), num_masked)

    def decoder_prefix_codes(self, device: torch.device) -> torch.Tensor | None:
        """Codes the embedding gives the decoder's prefix tokens (``decoder_prefix_codes(width)``, e.g. SatMAE's
        group code G on the CLS token), for a self-attention decoder; None when it gives none."""
        codes_of = getattr(self.embedding, "decoder_prefix_codes", None)
        width = getattr(self.decoder, "decoder_embed_dim", None)
        if codes_of is None or width is None or not isinstance(self.decoder, SelfAttentionDecoder):
            return None
        codes = codes_of(width)
        return None if codes is None else codes.to(device)

    def query_ids(self, masking: MaskIndices, num_tokens: int, mask_ratio: float | None = None) -> torch.Tensor:
        if self.query == "masked":
            return masking.ids_masked
        if self.query == "all":
            return torch.arange(num_tokens, device=masking.ids_keep.device).expand(masking.ids_keep.shape[0], -1)
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        count = self.query_count(num_tokens, masking.ids_masked.shape[1], ratio)
        # CrossMAE decodes the last ``count`` shuffled tokens (highest noise) in grid order (``masked_select``)
        return masking.ids_masked[:, masking.ids_masked.shape[1] - count:].sort(dim=1).values

    def forward(
        self,
        images: torch.Tensor | GridBatch | Mapping[str, Any],
        mask_seeds: Sequence[int] | torch.Tensor | None = None,
        mask_ratio: float | None = None,
        valid: torch.Tensor | None = None,
        meta: Mapping[str, Any] | None = None,
        target_images: torch.Tensor | None = None,
    ) -> GridMAEOutput:
        """Masked forward and loss. Each sample's mask comes from its seed in ``mask_seeds`` (independent of
        batch composition) or, without seeds, from torch's global RNG."""
        batch = as_grid_batch(images, valid=valid, meta=meta, target_images=target_images)
        device = batch.images.device
        layout = self.embedding.layout(batch)
        token_valid = self.embedding.token_validity(batch, layout)
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        masking = self.masker(layout, ratio, batch.batch_size, seeds=mask_seeds, valid=token_valid, device=device)
        feature_maps: list[torch.Tensor] | None = [] if self.uses_feature_maps else None
        latent = self.encoder.forward_visible(batch, masking.ids_keep, feature_maps)
        query_ids = self.query_ids(masking, layout.num_tokens, ratio)
        if feature_maps is not None:
            features = self.decoder(latent, query_ids, feature_maps=feature_maps)
        elif (prefix_codes := self.decoder_prefix_codes(device)) is not None:
            features = self.decoder(latent, query_ids, prefix_codes=prefix_codes)
        else:
            features = self.decoder(latent, query_ids)
        pred = self.head(features, query_ids, layout)
        target, weight = self.target(batch, self.embedding, layout)
        target, weight = gather_tokens(target, query_ids), gather_tokens(weight, query_ids)
        token_weight = torch.ones_like(query_ids, dtype=torch.float32)
        if self.loss_on == "masked":
            token_weight = torch.gather(masking.mask, 1, query_ids)
        if token_valid is not None:
            token_weight = token_weight * torch.gather(token_valid, 1, query_ids)
        loss = weighted_patch_loss(pred, target, weight, token_weight, self.loss_kind)
        return GridMAEOutput(loss, pred, masking.mask, query_ids, target, weight, token_weight, masking, layout)

    @torch.no_grad()
    def reconstruct_pixels(self, batch: torch.Tensor | GridBatch | Mapping[str, Any],
                           output: GridMAEOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """``(reconstruction, hidden)`` in the layout of the input images: the queried tokens' predictions
        (de-normalized with each target patch's valid mean and std when ``norm_pix`` is on) pasted into the
        target image, and a bool map of the pixels the encoder did not see."""
        batch = as_grid_batch(batch)
        embedding, layout = self.embedding, output.layout
        images = (batch.target_images if batch.target_images is not None else batch.images).float()
        patches = embedding.target_patches(images, layout)
        pred = output.pred.float()
        if getattr(self.target, "norm_pix", False):
            weight = embedding.target_patches(pixel_weights(batch, images, embedding.channel_dim), layout)
            count = weight.sum(-1, keepdim=True).clamp_min(1.0)
            mean = (patches * weight).sum(-1, keepdim=True) / count
            var = ((patches - mean) ** 2 * weight).sum(-1, keepdim=True) / (count - 1).clamp_min(1.0)
            ids = output.query_ids.unsqueeze(-1)
            pred = pred * torch.gather((var + 1e-6) ** 0.5, 1, ids) + torch.gather(mean, 1, ids)
        recon = embedding.unpatchify(scatter_tokens(pred, output.query_ids, patches), layout)
        hidden_tokens = output.mask.float().unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        hidden = embedding.unpatchify(hidden_tokens.contiguous(), layout) > 0.5
        return recon, hidden

    def reconstruct(self, batch: torch.Tensor | GridBatch, output: GridMAEOutput) -> torch.Tensor:
        """Image with queried positions replaced by predictions and the rest taken from the target
        (in target space: normalized patches when ``norm_pix`` is on)."""
        batch = as_grid_batch(batch)
        target, _ = self.target(batch, self.embedding, output.layout)
        merged = scatter_tokens(output.pred.to(target.dtype), output.query_ids, target)
        return self.embedding.unpatchify(merged, output.layout)


def build_encoder(embedding: GridEmbedding, config: ModelConfig | None,
                  overrides: dict[str, Any]) -> tuple[ModelConfig, Any, GridEncoder]:
    """The run's ``model`` section with ``overrides`` and the preset's decoder applied, the preset, and the
    encoder around ``embedding`` (its codes sized for the decoder width too)."""
    config = dataclasses.replace(config or ModelConfig(norm_pix_loss=False))
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise TypeError(f"unknown model setting {key!r}")
        setattr(config, key, value)
    config = with_preset_decoder(config)
    preset = get_preset(config.preset)
    if embedding.embed_dim != preset.embed_dim:
        raise ValueError(f"embedding width {embedding.embed_dim} differs from preset {config.preset!r} "
                         f"width {preset.embed_dim}")
    embedding.prepare_code_width(config.decoder_embed_dim)
    encoder = GridEncoder(embedding, config.depth or preset.depth, preset.num_heads, preset.mlp_ratio,
                          config.drop_path_rate)
    return config, preset, encoder


def build_grid_mae(embedding: GridEmbedding, config: ModelConfig | None = None, *, mask_ratio: float = 0.75,
                   masker: TokenMasker | None = None, target: TargetFn | None = None, loss_on: str = "masked",
                   **overrides: Any) -> GridMAE:
    """A GridMAE around ``embedding`` from a :class:`~mae_domains.config.ModelConfig` (the run's ``model``
    section); keyword ``overrides`` replace its fields: ``build_grid_mae(PatchEmbed2D(3, 384),
    preset="small", decoder="cross", query=0.25)``. Without a config the defaults are the original MAE
    code's (``norm_pix_loss`` off). A routed head (one per index) is used when the embedding sets
    ``route_axis`` (band groups). ``target`` defaults to pixels (normalized per patch with norm_pix)."""
    config, preset, encoder = build_encoder(embedding, config, overrides)
    sizes = (preset.embed_dim, config.decoder_embed_dim, config.decoder_depth, config.decoder_num_heads,
             preset.mlp_ratio)
    if config.decoder == "self":
        decoder: nn.Module = SelfAttentionDecoder(*sizes)
    elif config.decoder == "cross":
        decoder = CrossAttentionDecoder(*sizes, features=config.cross_features, encoder_depth=len(encoder.blocks))
    else:
        raise ValueError(f"unknown decoder {config.decoder!r}; use 'self' or 'cross'")
    if embedding.route_axis is not None:
        head: nn.Module = RoutedHead(config.decoder_embed_dim, embedding.target_dim, embedding.route_axis,
                                     embedding.num_routes)
    else:
        head = LinearHead(config.decoder_embed_dim, embedding.target_dim)
    return GridMAE(encoder, decoder, head, masker=masker, target=target or PixelTarget(config.norm_pix_loss),
                   mask_ratio=mask_ratio, query=config.query, loss=config.loss, loss_on=loss_on)
