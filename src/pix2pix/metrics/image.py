"""Image similarity: L1, L2, PSNR and SSIM between two float images in [0, 1], (H, W) or (H, W, C)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _as_float(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    return image[..., None] if image.ndim == 2 else image


def l1(x: np.ndarray, y: np.ndarray) -> float:
    """Mean absolute difference, images in [0, 1]."""
    return float(np.abs(_as_float(x) - _as_float(y)).mean())


def l2(x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared difference, images in [0, 1]."""
    return float(((_as_float(x) - _as_float(y)) ** 2).mean())


def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """10 log10(range^2 / MSE) in dB over all pixels and channels; inf for identical images."""
    mse = l2(x, y)
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def _gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """'Valid' filtering of (C, 1, H, W) with a normalised size x size Gaussian, done as two 1-D
    passes (the 2-D Gaussian is separable): (C, 1, H - size + 1, W - size + 1)."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    return F.conv2d(F.conv2d(x, g.view(1, 1, size, 1)), g.view(1, 1, 1, size))


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> float:
    """SSIM of Wang et al. 2004 (IEEE TIP), their reference settings: an 11x11 Gaussian window
    with sigma 1.5, K1 = 0.01, K2 = 0.03, population (not sample) variances, the map taken over
    the 'valid' window positions only, averaged, then averaged over channels."""
    a = torch.from_numpy(_as_float(x)).permute(2, 0, 1)[:, None]  # (C, 1, H, W) float64
    b = torch.from_numpy(_as_float(y)).permute(2, 0, 1)[:, None]
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if min(a.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window} pixels, got {tuple(a.shape[-2:])}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    blurred = _gaussian_blur(torch.cat([a, b, a * a, b * b, a * b]), window, sigma)  # one pass, 5 maps
    mu_a, mu_b, aa, bb, ab = blurred.chunk(5)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())
