"""Dataset checks: every problem a training run would hit, found before it starts.

`check_dataset` walks the splits of a dataset folder and reports, each naming its file:

errors (the run would crash or train on something wrong; exit code 1 of `pix2pix data check`)
- unreadable files: not an image, empty, truncated or corrupt (the full check decodes every
  pixel; the fast one, run at the start of training, reads headers only);
- odd widths that cannot be halved (aligned pairs), A and B of a pair with different sizes and
  names without a partner (paired folders);
- sizes the preprocessing cannot use: smaller than crop_size for cropping, not a multiple of
  the generator's 2**depth for `none` / `scale_width`, or differing sizes when those batch > 1;
- channels the model cannot read (e.g. a 5-band array for a 3-channel model).

warnings (reported; the exit code stays 0 unless --strict)
- mixed sizes, grayscale images among colour ones (per side of the pair), duplicate pairs
  (same decoded pixels in the full check, same file bytes in the fast one), also across splits.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..progress import progress_bar
from .images import (
    ImageError,
    ImageInfo,
    broken_links,
    image_info,
    is_grayscale,
    is_image_file,
    list_images,
    one_line,
    read_image,
    split_pair,
)

LAYOUTS = ("aligned", "folders")
SPLITS = ("train", "val", "test")
CROPPING = ("resize_and_crop", "crop", "scale_width_and_crop")
FULL_SIZE = ("none", "scale_width")  # the network sees the whole image: sides must suit it


@dataclass(frozen=True)
class Problem:
    """One finding about one file; `error` False means a warning."""

    path: Path
    message: str
    error: bool = True

    def __str__(self) -> str:
        return one_line(f"{self.path}: {self.message}")


@dataclass(frozen=True)
class Sample:
    """One training pair: a file holding A | B (aligned) or an A file and a B file (folders)."""

    name: str
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Requirements:
    """What the training preprocessing needs of every image (of each half, for aligned pairs)."""

    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    size_multiple: int = 1  # none / scale_width: the U-Net needs sides divisible by 2**depth
    same_size: bool = False  # none / scale_width with batch > 1: a batch stacks equal sizes
    channels: tuple[int, int] | None = None  # (A, B) channels the model reads

    def trained_size(self, w: int, h: int) -> tuple[int, int]:
        """Size of the picture the network sees for a (w, h) image."""
        if self.preprocess in FULL_SIZE:
            return (w, h) if self.preprocess == "none" else scale_width_size(w, h, self.load_size)
        return (self.crop_size, self.crop_size)

    def size_problem(self, w: int, h: int) -> str | None:
        if self.preprocess == "crop" and (w < self.crop_size or h < self.crop_size):
            return f"size {w}x{h} is smaller than crop_size {self.crop_size} (--preprocess crop does not resize)"
        if self.preprocess in FULL_SIZE and self.size_multiple > 1:
            tw, th = self.trained_size(w, h)
            m = self.size_multiple
            if tw % m or th % m:
                scaled = f" (scaled to {tw}x{th})" if (tw, th) != (w, h) else ""
                depth = largest_unet_depth(tw, th)
                return (
                    f"size {w}x{h}{scaled} is not a multiple of {m}, which --preprocess {self.preprocess} needs "
                    f"for this generator; this size allows --unet-depth {depth} at most, or use "
                    "--preprocess crop or resize_and_crop"
                )
        return None


def scale_width_size(w: int, h: int, width: int, min_height: int = 1) -> tuple[int, int]:
    """(width, height) after scaling (w, h) to `width` keeping the aspect ratio."""
    return width, max(min_height, round(width * h / w))


def largest_unet_depth(w: int, h: int) -> int:
    """The deepest U-Net whose 2**depth divides both sides and still fits the smaller one."""
    depth = 0
    while (w % 2 ** (depth + 1) == 0) and (h % 2 ** (depth + 1) == 0) and 2 ** (depth + 1) <= min(w, h):
        depth += 1
    return depth


# --- layouts: which files make up the samples of one split ---


def detect_layout(folder: Path) -> str:
    """'folders' when `folder` holds A/ and B/ subfolders, else 'aligned'."""
    return "folders" if (folder / "A").is_dir() and (folder / "B").is_dir() else "aligned"


def match_pairs(a_dir: Path, b_dir: Path) -> tuple[list[Sample], list[Problem]]:
    """Samples (a, b) matched by path without extension relative to each folder
    (A/x.png <-> B/x.jpg, A/sub/y.png <-> B/sub/y.png); problems name the unmatched files and
    names that two files of one folder share."""
    problems: list[Problem] = []

    def by_name(folder: Path, side: str) -> dict[str, Path]:
        names: dict[str, Path] = {}
        for path in list_images(folder):
            name = path.relative_to(folder).with_suffix("").as_posix()
            if name in names:
                problems.append(Problem(path, f"name {name!r} is also used by {names[name].name} in {side}/"))
                continue
            names[name] = path
        return names

    a_names, b_names = by_name(a_dir, "A"), by_name(b_dir, "B")
    problems += [Problem(path, why) for folder in (a_dir, b_dir) for path, why in broken_links(folder)]
    for name in sorted(a_names.keys() - b_names.keys()):
        problems.append(Problem(a_names[name], f"no partner in {b_dir} (no B file named {name}.*)"))
    for name in sorted(b_names.keys() - a_names.keys()):
        problems.append(Problem(b_names[name], f"no partner in {a_dir} (no A file named {name}.*)"))
    samples = [Sample(name, (a_names[name], b_names[name])) for name in sorted(a_names.keys() & b_names.keys())]
    return samples, problems


def list_samples(folder: Path, layout: str) -> tuple[list[Sample], list[Problem]]:
    """The samples of one split folder in `layout`, and the problems of the listing itself."""
    folder = Path(folder)
    if layout == "aligned":
        files = list_images(folder)
        broken = [Problem(path, why) for path, why in broken_links(folder)]
        return [Sample(p.relative_to(folder).with_suffix("").as_posix(), (p,)) for p in files], broken
    if layout == "folders":
        a_dir, b_dir = folder / "A", folder / "B"
        missing = [d.name + "/" for d in (a_dir, b_dir) if not d.is_dir()]
        if missing:
            return [], [Problem(folder, f"no {' or '.join(missing)} folder; paired folders need A/ and B/")]
        return match_pairs(a_dir, b_dir)
    raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")


# --- one file ---


@dataclass
class FileResult:
    path: Path
    info: ImageInfo | None = None
    error: str | None = None  # without the path
    gray: tuple[bool, ...] = ()  # per half for aligned pairs, else one value
    digest: str | None = None


def inspect_file(path: Path, full: bool, halves: bool, digest: bool) -> FileResult:
    """Header (fast) or full decode (full) of one file; never raises for a bad file."""
    result = FileResult(path)
    try:
        if path.stat().st_size == 0:
            result.error = "empty file (0 bytes)"
            return result
        result.info = image_info(path)
        if not full:
            gray = result.info.channels <= 2
            result.gray = (gray, gray) if halves else (gray,)
            if digest:
                result.digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
            return result
        picture = read_image(path)  # every pixel: truncation shows up here, not mid-epoch
        array = np.asarray(picture)
        if (array.shape[1], array.shape[0]) != (result.info.width, result.info.height):
            raise ImageError(f"{path}: decoded size differs from the header's")
        if halves and result.info.width % 2 == 0:
            result.gray = tuple(is_grayscale(half) for half in split_pair(picture, path))
        else:
            result.gray = (is_grayscale(picture),) * (2 if halves else 1)
        if digest:
            h = hashlib.blake2b(digest_size=16)
            h.update(f"{array.shape}{array.dtype}".encode())
            h.update(np.ascontiguousarray(array).tobytes())
            result.digest = h.hexdigest()
    except ImageError as err:
        result.error = str(err).removeprefix(f"{path}: ")
        result.info = None
    except OSError as err:
        result.error = f"cannot read ({err.strerror or err})"
        result.info = None
    return result


def inspect_files(
    paths: Sequence[Path], full: bool, halves: bool, digest: bool, workers: int = 0, progress: bool = False
) -> list[FileResult]:
    """`inspect_file` over many files; a thread pool (decoders release the GIL) when workers > 1."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(paths) < 8:
        return [inspect_file(p, full, halves, digest) for p in progress_bar(paths, "check", progress, "file")]
    results = []
    with ThreadPoolExecutor(workers) as pool, progress_bar(len(paths), "check", progress, "file") as bar:
        for result in pool.map(lambda p: inspect_file(p, full, halves, digest), paths):
            results.append(result)
            bar.update(1)
    return results


