"""Inference at scale: tiled against untiled translation (time per megapixel, peak RSS), a
streamed folder against the decode-everything-first loop, 16-bit PNG decoding, and int8 ONNX
Runtime against fp32 and eager PyTorch.

Every translation runs in a child process that reports its own peak RSS (getrusage), so one
measurement's memory never hides another's. The generator is the paper's 256 px U-Net with
random weights (time and memory do not depend on the weights); int8 accuracy is measured on a
trained model (`--trained MODEL`, e.g. a reduced Cityscapes run) where one is given.

    python benchmarks/large_images.py [--data ../shared/data/cityscapes] [--trained MODEL]
        [--sizes 1024,2048] [--huge 8000] [--out benchmarks/results/large_images_cpu]
    python benchmarks/large_images.py --before SRC ...   # also the streaming figures of an older
                                                           # checkout's src/ (the code before streaming)
Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pix2pix import __version__

sys.path.insert(0, str(Path(__file__).parent))
from bench import device_name, write_report  # noqa: E402

PAPER_UNET = {"architecture": "unet", "generator": {"depth": 8}, "crop_size": 256}


def paper_model(folder: Path) -> Path:
    """The paper's 256 px U-Net, seeded random weights, as a model folder."""
    from pix2pix.hub.folder import build_generator, save_model
    from pix2pix.models.networks import init_weights

    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        g = build_generator(PAPER_UNET)
        init_weights(g)
        save_model(folder, g, PAPER_UNET)
    return folder


def scene(side: int, path: Path) -> Path:
    """A smooth synthetic RGB scene (gradients and waves: compresses well, decodes fast)."""
    if not path.is_file():
        y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
        rgb = np.stack([x, 0.5 + 0.5 * np.sin(12 * x + 7 * y), y * (1 - x)], -1)
        Image.fromarray((rgb * 255).astype(np.uint8)).save(path, compress_level=1)
    return path


# --- child processes ------------------------------------------------------------------------------


