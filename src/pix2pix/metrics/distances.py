"""Distances between two sets of features: Frechet (FID) and kernel (KID) distance; FID / KID
once the features come from the standard Inception network (perceptual.py)."""

from __future__ import annotations

import numpy as np


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017):
    |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)). The trace of the matrix square
    root is computed as tr((s1^(1/2) sigma2 s1^(1/2))^(1/2)), whose argument is symmetric PSD,
    so no complex parts appear (they do in the sqrtm of the non-symmetric product)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    root1 = _sqrtm_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    values = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(values, 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (N - 1 normalised, as pytorch-fid) of features (N, D)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def kernel_distance(
    real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
    k(x, y) = (x.y / D + 1)^3, averaged over random subsets; returns (mean, std over subsets)."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    d = real.shape[1]
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 features in each set")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(mmd - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))