# --- one split, a dataset ---


@dataclass
class SplitReport:
    name: str
    folder: Path
    layout: str
    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)
    sizes: Counter = field(default_factory=Counter)  # (w, h) of A -> samples
    files: int = 0
    digests: dict[str, list[Sample]] = field(default_factory=dict)  # pixels (or bytes) -> samples

    @property
    def bad_files(self) -> set[Path]:
        return {p.path for p in self.problems if p.error}

    @property
    def usable(self) -> list[Sample]:
        bad = self.bad_files
        return [s for s in self.samples if not bad.intersection(s.files)]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.error]


def check_split(
    folder: Path,
    layout: str = "aligned",
    requirements: Requirements | None = None,
    full: bool = True,
    duplicates: bool = True,
    workers: int = 0,
    name: str = "",
    progress: bool = False,
) -> SplitReport:
    """Check one split folder. `full` decodes every pixel; otherwise headers only (the quick
    check at the start of training)."""
    folder = Path(folder)
    req = requirements or Requirements()
    if not folder.is_dir():
        return SplitReport(name or folder.name, folder, layout, [], [Problem(folder, "folder does not exist")])
    samples, problems = list_samples(folder, layout)
    report = SplitReport(name or folder.name, folder, layout, samples, problems)
    if not samples and not problems:
        others = [p.name for p in sorted(folder.iterdir())[:5]] if folder.is_dir() else []
        hint = f" (found only: {', '.join(others)})" if others else ""
        problems.append(Problem(folder, f"no image files (.jpg, .png, .npy, ...){hint}"))
        return report
    paths = [p for s in samples for p in s.files]
    report.files = len(paths) + sum(1 for p in problems if is_image_file(p.path))
    results = {r.path: r for r in inspect_files(paths, full, layout == "aligned", duplicates, workers, progress)}

    trained: dict[Sample, tuple[int, int]] = {}
    side_gray: list[list[tuple[Sample, bool]]] = [[], []]
    for sample in samples:
        found = [results[p] for p in sample.files]
        checked = _check_sample(sample, found, layout, req)
        if isinstance(checked, list):
            problems.extend(checked)
            continue
        size, gray = checked
        report.sizes[size] += 1
        trained[sample] = req.trained_size(*size)
        for side in (0, 1):
            side_gray[side].append((sample, gray[side]))
        digest = "".join(r.digest or "" for r in found)
        if digest:
            report.digests.setdefault(digest, []).append(sample)
    problems += _mixed_sizes(report, trained, req, results)
    problems += _duplicates_and_grayscale(report, side_gray, full)
    return report