def child_translate(args: argparse.Namespace) -> dict[str, object]:
    """One translate_files call; its time and this process's peak RSS."""
    from pix2pix import Pix2Pix

    model = Pix2Pix.load(args.model)
    options = {"mode": args.mode, "seed": 0, "overwrite": True, "half": args.half, "batch_size": 8}
    if args.tile >= 0:
        options["tile"] = args.tile  # (code from before tiling has no such option)
    started = time.perf_counter()
    written = model.translate_files([args.input], args.dest, **options)
    seconds = time.perf_counter() - started
    pixels = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in written)
    return {"seconds": seconds, "images": len(written), "megapixels": pixels / 1e6, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): getrusage's ru_maxrss would include the parent's peak,
    which a forked child inherits."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(src: Path | None, **kwargs: object) -> dict[str, object]:
    env = dict(os.environ)
    if src is not None:  # an older checkout's code
        env["PYTHONPATH"] = str(src)
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in kwargs.items()]
    done = subprocess.run(
        [sys.executable, __file__, "--child", *flags], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode:
        raise RuntimeError(f"child {kwargs} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the measurements --------------------------------------------------------------------------------


def tiled_vs_untiled(args: argparse.Namespace, work: Path) -> list[dict[str, object]]:
    model = paper_model(work / "unet256")
    rows = []
    for side in args.sizes:
        image = scene(side, work / f"scene{side}.png")
        for mode in ("eval", "paper"):
            for name, tile in (("untiled", 0), ("tiled", 512 if side <= 1024 else -1)):
                r = run_child(None, model=model, input=image, dest=work / "out", mode=mode, tile=tile, half="whole")
                rows.append({"side": side, "mode": mode, "how": name, **r, "s_per_mp": r["seconds"] / r["megapixels"]})
                print(rows[-1], flush=True)
    if args.huge:
        image = scene(args.huge, work / f"scene{args.huge}.png")
        for mode in args.huge_modes.split(","):
            r = run_child(None, model=model, input=image, dest=work / "out", mode=mode, tile=-1, half="whole")
            rows.append(
                {
                    "side": args.huge,
                    "mode": mode,
                    "how": "tiled (auto)",
                    **r,
                    "s_per_mp": r["seconds"] / r["megapixels"],
                }
            )
            print(rows[-1], flush=True)
    return rows


def streaming(args: argparse.Namespace, work: Path) -> list[dict[str, object]]:
    model = paper_model(work / "unet256")
    val = Path(args.data) / "val"
    rows = []
    legacy = work / "unet256-legacy"  # the weights under the file name older code reads
    legacy.mkdir(exist_ok=True)
    (legacy / "config.json").write_bytes((model / "config.json").read_bytes())
    (legacy / "generator.safetensors").write_bytes((model / "model.safetensors").read_bytes())
    for name, src in (("before (decode all, then translate)", args.before), ("streamed", None)):
        if name.startswith("before") and src is None:
            continue
        folder = legacy if src is not None else model
        r = run_child(src, model=folder, input=val, dest=work / "stream", mode="eval", tile=-1, half="right")
        rows.append({"code": name, **r, "images_per_s": r["images"] / r["seconds"]})
        print(rows[-1], flush=True)
    return rows


def png16(work: Path) -> list[dict[str, object]]:
    from pix2pix.data.images import _decode_png16, _read_png16_opencv, _write_png16

    rows = []
    for side in (1024, 2048):
        y, x = np.mgrid[0:side, 0:side]
        pixels = np.stack([x * 31, y * 29, (x + y) * 13], -1).astype(np.uint16)
        path = work / f"rgb16_{side}.png"
        _write_png16(pixels, path, filter_type=4)  # Paeth: the slow case of the pure decoder
        data = path.read_bytes()
        _read_png16_opencv(data)  # warm-up: the first call imports OpenCV
        timings = {}
        for name in ("pure", "opencv"):
            started = time.perf_counter()
            out = _decode_png16(data, path) if name == "pure" else _read_png16_opencv(data)
            timings[name] = time.perf_counter() - started
            assert out is not None and np.array_equal(out, pixels), name
        rows.append({"side": side, "filter": "Paeth", **{f"{k}_s": v for k, v in timings.items()}})
        print(rows[-1], flush=True)
    return rows


# --- int8: measured, not kept in the library (benchmarks/RESULTS.md) ------------------------


def calibration_inputs(images: list[Path], card: Any, half: str = "whole", size: int | None = None) -> list[Any]:
    """The generator inputs (1, C_in, S, S) float32 numpy arrays of the calibration images: the
    chosen half (aligned pairs: 'input' is the model's input half), resized to the model's
    training size S, as the network saw images in training."""
    from pix2pix.data.images import mode_for_channels, open_image, split_pair, to_tensor

    side = size or card.crop_size
    inputs = []
    for path in images:
        image = open_image(path, mode_for_channels(card.in_channels))
        if half != "whole":
            pick = ("right" if card.direction == "BtoA" else "left") if half == "input" else half
            image = split_pair(image, path)[0 if pick == "left" else 1]
        image = image.resize((side, side), Image.BICUBIC)
        inputs.append(to_tensor(image)[None].numpy())
    return inputs


def quantize_onnx(fp32: str | Path, out: str | Path, inputs: list[Any], per_channel: bool = True) -> Path:
    """Write the int8 version of the fp32 ONNX file `fp32`: ONNX Runtime's static quantization
    (QDQ format, int8 weights per output channel, uint8 activations) with activation ranges
    calibrated (min-max) on `inputs`, real images as calibration_inputs gives them. The pix2pix
    metadata is kept, so load_onnx runs the result like any export. (ORT fuses the encoder's
    convolutions into QLinearConv; its transposed convolutions, most of the decoder's work,
    stay float between dequantize and quantize nodes.)"""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not inputs:
        raise ValueError("int8 quantization needs calibration images (--calibration DIR)")
    fp32, out = Path(fp32), Path(out)
    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{name: x} for x in inputs])

        def get_next(self) -> dict[str, Any] | None:
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=out.name + ".") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / out.name
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        model = onnx.load(str(quantized))
        source = onnx.load(str(fp32), load_external_data=False)
        del model.metadata_props[:]
        for prop in source.metadata_props:
            model.metadata_props.add(key=prop.key, value=prop.value)
        model.metadata_props.add(
            key="pix2pix." + "quantized", value=f"int8 static QDQ, {len(inputs)} calibration images"
        )
        onnx.save(model, str(quantized))
        quantized.replace(out)
    return out


