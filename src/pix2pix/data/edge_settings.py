"""The edge tools' settings, in the standard library alone: `pix2pix data edges --help` shows
them without loading NumPy or Pillow (data/edges.py does the work)."""

EDGES_EXTRA = 'edge detection needs OpenCV: pip install "pix2pix[edges]" (or pip install opencv-python-headless)'
HED_THRESHOLD = 25 / 255  # edge probability above which a pixel is an edge (HED post-processing)
MIN_EDGE_PIXELS = 5
# HED's own preprocessing (Caffe): BGR, 0-255, minus the ImageNet channel means
HED_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)
EDGE_MODEL_INPUTS = ("rgb01", "bgr-mean")
