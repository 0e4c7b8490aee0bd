"""Paired folders: A/ and B/ side by side, pairs matched by file name (dataset_mode "folders").

    DATA/train/A/0001.png   DATA/train/B/0001.jpg    (extensions may differ)
    DATA/train/A/city/x.png DATA/train/B/city/x.png  (subfolders match by relative path)
    DATA/val/A/...          DATA/val/B/...

A file without a partner, or two files of one folder with the same name, is reported by the
check (`pix2pix data check`, and at the start of training) naming each. A and B of a pair must
have the same size. Everything else (channels, bit depths, jitter, caching, --skip-bad) is as
for aligned pairs: the same `PairedDataset`, with one shared crop and flip per sample.
"""

from __future__ import annotations

from .aligned import PairedDataset
from .check import Sample
from .images import ImageError, Picture, picture_size, read_image


class FoldersDataset(PairedDataset):
    """Pairs from A/ and B/ subfolders of the split folder, matched by name."""

    layout = "folders"

    def load_pair(self, sample: Sample) -> tuple[Picture, Picture]:
        a_path, b_path = sample.files
        a, b = read_image(a_path), read_image(b_path)
        if picture_size(a) != picture_size(b):
            (aw, ah), (bw, bh) = picture_size(a), picture_size(b)
            raise ImageError(f"{a_path}: A is {aw}x{ah} but B ({b_path.name}) is {bw}x{bh}")
        return a, b
