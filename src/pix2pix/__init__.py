"""pix2pix: paired image-to-image translation with conditional adversarial networks.

Isola, Zhu, Zhou, Efros, "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017 (arXiv 1611.07004).

Example:
    >>> from pix2pix import Pix2Pix
    >>> model = Pix2Pix.load("runs/shapes/model")      # doctest: +SKIP
    >>> photo = model.translate(label_map)              # doctest: +SKIP
"""

__version__ = "0.1.0"

from .predict import Pix2Pix  # noqa: E402

__all__ = ["Pix2Pix", "__version__"]
