"""The browser demo (`pix2pix serve`): a drawing page and a small HTTP API around one model
(demo.py), on the JSON plumbing it shares with the study server (http.py). The demo's names load
on first use, so that the study server and the command parsers need no torch."""

_DEMO = (
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "PALETTES",
    "DemoServer",
    "Limits",
    "Translator",
    "decode_image",
    "page_palette",
    "make_server",
    "model_name",
    "resolve_palette",
)
__all__ = [*_DEMO, "RequestError"]


def __getattr__(name: str) -> object:
    if name in _DEMO:
        from . import demo

        return getattr(demo, name)
    if name == "RequestError":
        from .http import RequestError

        return RequestError
    raise AttributeError(f"module 'pix2pix.serve' has no attribute {name!r}")
