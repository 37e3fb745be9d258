"""The ``microscopy.channel_agnostic`` adapter: channel-agnostic MAE on multi-channel fluorescence archives
(OME-TIFF, TIFF, ImageJ hyperstacks, per-channel plate-reader files, OME-Zarr, plain Zarr), and the
cell-biology evaluation workflow (aggregation per image and well, batch correction, replicate mAP,
recall of known relationships, channel-adaptive 1-NN)."""

from mae_microscopy.adapter import ChannelAgnosticAdapter

__all__ = ["ChannelAgnosticAdapter"]
