"""`pix2pix reproduce`: the paper's experiment sets trained and scored (reproduce.py), and seed
003's colorization comparison (reproduce_color.py). The paper's figures are ../paper.py."""
