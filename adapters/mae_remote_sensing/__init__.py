"""Remote-sensing adapters: SatMAE band groups (``remote_sensing.multispectral``), time series
(``remote_sensing.temporal``) and Scale-MAE (``remote_sensing.scale``) on real GeoTIFF/COG, band-file and
Zarr archives, with the ``knn_multiscale`` protocol (registered, as the converters are, in pyproject.toml)."""

from mae_remote_sensing.multispectral import MultispectralAdapter
from mae_remote_sensing.multiscale_knn import MultiscaleKnnProtocol
from mae_remote_sensing.scale import ScaleAdapter
from mae_remote_sensing.temporal import TemporalAdapter

__all__ = ["MultiscaleKnnProtocol", "MultispectralAdapter", "ScaleAdapter", "TemporalAdapter"]
