"""`pix2pix evaluate`: the scorer (evaluate.py), the FCN-score segmenter, the report page."""
