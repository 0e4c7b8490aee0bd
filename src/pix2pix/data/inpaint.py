"""Inpainting (appendix 6.2, Paris StreetView): any folder of photos, a hole cut on the fly.

real_b is the photo, real_a the same photo with a box filled with 0, the middle grey of [-1, 1].
The paper uses a centre hole; `random` places a box of the same size anywhere. Holes are a
fraction `hole_size` of each side (0.5: a quarter of the area). The box position of a random
hole comes from the sample's seed (training) or from its index (validation, so sample grids
always show the same holes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .aligned import Augment
from .images import mode_for_channels, to_image, to_tensor
from .photos import PhotoDataset

HOLES = ("center", "random")
HOLE_FILL = 0.0  # mid-grey in [-1, 1]


def hole_box(
    height: int, width: int, hole: str = "center", hole_size: float = 0.5, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """(top, left, box height, box width) of the hole in an image of height x width."""
    if hole not in HOLES:
        raise ValueError(f"hole = {hole!r}: choose one of {list(HOLES)}")
    if not 0.0 < hole_size < 1.0:
        raise ValueError(f"hole_size = {hole_size}: a fraction of the side in (0, 1), e.g. 0.5")
    bh, bw = max(1, round(height * hole_size)), max(1, round(width * hole_size))
    if hole == "center":
        return (height - bh) // 2, (width - bw) // 2, bh, bw
    generator = generator or torch.Generator().manual_seed(0)
    top = int(torch.randint(0, height - bh + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - bw + 1, (1,), generator=generator))
    return top, left, bh, bw


def cut_hole(image: torch.Tensor, box: tuple[int, int, int, int], fill: float = HOLE_FILL) -> torch.Tensor:
    """A copy of `image` (C, H, W) with `box` filled with `fill`."""
    top, left, bh, bw = box
    out = image.clone()
    out[:, top : top + bh, left : left + bw] = fill
    return out


class InpaintingDataset(PhotoDataset):
    """Photos with a hole (real_a) and whole (real_b), both (C, H, W) in [-1, 1], C = 3 or 1.

    Takes the `make_dataset` contract (folder, direction, augment, in_channels, out_channels)
    plus the hole settings (TrainConfig.hole, TrainConfig.hole_size).
    """

    def __init__(
        self,
        folder: Path | str,
        direction: str = "AtoB",
        augment: Augment | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        hole: str = "center",
        hole_size: float = 0.5,
        check: bool = True,
    ) -> None:
        if in_channels != out_channels:
            raise ValueError(
                f"dataset_mode inpainting restores the photo it is given: in_channels ({in_channels}) "
                f"must equal out_channels ({out_channels})"
            )
        if direction != "AtoB":
            raise ValueError("dataset_mode inpainting always maps holed -> whole photo; leave direction at AtoB")
        hole_box(8, 8, hole, hole_size)  # checks the settings before any image is read
        super().__init__(folder, augment, check)
        self.mode = mode_for_channels(in_channels)
        self.hole, self.hole_size = hole, hole_size

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        index, path, generator, photo = self.load(key)
        real_b = to_tensor(photo.convert(self.mode))  # (C, H, W): y, the whole photo
        if generator is None:  # validation: the same hole every time
            generator = torch.Generator().manual_seed(index)
        box = hole_box(real_b.shape[1], real_b.shape[2], self.hole, self.hole_size, generator)
        return {"real_a": cut_hole(real_b, box), "real_b": real_b, "path": str(path)}

    def render(self, image: torch.Tensor, real_a: torch.Tensor) -> Image.Image:
        return to_image(image).convert("RGB")
