"""mae-domains: Masked Autoencoder pretraining for scientific imagery with adapter plugins."""

__version__ = "0.1.0"
ADAPTER_API_VERSION = "1.0"
