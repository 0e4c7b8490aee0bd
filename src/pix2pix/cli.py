"""The `pix2pix` command: subcommands that map flags onto TrainConfig and the library functions.

pix2pix train --data DIR [--direction BtoA] [--preset NAME] [--run-dir DIR] [any config flag]
pix2pix train --resume RUN_DIR [--max-steps N]
pix2pix translate --model PATH INPUT... --out DIR [--mode paper|eval] [--seed N]
pix2pix demo            # train on the built-in shapes data, then translate with the model
pix2pix presets         # list the shipped paper presets
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import TrainConfig, list_presets, load_preset
from .data.commands import register as register_layout_commands
from .data.task_commands import register as register_task_commands


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, default None so we know which the user gave."""
    group = parser.add_argument_group("run configuration (defaults: the paper's; a preset may change them)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        names = [flag, "--lambda"] if f.name == "lambda_l1" else [flag]
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if isinstance(f.default, bool):
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(
                *names,
                dest=f.name,
                type=type(f.default),
                default=None,
                choices=f.metadata.get("choices"),
                help=help_text,
            )


def _given_config(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from .train import config_for_resume, train

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
        name = args.preset or (Path(cfg.data).name if cfg.data else "run")
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / name.replace(":", "_")
    summary = train(cfg, run_dir, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.no_progress)
    losses = ", ".join(f"{k} {v:.4f}" for k, v in summary["losses"].items())
    if summary["interrupted"]:
        print(f"stopped at step {summary['step']}; checkpoint saved. Continue with: pix2pix train --resume {run_dir}")
        return 130
    print(f"trained {summary['step']} steps in {summary['seconds']:.1f} s ({losses})")
    print(f"model: {summary['model']}   samples: {run_dir / 'samples'}   log: {run_dir / 'log.jsonl'}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from .predict import Pix2Pix
    from .train import resolve_device

    model = Pix2Pix.load(args.model, device=resolve_device(args.device))
    half = "input" if args.aligned else args.half
    written = model.translate_files(
        args.inputs,
        args.out,
        mode=args.mode,
        seed=args.seed,
        batch_size=args.batch_size,
        half=half,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(written)} image(s) to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's first command: a short run on builtin:shapes, then translate its val set."""
    from .predict import Pix2Pix
    from .train import train

    values = load_preset("shapes")
    if args.max_steps:
        values["max_steps"] = args.max_steps
    cfg = TrainConfig.from_dict(values, "preset shapes")
    run_dir = Path(args.run_dir)
    summary = train(cfg, run_dir, overwrite=args.overwrite, progress=not args.no_progress)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pix2pix", description="Paired image-to-image translation (Isola et al. 2016)."
    )
    parser.add_argument("--version", action="version", version=f"pix2pix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (or resume a run)")
    p.add_argument("--preset", help="a shipped preset (see `pix2pix presets`) or a .toml file")
    p.add_argument("--run-dir", help="where the run is written (default: runs/<preset or data name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --run-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate images of any size with a trained model")
    p.add_argument("--model", required=True, help="model folder (config.json + generator.safetensors) or run dir")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (PNG files, same size as the inputs)")
    p.add_argument(
        "--mode",
        choices=("paper", "eval"),
        default="paper",
        help="paper: dropout on + test-batch statistics (section 3.3); eval: deterministic",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the dropout noise in paper mode")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (eval mode)")
    p.add_argument(
        "--half",
        choices=("whole", "left", "right", "input"),
        default="whole",
        help="use the whole image, or one half of an aligned pair",
    )
    p.add_argument("--aligned", action="store_true", help="inputs are aligned pairs: use the model's input half")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("demo", help="train briefly on the built-in shapes data and translate with the result")
    p.add_argument("--run-dir", default="runs/shapes")
    p.add_argument("--max-steps", type=int, default=0, help="shorter or longer than the preset's run")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="check and prepare datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    register_layout_commands(data_sub)
    register_task_commands(data_sub)

    p = sub.add_parser("presets", help="list the shipped presets (paper experiments)")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept (resume with pix2pix train --resume RUN_DIR)", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        # our errors (DatasetError, ImageError, RunDirError, CheckpointError, bad configs) are
        # ValueErrors naming the file or key; OSError covers missing or unwritable paths
        print(f"pix2pix: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
