"""The browser demo (`pix2pix serve`): a drawing page and a small HTTP API around one model."""

from .server import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_BYTES,
    PALETTES,
    DemoServer,
    Limits,
    RequestError,
    Translator,
    decode_image,
    load_palette,
    make_server,
    model_name,
    resolve_palette,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "PALETTES",
    "DemoServer",
    "Limits",
    "RequestError",
    "Translator",
    "decode_image",
    "load_palette",
    "make_server",
    "model_name",
    "resolve_palette",
]
