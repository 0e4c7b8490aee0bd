"""Lab colour maths for colorization (section 4.7 of the paper, Table 5): sRGB <-> CIE Lab (D65)
in torch, the network's scaling of L and ab, and the conversions between PIL images and the
generator's input and output. Nothing here loads a dataset, so translating with a colorization
model needs none of them."""

from __future__ import annotations

import torch
from PIL import Image

from .images import to_tensor

L_SCALE = 50.0  # real_a = L / 50 - 1
AB_SCALE = 110.0  # real_b = ab / 110

# sRGB (linear) -> XYZ, D65 (IEC 61966-2-1); XYZ -> sRGB is its exact inverse
_RGB_TO_XYZ = torch.tensor(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=torch.float64,
)
_XYZ_TO_RGB = torch.linalg.inv(_RGB_TO_XYZ)
WHITE_D65 = (0.95047, 1.0, 1.08883)  # reference white X_n, Y_n, Z_n
_DELTA = 6.0 / 29.0  # CIE: f(t) is cubic-root above delta^3, linear below


def _mix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a 3x3 matrix along the channel dimension of (..., 3, H, W)."""
    return torch.einsum("ij,...jhw->...ihw", matrix.to(x.dtype), x)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], shape (..., 3, H, W) -> CIELAB (D65): L in [0, 100], a and b about +-110.

    Example:
        >>> lab = rgb_to_lab(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1))  # pure red
        >>> [round(v, 2) for v in lab.flatten().tolist()]
        [53.24, 80.09, 67.2]
    """
    if rgb.ndim < 3 or rgb.shape[-3] != 3:
        raise ValueError(f"expected an RGB tensor (..., 3, H, W), got shape {tuple(rgb.shape)}")
    rgb = rgb.clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)  # undo sRGB gamma
    xyz = _mix(_RGB_TO_XYZ, linear)
    white = torch.tensor(WHITE_D65, dtype=rgb.dtype, device=rgb.device).view(3, 1, 1)
    t = xyz / white
    f = torch.where(t > _DELTA**3, t.clamp(min=_DELTA**3) ** (1 / 3), t / (3 * _DELTA**2) + 4 / 29)
    fx, fy, fz = f.unbind(-3)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB (D65), shape (..., 3, H, W) -> sRGB in [0, 1]; colours outside the sRGB gamut are
    clipped."""
    if lab.ndim < 3 or lab.shape[-3] != 3:
        raise ValueError(f"expected a Lab tensor (..., 3, H, W), got shape {tuple(lab.shape)}")
    L, a, b = lab.unbind(-3)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=-3)
    t = torch.where(f > _DELTA, f**3, 3 * _DELTA**2 * (f - 4 / 29))
    white = torch.tensor(WHITE_D65, dtype=lab.dtype, device=lab.device).view(3, 1, 1)
    linear = _mix(_XYZ_TO_RGB, t * white).clamp(0, 1)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1)


def lab_to_net(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lab (..., 3, H, W) -> (L / 50 - 1, ab / 110): the generator's input and target in [-1, 1]."""
    return lab[..., :1, :, :] / L_SCALE - 1, (lab[..., 1:, :, :] / AB_SCALE).clamp(-1, 1)


def net_to_lab(real_a: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(normalised L (..., 1, H, W), normalised ab (..., 2, H, W)) -> Lab (..., 3, H, W)."""
    if real_a.shape[-3] != 1 or ab.shape[-3] != 2 or real_a.shape[-2:] != ab.shape[-2:]:
        shapes = f"{tuple(real_a.shape)} and {tuple(ab.shape)}"
        raise ValueError(f"expected L (1, H, W) and ab (2, H, W) of one size, got {shapes}")
    L = (real_a.float().clamp(-1, 1) + 1) * L_SCALE
    return torch.cat([L, ab.float().clamp(-1, 1) * AB_SCALE], dim=-3)


def image_to_l_ab(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """A colour (or grey) PIL image -> (real_a (1, H, W), real_b (2, H, W)), both in [-1, 1]."""
    rgb = (to_tensor(image.convert("RGB")) + 1) / 2  # (3, H, W) in [0, 1]
    return lab_to_net(rgb_to_lab(rgb))


def l_ab_to_image(real_a: torch.Tensor, ab: torch.Tensor | None = None) -> Image.Image:
    """Normalised L (1, H, W) and ab (2, H, W) -> RGB PIL image; without ab, the grey of L."""
    real_a = real_a.detach().cpu().float()
    ab = torch.zeros(2, *real_a.shape[-2:]) if ab is None else ab.detach().cpu().float()
    rgb = lab_to_rgb(net_to_lab(real_a, ab))  # (3, H, W) in [0, 1]
    array = rgb.mul(255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(array, "RGB")


def grey_image(image: Image.Image) -> Image.Image:
    """The lightness L of a photo as a grey RGB image: what a colorization model sees."""
    return l_ab_to_image(image_to_l_ab(image)[0])
