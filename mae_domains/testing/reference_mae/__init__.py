"""The plain 2D Masked Autoencoder, a transcription of the original MAE code (facebookresearch/mae): the
golden reference the tests and benchmarks compare the grid stack (:mod:`mae_domains.models`) against."""

from mae_domains.testing.reference_mae.autoencoder import MAEConfig, MAEOutput, MaskedAutoencoder, build_mae
from mae_domains.testing.reference_mae.decoder import MAEDecoder
from mae_domains.testing.reference_mae.encoder import ViTEncoder

__all__ = ["MAEConfig", "MAEOutput", "MaskedAutoencoder", "build_mae", "MAEDecoder", "ViTEncoder"]