def _check_sample(
    sample: Sample, found: list[FileResult], layout: str, req: Requirements
) -> list[Problem] | tuple[tuple[int, int], tuple[bool, bool]]:
    """The problems of one sample, or its (width, height) per side and whether each side is grey."""
    bad = [Problem(r.path, r.error) for r in found if r.error]
    if bad:
        return bad
    first = found[0].info
    if layout == "aligned":
        if first.width % 2:
            return [Problem(sample.files[0], f"width {first.width} is odd; an aligned pair needs two equal halves")]
        size, infos, gray = (first.width // 2, first.height), (first, first), found[0].gray
    else:
        second = found[1].info
        size = (first.width, first.height)
        if (second.width, second.height) != size:
            return [
                Problem(
                    sample.files[0],
                    f"A is {first.width}x{first.height} but B ({sample.files[1].name}) is "
                    f"{second.width}x{second.height}; a pair needs equal sizes (pix2pix data combine --resize "
                    "can resize B)",
                )
            ]
        infos, gray = (first, second), (found[0].gray[0], found[1].gray[0])
    message = req.size_problem(*size)
    if req.channels is not None and message is None:
        message = _channels_problem(infos, req.channels)
    return [Problem(sample.files[0], message)] if message else (size, gray)


def _mixed_sizes(
    report: SplitReport, trained: dict[Sample, tuple[int, int]], req: Requirements, results: dict[Path, FileResult]
) -> list[Problem]:
    """Sizes that differ: an error where a batch must stack whole images, else a warning."""
    if len(report.sizes) <= 1:
        return []
    common = report.sizes.most_common(1)[0][0]
    if req.same_size and len(set(trained.values())) > 1:
        common_trained = Counter(trained.values()).most_common(1)[0][0]
        return [
            Problem(
                sample.files[0],
                f"network input {size[0]}x{size[1]} differs from {common_trained[0]}x{common_trained[1]} "
                f"(most files): with --preprocess {req.preprocess} a batch stacks whole images, so "
                "batch_size > 1 needs equal sizes; use --batch-size 1 or a cropping preprocess",
            )
            for sample, size in trained.items()
            if size != common_trained
        ]
    layout = report.layout
    listed = ", ".join(f"{w}x{h} ({n})" for (w, h), n in report.sizes.most_common(4))
    more = f", ... {len(report.sizes) - 4} more sizes" if len(report.sizes) > 4 else ""
    example = next(s for s in report.samples if s in trained and _sample_size(s, results, layout) != common)
    return [
        Problem(
            report.folder,
            f"mixed sizes{' of each half' if layout == 'aligned' else ''}: {listed}{more}; "
            f"e.g. {example.files[0].name}",
            error=False,
        )
    ]


def _duplicates_and_grayscale(
    report: SplitReport, side_gray: list[list[tuple[Sample, bool]]], full: bool
) -> list[Problem]:
    """Warnings: pairs that repeat another's bytes (or pixels), and grey sides among colour ones."""
    problems = []
    what = "pixels" if full else "file bytes"
    for group in report.digests.values():
        for other in group[1:]:
            first = group[0].files[0].relative_to(report.folder)
            problems.append(Problem(other.files[0], f"same {what} as {first} (duplicate pair)", error=False))
    layout = report.layout
    flagged: dict[Sample, list[str]] = {}
    for side, label in enumerate(_side_names(layout)):
        gray = [sample for sample, g in side_gray[side] if g]
        if gray and len(gray) < len(side_gray[side]) / 2:  # grayscale where most are colour
            for sample in gray:
                flagged.setdefault(sample, []).append(label)
    for sample, labels in flagged.items():
        path = sample.files[1] if labels == [_side_names(layout)[1]] and layout == "folders" else sample.files[0]
        verb = "is" if len(labels) == 1 else "are"
        problems.append(Problem(path, f"{' and '.join(labels)} {verb} grayscale among colour images", error=False))
    return problems


def _side_names(layout: str) -> tuple[str, str]:
    return ("left half (A)", "right half (B)") if layout == "aligned" else ("A image", "B image")


def _sample_size(sample: Sample, results: dict[Path, FileResult], layout: str) -> tuple[int, int]:
    info = results[sample.files[0]].info
    return (info.width // 2, info.height) if layout == "aligned" else (info.width, info.height)


def _channels_problem(infos: tuple[ImageInfo, ImageInfo], channels: tuple[int, int]) -> str | None:
    for side, info, want in zip("AB", infos, channels):
        have = info.channels
        convertible = have == want or (have <= 4 and want in (1, 3)) or (want in (2, 4) and have == want - 1)
        if not convertible:
            return f"{side} has {have} channels; a {want}-channel model cannot read it (--in-channels, --out-channels)"
    return None


@dataclass
class Report:
    root: Path
    splits: list[SplitReport]
    full: bool
    seconds: float = 0.0

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.splits for p in s.problems]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.error]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.error]

    def format(self, limit: int = 0) -> str:
        """The report as text, paths relative to the root; `limit` > 0 shows at most that many
        lines per section."""
        kind = "full decode" if self.full else "headers only"
        lines = [f"{self.root} ({kind})"]
        for s in self.splits:
            sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in s.sizes.most_common(3))
            more = f", +{len(s.sizes) - 3} sizes" if len(s.sizes) > 3 else ""
            lines.append(
                f"  {s.name:<8} {s.layout:<8} {len(s.samples):6d} pairs {len(s.usable):6d} usable "
                f"{len(s.errors):5d} errors {len(s.warnings):5d} warnings   {sizes}{more}"
            )
        for title, items in (("errors", self.errors), ("warnings", self.warnings)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += ["  " + line for line in _group(items, self.root, limit)]
        files = sum(s.files for s in self.splits)
        verdict = "ready to train" if not self.errors else "NOT ready to train"
        lines.append(
            f"checked {files} files in {self.seconds:.1f} s: {len(self.errors)} errors, "
            f"{len(self.warnings)} warnings; {verdict}"
        )
        return "\n".join(lines)


def format_failure(
    folder: Path,
    report: SplitReport | None = None,
    limit: int = 50,
    problems: Sequence[Problem] | None = None,
    files: int | None = None,
) -> str:
    """The message of a DatasetError: every error of `report` (or `problems`), full paths."""
    problems = list(report.errors if problems is None else problems)
    files = report.files if files is None else files
    if len(problems) == 1 and problems[0].path == folder:
        return str(problems[0])
    lines = _group(problems, None, limit)
    return (
        f"{folder}: {len(problems)} of {files} files cannot be used "
        "(--skip-bad trains without them):\n  " + "\n  ".join(lines)
    )


def _relative(path: Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def _group(problems: Iterable[Problem], root: Path | None, limit: int) -> list[str]:
    """One line per problem; a message shared by more than 3 files becomes one line with a count."""
    by_message: dict[str, list[Problem]] = {}
    for p in problems:
        by_message.setdefault(p.message, []).append(p)
    lines = []
    for message, items in by_message.items():
        if len(items) > 3:
            names = ", ".join(_relative(p.path, root) for p in items[:3])
            lines.append(one_line(f"{len(items)} files: {message} ({names}, ...)"))
        else:
            lines += [one_line(f"{_relative(p.path, root)}: {message}") for p in items]
    if limit and len(lines) > limit:
        lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
    return lines


def find_splits(root: Path) -> list[tuple[str, Path]]:
    """(name, folder) of train/, val/, test/ under root, or the root itself when it has none."""
    found = [(name, root / name) for name in SPLITS if (root / name).is_dir()]
    return found or [(root.name or str(root), root)]


def check_dataset(
    root: Path | str,
    layout: str | None = None,
    requirements: Requirements | None = None,
    splits: Sequence[str] | None = None,
    full: bool = True,
    duplicates: bool = True,
    workers: int = 0,
    progress: bool = False,
) -> Report:
    """Check every split of a dataset (or only `splits`). `layout` None detects it per split.

    Example:
        >>> report = check_dataset("../shared/data/maps", splits=["val"])  # doctest: +SKIP
        >>> print(report.format()); report.errors  # doctest: +SKIP
    """
    start = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a dataset folder")
    chosen = find_splits(root)
    if splits:
        missing = sorted(set(splits) - {name for name, _ in chosen})
        if missing:
            raise ValueError(f"{root}: no {', '.join(m + '/' for m in missing)} folder")
        chosen = [(name, folder) for name, folder in chosen if name in splits]
    reports = [
        check_split(folder, layout or detect_layout(folder), requirements, full, duplicates, workers, name, progress)
        for name, folder in chosen
    ]
    report = Report(root, reports, full)
    if duplicates:  # the same pair in two splits: validation data seen in training
        what = "pixels" if full else "file bytes"
        seen: dict[str, tuple[str, Sample]] = {}
        for split in reports:
            for digest, group in split.digests.items():
                if digest not in seen:
                    seen[digest] = (split.name, group[0])
                    continue
                where, first = seen[digest]
                split.problems.append(
                    Problem(
                        group[0].files[0],
                        f"same {what} as {_relative(first.files[0], root)} ({where}/{split.name} overlap)",
                        error=False,
                    )
                )
    report.seconds = time.perf_counter() - start
    return report


def human_bytes(n: float) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = min(len(units) - 1, int(math.log(max(n, 1), 1024)))
    return f"{n / 1024**i:.1f} {units[i]}"
