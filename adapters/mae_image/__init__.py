"""The ``image`` adapter: vanilla MAE on folders of PNG/JPEG/TIFF images (the worked example)."""

from mae_image.adapter import ImageAdapter
from mae_image.reader import read_image

__all__ = ["ImageAdapter", "read_image"]
