"""Remote-sensing adapters: SatMAE band groups (``remote_sensing.multispectral``) and time series
(``remote_sensing.temporal``) on real GeoTIFF/COG, band-file and Zarr archives."""

from mae_remote_sensing.multispectral import MultispectralAdapter
from mae_remote_sensing.temporal import TemporalAdapter

__all__ = ["MultispectralAdapter", "TemporalAdapter"]
