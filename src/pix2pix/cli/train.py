"""`pix2pix train`, `pix2pix demo` and `pix2pix presets`: flags onto TrainConfig, then the library."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import FIELDS, FILE_ORDER, TrainConfig, list_presets, load_preset
from .flags import add_overwrite, add_quiet

# the library is imported inside each command, so that `pix2pix --help` loads no torch


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, default None so we know which the user gave."""
    group = parser.add_argument_group("run configuration (defaults: the paper's; a preset may change them)")
    for key in FILE_ORDER:
        f = FIELDS[key]
        flag = "--" + key.replace("_", "-")
        names = [flag, "--lambda"] if key == "lambda_l1" else [flag]
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if isinstance(f.default, bool):
            group.add_argument(*names, dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(
                *names,
                dest=key,
                type=type(f.default),
                default=None,
                choices=f.metadata.get("choices"),
                help=help_text,
            )


def _given_config(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in FILE_ORDER if getattr(args, key) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.train import config_for_resume, train

    overrides = _given_config(args)
    if args.resume:
        if args.preset:
            raise ValueError("--resume continues a run with its saved config; drop --preset")
        cfg = config_for_resume(args.resume, overrides)
        run_dir = Path(args.resume)
    else:
        values = load_preset(args.preset) if args.preset else {}
        values.update(overrides)
        cfg = TrainConfig.from_dict(values, f"preset {args.preset}" if args.preset else "flags")
        name = args.preset or (Path(cfg.run.data).name if cfg.run.data else "run")
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / name.replace(":", "_")
    summary = train(cfg, run_dir, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.quiet)
    if summary["rank"] != 0:  # under torchrun, rank 0 reports for all processes
        return 130 if summary["interrupted"] else 0
    losses = ", ".join(f"{k} {v:.4f}" for k, v in summary["losses"].items())
    if summary["interrupted"]:
        print(f"stopped at step {summary['step']}; checkpoint saved. Continue with: pix2pix train --resume {run_dir}")
        return 130
    start = summary["step"] - summary["steps_run"]
    since = f" (step {start} to {summary['step']})" if start else ""
    print(f"trained {summary['steps_run']} steps{since} in {summary['seconds']:.1f} s ({losses})")
    print(f"model: {summary['model']}   samples: {run_dir / 'samples'}   log: {run_dir / 'log.jsonl'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's first command: a short run on builtin:shapes, then translate its val set."""
    from ..inference.predict import Pix2Pix
    from ..training.train import train

    values = load_preset("shapes")
    if args.max_steps:
        values["max_steps"] = args.max_steps
    cfg = TrainConfig.from_dict(values, "preset shapes")
    run_dir = Path(args.run_dir)
    summary = train(cfg, run_dir, overwrite=args.overwrite, progress=not args.quiet)
    model = Pix2Pix.load(run_dir / "model")
    out = run_dir / "translated"
    written = model.translate_files([run_dir / "data" / "val"], out, half="input", seed=0, overwrite=True)
    print(f"trained {summary['step']} steps in {summary['seconds']:.0f} s on builtin:shapes")
    print(f"samples (input | output | target): {run_dir / 'samples'}")
    print(f"model: {run_dir / 'model'}; translated {len(written)} val images into {out}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    import tomllib
    from importlib import resources

    for name in list_presets():
        text = (resources.files("pix2pix") / "presets" / f"{name}.toml").read_text()
        description = tomllib.loads(text).get("description", "")
        print(f"{name:28s} {description}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (or resume a run)")
    p.add_argument("--preset", help="a shipped preset (see `pix2pix presets`) or a .toml file")
    p.add_argument("--run-dir", help="where the run is written (default: runs/<preset or data name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    add_overwrite(p, "replace an existing run in --run-dir")
    add_quiet(p)
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="train briefly on the built-in shapes data and translate with the result")
    p.add_argument("--run-dir", default="runs/shapes", help="where the run is written (default: runs/shapes)")
    p.add_argument(
        "--max-steps", type=int, default=0, help="steps to train (default: the shapes preset's, about 1,000)"
    )
    add_overwrite(p, "replace an earlier demo run in --run-dir")
    add_quiet(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("presets", help="list the shipped presets (paper experiments)")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("report", help="write RUN/report.html: losses, validation, samples, timings, configuration")
    p.add_argument("run", metavar="RUN", help="a run directory")
    p.add_argument("--smoothing", type=float, default=0.9, help="weight of the loss curves' moving average (0: raw)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..training.report import write_report

    if not 0 <= args.smoothing < 1:
        raise ValueError(f"--smoothing {args.smoothing}: must be in [0, 1)")
    print(f"wrote {write_report(args.run, args.smoothing)}")
    return 0
