"""Reading and writing images, with errors that name the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


class ImageError(ValueError):
    """A file that cannot be used as an image, with the path in the message."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by path so order never depends on the OS."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def open_image(path: Path, mode: str = "RGB") -> Image.Image:
    """Decode `path` fully into a PIL image in `mode` ('RGB' or 'L'), EXIF orientation applied.

    Raises ImageError naming the file when it is not an image, truncated or corrupt.
    """
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            if img.mode in ("P", "PA", "LA", "RGBA") and mode == "RGB":
                # palette and alpha: composite on black so the result does not depend on
                # whatever colour hides under transparent pixels
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                img = Image.alpha_composite(background, img)
            return img.convert(mode)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only: cheap enough to check a whole dataset up front."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def mode_for_channels(channels: int) -> str:
    if channels == 1:
        return "L"
    if channels == 3:
        return "RGB"
    raise ValueError(f"{channels}-channel images are not supported by the image reader (use 1 or 3)")


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float tensor (C, H, W) scaled to [-1, 1], the range of G's tanh output."""
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
    return tensor.float().div_(127.5).sub_(1.0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (C, H, W) in [-1, 1] -> 8-bit PIL image (C = 1 gives L, C = 3 gives RGB)."""
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1 or 3, H, W) tensor, got shape {tuple(tensor.shape)}")
    array = tensor.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte()
    array = array.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, "L" if array.shape[2] == 1 else "RGB")


def split_pair(img: Image.Image, path: Path | str = "image") -> tuple[Image.Image, Image.Image]:
    """Aligned pair -> (left, right) halves. The width must be even: two equal halves."""
    w, h = img.size
    if w % 2:
        raise ImageError(f"{path}: width {w} is odd; an aligned pair needs two equal halves")
    half = w // 2
    return img.crop((0, 0, half, h)), img.crop((half, 0, w, h))
