"""pix2pix: paired image-to-image translation with conditional adversarial networks.

Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017 (arXiv 1611.07004).

Example:
    >>> from pix2pix import Pix2Pix
    >>> model = Pix2Pix.load("runs/shapes/model")      # doctest: +SKIP
    >>> photo = model.translate(label_map)              # doctest: +SKIP
    >>> from pix2pix import TrainConfig, train
    >>> train(TrainConfig.from_dict({"data": "DATA"}), "runs/mine")  # doctest: +SKIP
"""

from .version import __version__

__all__ = ["Pix2Pix", "TrainConfig", "train", "__version__"]


def __getattr__(name: str) -> object:
    # loaded on first use: `pix2pix --help` and the command parsers need no torch
    if name == "Pix2Pix":
        from .inference.predict import Pix2Pix

        return Pix2Pix
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name == "train":
        from .training.train import train

        return train
    raise AttributeError(f"module 'pix2pix' has no attribute {name!r}")
