"""GridAdapter: the base of every adapter whose model is a :class:`~mae_domains.models.grid_mae.GridMAE`.

A modality declares its patch embedding (and, where it differs from pixels, its target) and its masking
defaults; the model is then built from the run's ``model`` and ``mask`` sections in one place::

    class HeightmapAdapter(GridAdapter):
        name = "terrain.heightmap"
        file_patterns = ("*.npy",)

        def build_embedding(self, model):
            return PatchEmbed2D(1, self.embed_dim(model), model.patch_size)

        def read(self, ref): ...
        def transform(self, sample, seed, train, stats): ...
        def synthetic_sample(self, seed): ...

Reading, transforms and a synthetic sample stay the adapter's; embedding, masking, decoding, loss,
embeddings for evaluation and a default reconstruction figure come from here.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mae_domains.adapter_api import Adapter
from mae_domains.config import ConfigError, MaskConfig, ModelConfig
from mae_domains.masking import TokenMasker, build_masker
from mae_domains.models.embeddings.base import GridEmbedding
from mae_domains.models.grid_mae import GridMAE, GridMAEOutput, TargetFn, build_grid_mae
from mae_domains.models.presets import get_preset
from mae_domains.visualize import save_reconstruction_grid


class GridAdapter(Adapter):
    """An adapter on the token grid. Subclasses implement :meth:`build_embedding` (plus reading,
    transforms and a synthetic sample) and may set ``mask_axis`` (the axis ``consistent`` and
    ``independent`` masking refer to), ``loss_on`` (``masked`` or ``all`` tokens) and override
    :meth:`build_target`."""

    mask_axis: ClassVar[str | None] = None
    loss_on: ClassVar[str] = "masked"

    @abstractmethod
    def build_embedding(self, model: ModelConfig) -> GridEmbedding:
        """The patch embedding at the preset's width (:meth:`embed_dim`)."""

    def build_target(self, model: ModelConfig) -> TargetFn | None:
        """What the decoder reconstructs; None = pixels (per-patch normalized with ``norm_pix_loss``)."""
        return None

    @staticmethod
    def embed_dim(model: ModelConfig) -> int:
        """Encoder width of the configured preset."""
        return get_preset(model.preset).embed_dim

    def build_masker(self, mask: MaskConfig) -> TokenMasker:
        """The masking policy: strategy and axis from the config, else the adapter's recipe."""
        mask = self.resolve_mask(mask)
        strategy = mask.strategy or "random"
        axis = mask.axis or self.mask_axis
        if strategy != "random" and axis is None:
            raise ConfigError(f"mask.strategy={strategy} needs mask.axis: adapter {self.name} has no grid axis "
                              "besides space (use mask.strategy=random)")
        color = None if mask.noise == "uniform" else mask.noise
        return build_masker(strategy, () if strategy == "random" else (axis,), color=color,
                            cache_dir=mask.noise_cache)

    def build_model(self, model: ModelConfig, mask: MaskConfig) -> GridMAE:
        """The GridMAE of this adapter for the run's ``model`` and ``mask`` sections."""
        mask = self.resolve_mask(mask)
        return build_grid_mae(self.build_embedding(model), model, mask_ratio=float(mask.ratio),
                              masker=self.build_masker(mask), target=self.build_target(model), loss_on=self.loss_on)

    def render_reconstruction(self, model: GridMAE, batch: dict[str, Any], output: GridMAEOutput, path: Path) -> Path:
        """Input / masked / reconstruction / reconstruction + visible for up to four 2D samples, one stretch
        per sample shared by its panels (the recorded range where ``meta["display_range"]`` gives one);
        grids with more axes (groups, frames, channels) show their first slice. Adapters override this."""
        n = min(4, batch["image"].shape[0])
        grid_batch = self.grid_batch(batch, output.pred.device)
        recon, hidden = model.reconstruct_pixels(grid_batch, output)
        images = (grid_batch.target_images if grid_batch.target_images is not None else grid_batch.images)
        images, recon, hidden = (t[:n].float().cpu().numpy() for t in (images, recon, hidden))
        while images.ndim > 4:  # (B, S, C, H, W) slices: show the first
            images, recon, hidden = images[:, 0], recon[:, 0], hidden[:, 0]
        masks = hidden.any(axis=1).astype(np.float32) if hidden.ndim == 4 else hidden.astype(np.float32)
        valid = batch.get("valid")
        size = n * images.shape[-2] * images.shape[-1]
        valid = valid[:n].cpu().numpy() if valid is not None and valid[:n].numel() == size else None
        return save_reconstruction_grid(images, recon, masks, path, title=self.name,
                                        metas=list(batch.get("meta") or [])[:n], valid=valid)