def int8(args: argparse.Namespace, work: Path) -> list[dict[str, object]]:
    from pix2pix import Pix2Pix
    from pix2pix.evaluation.pairs import list_pairs
    from pix2pix.inference.export import export_onnx, load_onnx

    models = {"paper U-Net 256 (random weights)": paper_model(work / "unet256")}
    if args.trained:
        models["trained: " + Path(args.trained).parent.name] = Path(args.trained)
    calibration = list_pairs(args.data, "train")[:: max(1, 2975 // 32)][:32]
    val = list_pairs(args.data, "val")[:50]
    rows = []
    for name, folder in models.items():
        model = Pix2Pix.load(folder)
        fp32, q8 = work / f"{folder.name}_fp32.onnx", work / f"{folder.name}_int8.onnx"
        export_onnx(model.generator, model.config, fp32)
        quantize_onnx(fp32, q8, calibration_inputs(calibration, model.config, "input"))
        backends = {"torch eager": model, "onnxruntime fp32": load_onnx(fp32), "onnxruntime int8": load_onnx(q8)}
        for side in (256, 512):
            x = torch.from_numpy(np.concatenate(calibration_inputs(val, model.config, "input", side)))
            row: dict[str, object] = {"model": name, "side": side}
            times: dict[str, list[float]] = {backend: [] for backend in backends}
            for m in backends.values():
                m.translate(x[:1], mode="eval")  # warm-up
            for i in range(args.repeats):  # the backends in turn, so that drift hits all alike
                for backend, m in backends.items():
                    started = time.perf_counter()
                    m.translate(x[i % len(x) : i % len(x) + 1], mode="eval")
                    times[backend].append(time.perf_counter() - started)
            for backend in backends:
                row[f"{backend} ms"] = 1000 * statistics.median(times[backend])
            reference = model.translate(x, mode="eval")
            quantized = backends["onnxruntime int8"].translate(x, mode="eval")
            mse = ((reference - quantized) / 2).square().mean().item()
            row["int8 PSNR vs fp32 (dB)"] = 10 * np.log10(1 / mse)
            row["int8 max |diff|"] = (reference - quantized).abs().max().item()
            row["images"] = len(x)
            rows.append(row)
            print(row, flush=True)
    return rows


def markdown(report: dict[str, object]) -> str:
    lines = [
        f"Device: {report['device']}; torch {report['torch']}; pix2pix {report['pix2pix']}; {report['date']}.",
        f"Command: `{report['command']}`",
        "",
        "Tiled against untiled translation (`translate_files`, end to end: decode, translate, write PNG), the paper's "
        "256 px U-Net; peak RSS of the whole process:",
        "",
        "| side | mode | how | s | s / megapixel | peak RSS (MB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["tiled"]:
        cells = (
            r["side"],
            r["mode"],
            r["how"],
            f"{r['seconds']:.1f}",
            f"{r['s_per_mp']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
        )
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    if report["streaming"]:
        lines += [
            "",
            "A folder: the 500 Cityscapes val pairs (input halves, 256 x 256), eval mode, batch 8:",
            "",
            "| code | images / s | peak RSS (MB) |",
            "|---|---|---|",
        ]
        for r in report["streaming"]:
            lines.append(f"| {r['code']} | {r['images_per_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    lines += [
        "",
        "16-bit RGB PNG, every row Paeth-filtered, decode time:",
        "",
        "| side | pure Python (s) | OpenCV (s) |",
        "|---|---|---|",
    ]
    for r in report["png16"]:
        lines.append(f"| {r['side']} | {r['pure_s']:.2f} | {r['opencv_s']:.3f} |")
    if report["int8"]:
        keys = [k for k in report["int8"][0] if k not in ("model", "side", "images")]
        lines += [
            "",
            "int8 (ONNX Runtime static QDQ, 32 calibration images) against fp32, one image per call, "
            f"median of {report['repeats']} (backends in turn):",
            "",
            "| model | side | " + " | ".join(keys) + " |",
            "|---|---|" + "---|" * len(keys),
        ]
        for r in report["int8"]:
            cells = [f"{r[k]:.1f}" if "ms" in k or "PSNR" in k else f"{r[k]:.3f}" for k in keys]
            lines.append(f"| {r['model']} | {r['side']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--tile", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--half", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="../shared/data/cityscapes")
    parser.add_argument("--trained", help="a trained model folder for the int8 accuracy")
    parser.add_argument("--before", type=Path, help="src/ of a checkout before streaming, for its figures")
    parser.add_argument("--sizes", default="1024,2048", help="sides measured both tiled and untiled")
    parser.add_argument("--huge", type=int, default=8000, help="side measured tiled only (0: none)")
    parser.add_argument("--huge-modes", default="eval,paper", help="modes of the --huge image")
    parser.add_argument("--repeats", type=int, default=30, help="int8 timing: calls per backend and size")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: tiled,streaming,png16,int8")
    parser.add_argument("--out", default="benchmarks/results/large_images_cpu")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_translate(args)))
        return
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    skip = set(args.skip.split(","))
    data_present = Path(args.data, "val").is_dir()
    if not data_present:
        print(f"{args.data}: no Cityscapes here; the streaming and int8 parts are skipped")
    with tempfile.TemporaryDirectory(prefix="pix2pix-large-") as tmp:
        work = Path(tmp)
        report = {
            "device": device_name(torch.device("cpu")),
            "torch": torch.__version__,
            "pix2pix": __version__,
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "command": "python " + " ".join(sys.argv),
            "repeats": args.repeats,
            "tiled": [] if "tiled" in skip else tiled_vs_untiled(args, work),
            "streaming": [] if "streaming" in skip or not data_present else streaming(args, work),
            "png16": [] if "png16" in skip else png16(work),
            "int8": [] if "int8" in skip or not data_present else int8(args, work),
        }
    write_report(Path(args.out), report, markdown(report))


if __name__ == "__main__":
    main()
