"""Colour statistics (paper Figure 7, seed 003): Lab and RGB histograms, their intersection,
colourfulness. Images are float sRGB arrays in [0, 1], (H, W, 3)."""

from __future__ import annotations

import numpy as np
import torch

from ..data.color import rgb_to_lab as _rgb_to_lab

# Bin edges: 1 unit of L (0-100) and of a, b (-128-128), 1 level of 8-bit R, G, B.
LAB_BINS = {"L": np.arange(0, 101 + 1), "a": np.arange(-128, 128 + 1), "b": np.arange(-128, 128 + 1)}
RGB_BINS = np.arange(0, 256 + 1)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) sRGB in [0, 1] -> CIE Lab (D65), L in [0, 100]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    return _rgb_to_lab(t).permute(1, 2, 0).numpy().astype(np.float64)


def lab_histograms(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Counts of L, a and b values of one image (H, W, 3) in [0, 1] over LAB_BINS."""
    lab = rgb_to_lab(rgb).reshape(-1, 3)
    return {ch: np.histogram(lab[:, i], bins=LAB_BINS[ch])[0].astype(np.int64) for i, ch in enumerate("Lab")}


def rgb_histograms(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Counts of 8-bit R, G and B values of one image (H, W, 3) in [0, 1]."""
    levels = np.clip(np.round(np.asarray(rgb) * 255), 0, 255).reshape(-1, 3)
    return {ch: np.bincount(levels[:, i].astype(np.int64), minlength=256) for i, ch in enumerate("RGB")}


def histogram_intersection(p: np.ndarray, q: np.ndarray) -> float:
    """sum_i min(p_i, q_i) of the two histograms normalised to sum 1: 1 for the same
    distribution, 0 for disjoint ones."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in bins: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("histogram intersection of an empty histogram")
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness M of one image (H, W, 3) in [0, 1], on the 0-255
    scale of their paper (2003): with rg = R - G and yb = (R + G) / 2 - B,
    M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2). Their scale: 0 not, 15
    slightly, 33 moderately, 45 averagely, 59 quite, 82 highly, 109 extremely colourful."""
    x = np.asarray(rgb, dtype=np.float64) * 255.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
