"""Translation with a trained generator: running it on any size (generator.py), the Pix2Pix API
and folders of images (predict.py), bounded-memory tiles (tiling.py), ONNX export (export.py).
Loads nothing of training, evaluation or the perceptual metrics."""
