"""Medical adapters: ``medical.xray`` (chest X-ray MAE) and ``medical.ultrasound`` (deblurring MAE), with
DICOM read the way a radiologist's viewer shows it (:mod:`mae_medical.dicom_reader`)."""

from mae_medical.dicom_display import DisplaySettings
from mae_medical.dicom_reader import DicomFrame, read_dicom_frame
from mae_medical.raster_images import read_raster
from mae_medical.frame_discovery import FrameRef, discover_sources
from mae_medical.ultrasound import UltrasoundAdapter
from mae_medical.xray import XrayAdapter

__all__ = ["DisplaySettings", "DicomFrame", "read_dicom_frame", "read_raster", "FrameRef", "discover_sources",
           "UltrasoundAdapter", "XrayAdapter"]
