"""Metric formulas, pure functions on arrays, one file per family: segmentation scores from a
confusion matrix (segmentation.py), L1 / L2 / PSNR / SSIM (image.py), colour histograms and their
intersection (colour.py), Frechet and kernel distances between feature sets (distances.py). Images
are float arrays in [0, 1], (H, W) or (H, W, C).

The networks that FID, KID and LPIPS need are perceptual.py's; this face does not load them.
"""

from .colour import (
    LAB_BINS,
    RGB_BINS,
    colourfulness,
    histogram_intersection,
    lab_histograms,
    rgb_histograms,
    rgb_to_lab,
)
from .distances import feature_statistics, fid_from_features, frechet_distance, kernel_distance
from .image import l1, l2, psnr, ssim
from .segmentation import confusion_matrix, segmentation_scores

__all__ = [
    "LAB_BINS",
    "RGB_BINS",
    "colourfulness",
    "confusion_matrix",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "histogram_intersection",
    "kernel_distance",
    "l1",
    "l2",
    "lab_histograms",
    "psnr",
    "rgb_histograms",
    "rgb_to_lab",
    "segmentation_scores",
    "ssim",
]
