"""Gaussian blur of the deblurring MAE (Kang et al. 2023): the encoder sees a blurred image, the decoder
reconstructs the sharp one.

The reference blurs files with OpenCV (``cv2.GaussianBlur(img, (0, 0), sigma)``, sigma 1.1); here the
blur runs on the collated batch, on its device, with the same kernel as OpenCV's for float images
(``ksize = round(8 sigma + 1) | 1``, weights ``exp(-x^2 / 2 sigma^2)`` normalized, border
``BORDER_REFLECT_101``). It is linear and its kernel sums to one, so blurring a normalized image
equals normalizing a blurred one. ``sigma`` is in pixels of the model input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kernel_size(sigma: float) -> int:
    """OpenCV's automatic kernel size for float images: ``round(sigma * 4 * 2 + 1) | 1``."""
    return int(round(sigma * 8 + 1)) | 1


def gaussian_kernel1d(sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """The normalized 1D kernel (float32)."""
    radius = kernel_size(sigma) // 2
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    weights = torch.exp(-(x**2) / (2.0 * sigma * sigma))
    return (weights / weights.sum()).float()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur ``(B, C, H, W)`` images (each channel on its own) in float32; ``sigma <= 0`` returns them as
    they are. Images smaller than the kernel radius fall back to replicated borders."""
    if sigma <= 0:
        return images
    if images.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(images.shape)}")
    dtype = images.dtype
    x = images.float()
    b, c, h, w = x.shape
    kernel = gaussian_kernel1d(sigma, x.device)
    r = kernel.numel() // 2
    mode = "reflect" if min(h, w) > r else "replicate"
    x = x.reshape(b * c, 1, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode=mode), kernel.view(1, 1, -1, 1))
    return x.reshape(b, c, h, w).to(dtype)

