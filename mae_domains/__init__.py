"""mae-domains: Masked Autoencoder pretraining for scientific imagery with adapter plugins."""

__version__ = "0.1.0"
ADAPTER_API_VERSION = "1.0"

# The notebook API (mae_domains.api), imported on first use so that importing the package stays light. The
# import is by name: every module imports this package (for __version__) without loading the API, which sits
# on the top floor of the import contracts.
API = ("load_model", "preprocess", "embed")


def __getattr__(name: str):
    if name in API:
        import importlib

        return getattr(importlib.import_module("mae_domains.api"), name)
    raise AttributeError(f"module 'mae_domains' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
