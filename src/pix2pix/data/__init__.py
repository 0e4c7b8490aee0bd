"""Datasets (datasets.py: the registry by dataset_mode) and preparation tools (check, prepare,
download, colorize, edges, labels). This package imports nothing itself, so that the command
parsers load without torch. Every training dataset yields dicts with `real_a` (the input x,
(C_in, H, W) in [-1, 1]), `real_b` (the target y, (C_out, H, W)) and `path`, is indexed with an int
(no augmentation) or with (index, seed) from EpochSampler (seeded jitter), and can `render` a
tensor of either side as an RGB image for sample grids.
"""

# the names of --preprocess (the reference code's options): config.py offers them, aligned.py applies them
PREPROCESS = ("resize_and_crop", "crop", "resize", "scale_width_and_crop", "scale_width", "none")
