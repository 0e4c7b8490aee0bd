"""`pix2pix evaluate`: the scorer and its report page (evaluate.py), the FCN-score segmenter
(segmenter.py), and the paired test images both read (pairs.py)."""
