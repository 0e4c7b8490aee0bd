"""`pix2pix data ...` commands that make task datasets: edges, colorize, download.

pix2pix data colorize PHOTOS OUT [--size 256] [--val-fraction 0.1]      # grey | colour pairs
pix2pix data edges PHOTOS OUT [--edge-model hed.onnx] [--min-size 5]     # edge | photo pairs
pix2pix data download NAME [--dest datasets] [--url MIRROR] [--sha256 SUM]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .flags import add_overwrite, add_quiet

# the library is imported inside each command, so that `pix2pix --help` loads no torch


def _add_pair_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="PHOTOS", help="a folder of photos (searched recursively)")
    p.add_argument("out", metavar="OUT", help="output dataset folder: OUT/train, OUT/val (aligned pairs, PNG)")
    p.add_argument(
        "--size", type=int, default=256, help="resize the shorter side and centre-crop to SIZE x SIZE (0: keep)"
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="fraction of the photos put in val/ (0: all train)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    add_overwrite(p, "replace existing pairs in OUT")
    add_quiet(p)


def _pair_options(args: argparse.Namespace) -> dict:
    return dict(
        size=args.size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )


def _report(counts: dict[str, int], out: str, kind: str) -> None:
    print(f"wrote {counts['train']} train and {counts['val']} val {kind} pairs to {out}")


def cmd_colorize(args: argparse.Namespace) -> int:
    from ..data.colorize import make_colorization_dataset

    counts = make_colorization_dataset(args.src, args.out, **_pair_options(args))
    _report(counts, args.out, "grey | colour")
    print(f"(pix2pix trains on the photos directly: pix2pix train --preset colorization --data {args.src})")
    return 0


def cmd_edges(args: argparse.Namespace) -> int:
    from ..data.edges import EdgeModel, MissingDependencyError, make_edges_dataset

    try:
        model = EdgeModel(args.edge_model, args.edge_model_input) if args.edge_model else None
        counts = make_edges_dataset(
            args.src,
            args.out,
            model=model,
            threshold=args.threshold,
            min_size=args.min_size,
            low=args.low,
            high=args.high,
            **_pair_options(args),
        )
    except MissingDependencyError as err:
        print(f"pix2pix: error: {err}", file=sys.stderr)
        return 2
    _report(counts, args.out, "edge | photo")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from ..data.download import download_dataset

    download_dataset(
        args.name,
        Path(args.dest),
        url=args.url,
        sha256=args.sha256,
        keep_archive=args.keep_archive,
        force=args.overwrite,
        progress=not args.quiet,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `pix2pix data` group (each sets `func`)."""
    from ..data.download import NAMES, URL_ENV
    from ..data.edge_settings import EDGE_MODEL_INPUTS, HED_THRESHOLD, MIN_EDGE_PIXELS

    p = sub.add_parser(
        "colorize",
        help="make aligned grey | colour pairs from a folder of photos (for other tools)",
        description="Write aligned pairs, the Lab lightness L as grey | the colour photo. pix2pix itself "
        "needs no such files: --preset colorization trains on any folder of photos directly.",
    )
    _add_pair_options(p)
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser(
        "edges",
        help="make aligned edge | photo pairs from a folder of photos (Canny, or your HED model)",
        description="Edge maps drawn black on white, thinned, pieces under --min-size pixels removed "
        '(Canny needs OpenCV: pip install "pix2pix[edges]").',
    )
    _add_pair_options(p)
    p.add_argument("--min-size", type=int, default=MIN_EDGE_PIXELS, help="drop edge pieces with fewer pixels")
    p.add_argument("--low", type=float, default=None, help="Canny low threshold (default: 0.4 x high)")
    p.add_argument(
        "--high", type=float, default=None, help="Canny high threshold (default: 90th percentile of the gradient)"
    )
    p.add_argument(
        "--edge-model",
        metavar="PATH.onnx",
        help="a HED-style edge network in ONNX format, run with onnxruntime instead of Canny (no download)",
    )
    p.add_argument(
        "--edge-model-input",
        choices=EDGE_MODEL_INPUTS,
        default="rgb01",
        help="the model's input: rgb01 (RGB in [0, 1]) or bgr-mean (HED's Caffe BGR 0-255 minus means)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=HED_THRESHOLD,
        help=f"edge-model probability above which a pixel is an edge (default 25/255 = {HED_THRESHOLD:.3f})",
    )
    p.set_defaults(func=cmd_edges)

    p = sub.add_parser(
        "download",
        help="download an official pix2pix dataset (resumable, SHA-256 checked)",
        description=f"Download NAME.tar.gz, resume it if cut short, check it and unpack it into DEST/NAME. "
        f"Mirrors: --url or ${URL_ENV}.",
    )
    p.add_argument("name", metavar="NAME", choices=NAMES, help=f"one of: {', '.join(NAMES)}")
    p.add_argument("--dest", default="datasets", help="folder to put NAME/ in (default: datasets)")
    p.add_argument("--url", help=f"a mirror: base URL (NAME.tar.gz is appended) or an archive URL (env: {URL_ENV})")
    p.add_argument("--sha256", help="expected SHA-256 of the archive")
    p.add_argument("--keep-archive", action="store_true", help="keep DEST/NAME.tar.gz after unpacking")
    add_overwrite(p, "replace an existing DEST/NAME", force_alias=True)
    add_quiet(p)
    p.set_defaults(func=cmd_download)
