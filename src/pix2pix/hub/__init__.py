"""The model folder and sharing it: config.json (model_config.py), the README card (card.py), the
folder's writer and reader (folder.py), the Hugging Face Hub (huggingface.py), the reference
code's weights (reference.py) and its published models (published.py)."""
