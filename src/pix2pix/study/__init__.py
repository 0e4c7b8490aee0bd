"""The paper's "real vs fake" perceptual study (section 4.1, Tables 4-5): prepare, serve, report.

Example:
    >>> from pix2pix.study import create_study, make_study_server, build_report
    >>> create_study("maps/val_photos", [("L1", "out/l1"), ("L1+cGAN", "out/cgan")], "study",
    ...              pairing="different")  # doctest: +SKIP
    >>> make_study_server("study", port=8000).serve_forever()  # doctest: +SKIP
    >>> build_report("study")["methods"][1]["judged_real"]  # doctest: +SKIP
"""

from .protocol import PAIRINGS, QUESTION, Protocol, StudyError

# the rest loads on first use (NumPy, Pillow, the HTTP server): `pix2pix --help` reads the
# protocol's defaults above and nothing else
_DESIGN = ("Study", "create_study", "load_study")
_REPORT = ("build_report", "format_markdown")
_SERVER = ("StudyServer", "make_study_server")
_STORE = ("RESPONSE_FIELDS", "StudyStore")

__all__ = ["PAIRINGS", "QUESTION", "Protocol", "StudyError", *_DESIGN, *_REPORT, *_SERVER, *_STORE]


def __getattr__(name: str) -> object:
    if name in _DESIGN:
        from . import design

        return getattr(design, name)
    if name in _REPORT:
        from . import report

        return getattr(report, name)
    if name in _SERVER:
        from . import server

        return getattr(server, name)
    if name in _STORE:
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module 'pix2pix.study' has no attribute {name!r}")
