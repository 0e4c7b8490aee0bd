"""`pix2pix data ...` commands for dataset layouts: check, combine, split.

pix2pix data check DIR [--splits val] [--fast] [--strict] [--preprocess none --unet-depth 6 ...]
pix2pix data combine A_DIR B_DIR OUT [--resize bicubic|nearest] [--ext png|jpg|tif|npy]
pix2pix data split DIR [--val 0.1] [--test 0.1] [--seed 0] [--move] [--out DIR]

Exit codes: 0 done (check: no errors; warnings are printed), 1 check found errors (or warnings
with --strict), combine could not write some pairs; 2 bad arguments or unusable folders.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..config import GENERATORS, PREPROCESS, TrainConfig, size_multiple
from .flags import add_overwrite, add_quiet

# the library is imported inside each command, so that `pix2pix --help` loads no torch


def cmd_check(args: argparse.Namespace) -> int:
    from ..data.check import Requirements, check_dataset

    defaults = TrainConfig().data
    crop = args.crop_size or defaults.crop_size
    multiple = 1
    if args.preprocess in ("none", "scale_width"):
        depth = args.unet_depth or (int(math.log2(crop)) if crop & (crop - 1) == 0 else 0)
        if args.generator == "unet" and not depth:
            raise ValueError(f"crop_size {crop} is not a power of two: give --unet-depth")
        multiple = size_multiple(args.generator, depth)
    a_b = (args.in_channels, args.out_channels)
    requirements = Requirements(
        preprocess=args.preprocess,
        load_size=args.load_size or defaults.load_size,
        crop_size=crop,
        size_multiple=multiple,
        same_size=args.preprocess in ("none", "scale_width") and args.batch_size > 1,
        channels=a_b if args.direction == "AtoB" else a_b[::-1],
    )
    layout = None if args.layout == "auto" else args.layout
    report = check_dataset(
        args.folder,
        layout,
        requirements,
        splits=args.splits,
        full=not args.fast,
        duplicates=not args.no_duplicates,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(report.format(limit=args.limit))
    failed = bool(report.errors) or (args.strict and bool(report.warnings))
    return 1 if failed else 0


def cmd_combine(args: argparse.Namespace) -> int:
    from ..data.prepare import combine_folders

    result = combine_folders(
        args.a_dir,
        args.b_dir,
        args.out,
        resize=args.resize,
        ext=args.ext,
        overwrite=args.overwrite,
        workers=args.workers,
    )
    for problem in result.unmatched:
        print(f"unmatched: {problem}", file=sys.stderr)
    for problem in result.failed:
        print(f"not combined: {problem}", file=sys.stderr)
    print(
        f"wrote {len(result.written)} aligned pairs (A | B) to {args.out}; "
        f"{len(result.unmatched)} unmatched files, {len(result.failed)} pairs not combined"
    )
    if not result.written and not result.failed:
        raise ValueError(f"no file name occurs in both {args.a_dir} and {args.b_dir}")
    return 1 if result.failed else 0


def cmd_split(args: argparse.Namespace) -> int:
    from ..data.prepare import split_dataset

    result = split_dataset(
        args.folder,
        val=args.val,
        test=args.test,
        seed=args.seed,
        move=args.move,
        overwrite=args.overwrite,
        out=args.out,
        dry_run=args.dry_run,
    )
    for problem in result.unmatched:
        print(f"unmatched (left in place): {problem}", file=sys.stderr)
    counts = ", ".join(f"{name} {len(samples)}" for name, samples in result.assigned.items())
    verb = "would split" if args.dry_run else ("moved" if args.move else "copied")
    print(f"{verb} {sum(len(s) for s in result.assigned.values())} pairs into {args.out or args.folder}: {counts}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `pix2pix data` group (each sets `func`)."""
    p = sub.add_parser(
        "check",
        help="find every unreadable, truncated, odd-sized or unmatched file before training",
        description="Check a dataset the way training reads it: decode every file fully (--fast: headers only), "
        "and report each problem naming its file. Errors (exit code 1): unreadable, empty, truncated or corrupt "
        "files, odd widths of aligned pairs, A/B size mismatches and files without a partner (paired folders), "
        "sizes the preprocessing cannot use, channel counts the model cannot read. Warnings (exit code 0 unless "
        "--strict): mixed sizes, grayscale among colour images, duplicate pairs (also across splits).",
    )
    p.add_argument("folder", type=Path, help="dataset folder (with train/, val/, test/, or the images themselves)")
    p.add_argument("--layout", choices=("auto", "aligned", "folders"), default="auto", help="auto: folders if A/ B/")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="check only these (e.g. --splits val)")
    p.add_argument("--fast", action="store_true", help="headers only (what training checks at its start)")
    p.add_argument("--strict", action="store_true", help="exit code 1 on warnings too")
    p.add_argument("--no-duplicates", action="store_true", help="skip the duplicate search")
    p.add_argument("--workers", type=int, default=0, help="decoding threads (0: one per core, up to 8)")
    p.add_argument("--limit", type=int, default=0, help="show at most this many lines per section (0: all)")
    training = p.add_argument_group("the training settings to check against (defaults: pix2pix train's)")
    training.add_argument("--preprocess", choices=PREPROCESS, default="resize_and_crop")
    training.add_argument("--load-size", type=int, default=0)
    training.add_argument("--crop-size", type=int, default=0)
    training.add_argument("--generator", choices=GENERATORS, default="unet")
    training.add_argument("--unet-depth", type=int, default=0, help="0: log2(crop_size)")
    training.add_argument("--batch-size", type=int, default=1)
    training.add_argument("--in-channels", type=int, default=3)
    training.add_argument("--out-channels", type=int, default=3)
    training.add_argument("--direction", choices=("AtoB", "BtoA"), default="AtoB")
    add_quiet(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "combine",
        help="make aligned pairs (A | B) from folders A_DIR and B_DIR matched by file name",
        description="Write A | B side by side for every name in both folders (A_DIR/x.png + B_DIR/x.jpg -> "
        "OUT/x.png; subfolders such as train/ and val/ are kept). Files without a partner are listed and "
        "skipped. A and B must have the same size unless --resize. Gray + colour gives colour, 8 + 16 bit "
        "gives 16 bit; PNG output is lossless.",
    )
    p.add_argument("a_dir", type=Path, metavar="A_DIR")
    p.add_argument("b_dir", type=Path, metavar="B_DIR")
    p.add_argument("out", type=Path, metavar="OUT")
    p.add_argument(
        "--resize",
        choices=("bicubic", "nearest"),
        help="resize B to A's size where they differ (nearest for label maps); default: report and skip",
    )
    p.add_argument("--ext", default="png", help="png (default, lossless, 8/16 bit), jpg, tif or npy")
    add_overwrite(p, "replace existing files in OUT")
    p.add_argument("--workers", type=int, default=0, help="threads (0: one per core, up to 8)")
    p.set_defaults(func=cmd_combine)

    p = sub.add_parser(
        "split",
        help="split a folder of pairs into train/, val/ and test/ (seeded, repeatable)",
        description="Assign the pairs in DIR (aligned files, or A/ and B/ paired folders) to DIR/train, DIR/val "
        "and DIR/test by a seeded permutation: the same files and seed always give the same split. Copies "
        "unless --move; never overwrites an existing file unless --overwrite.",
    )
    p.add_argument("folder", type=Path, metavar="DIR")
    p.add_argument("--val", type=float, default=0.1, help="fraction for val/ (default 0.1)")
    p.add_argument("--test", type=float, default=0.1, help="fraction for test/ (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--move", action="store_true", help="move the files instead of copying them")
    p.add_argument("--out", type=Path, help="write the splits here instead of into DIR")
    add_overwrite(p, "replace files that already exist at a destination")
    p.add_argument("--dry-run", action="store_true", help="print the counts, touch nothing")
    p.set_defaults(func=cmd_split)
