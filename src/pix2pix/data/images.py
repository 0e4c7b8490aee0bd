"""Reading and writing images, with errors that name the file and the problem.

Two kinds of decoded picture travel through the data pipeline:
- 8-bit images as PIL images in mode L, LA, RGB or RGBA (the fast, common path);
- everything Pillow cannot hold losslessly (16-bit, float, N channels) as numpy arrays
  (H, W, C) of dtype uint8, uint16 or float32.
`to_tensor` scales both by their dtype's range (255, 65535, or 1.0 for floats in [0, 1]).

`.npy` files hold (H, W) or (H, W, C) arrays, channels last like image files: uint8 (0-255),
uint16 (0-65535), bool, or floats in [0, 1]. Other dtypes, or floats outside [0, 1], are refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".npy")
TIFF_EXTENSIONS = (".tif", ".tiff")

Picture = Image.Image | np.ndarray  # PIL (8-bit L, LA, RGB, RGBA) or (H, W, C) array


class ImageError(ValueError):
    """A file that cannot be used as an image, with the path in the message."""


def _pil_open(path: Path | str) -> Image.Image:
    """Image.open with the two failures that are not about a broken file named as such:
    a header claiming more pixels than Pillow agrees to decode (its decompression-bomb guard),
    and a file this process may not read."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as err:
        pixels = next((int(w) for w in str(err).replace("(", " ").split() if w.isdigit()), None)
        claimed = f"claims {pixels:,} pixels" if pixels else "claims too many pixels"
        raise ImageError(
            f"{path}: its header {claimed}, over the {2 * Image.MAX_IMAGE_PIXELS:,}-pixel decoding limit "
            "(a decompression bomb, or an image far too large to use); nothing was decoded"
        ) from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied (this user may not read the file)") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: a folder, not an image file") from None


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder` (recursively), sorted by path so order never depends on the OS.
    Symbolic links that lead nowhere are left out here and reported by `broken_links`."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def broken_links(folder: Path) -> list[tuple[Path, str]]:
    """(path, why) for each symbolic link under `folder` with an image name that leads to no
    file: dangling (its target is missing) or a loop."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_symlink() or not is_image_file(path) or path.is_file():
            continue
        try:
            path.resolve(strict=True)
            found.append((path, f"a symbolic link to {os.readlink(path)}, which is not a file"))
        except RuntimeError:  # Python 3.11 raises RuntimeError for loops
            found.append((path, "a symbolic link that loops back on itself; nothing to read"))
        except OSError as err:
            why = (
                "loops back on itself"
                if err.errno == errno.ELOOP
                else f"points to {os.readlink(path)}, which does not exist"
            )
            found.append((path, f"a dangling symbolic link: it {why}"))
    return found


def one_line(text: str) -> str:
    """`text` with control characters (a newline in a file name, say) escaped, so that one
    report line stays one line."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def open_image(path: Path, mode: str = "RGB") -> Image.Image:
    """Decode `path` fully into a PIL image in `mode` ('RGB' or 'L'), EXIF orientation applied.

    Raises ImageError naming the file when it is not an image, truncated or corrupt. 16-bit,
    float and .npy files are reduced to 8 bits here (see `read_image` for lossless reading).
    """
    if Path(path).suffix.lower() == ".npy" or _needs_array_reader(path):
        try:
            img = to_pil8(read_image(path))
        except ImageError as err:
            raise ImageError(str(err) if str(path) in str(err) else f"{path}: {err}") from None
        if img.mode in ("LA", "RGBA") and mode == "RGB":
            img = _composite_on_black(img)
        return img.convert(mode)
    try:
        with _pil_open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            if img.mode in ("P", "PA", "LA", "RGBA") and mode == "RGB":
                # palette and alpha: composite on black so the result does not depend on
                # whatever colour hides under transparent pixels
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                img = Image.alpha_composite(background, img)
            return img.convert(mode)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only: cheap enough to check a whole dataset up front."""
    if Path(path).suffix.lower() == ".npy" or Path(path).suffix.lower() in TIFF_EXTENSIONS:
        info = image_info(path)
        return info.width, info.height
    try:
        with _pil_open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112, 1)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def mode_for_channels(channels: int) -> str:
    if channels == 1:
        return "L"
    if channels == 3:
        return "RGB"
    raise ValueError(f"{channels}-channel images are not supported by the image reader (use 1 or 3)")


def to_tensor(img: Picture) -> torch.Tensor:
    """PIL image or (H, W, C) array -> float tensor (C, H, W) scaled to [-1, 1], the range of G's
    tanh output. Integers are divided by their dtype's maximum (255 or 65535); floats must be in
    [0, 1]."""
    if isinstance(img, Image.Image):
        if img.mode in PIL_ARRAY_MODES:
            return to_tensor(_array_from_pil(img, "image"))
        array = np.array(img, dtype=np.uint8)  # a writable copy
    else:
        array = img if img.flags.writeable and img.flags.c_contiguous else np.array(img)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array).permute(2, 0, 1)  # may share memory with `img`: never modified
    if array.dtype == np.uint8:
        return tensor.float().div_(127.5).sub_(1.0)
    if array.dtype == np.uint16:
        return tensor.float().div_(32767.5).sub_(1.0)
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        return tensor.float().mul(2.0).sub_(1.0)  # mul, not mul_: float32 .float() is no copy
    raise ImageError(f"cannot scale a {array.dtype} array; use uint8, uint16, bool or floats in [0, 1]")


def compact_tensor(img: Picture) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """(C, H, W) tensor kept in the picture's own integer type, and the function that scales any
    crop of it exactly as to_tensor scales the whole: an RGB image of 100 megapixels stays 300 MB
    instead of 1.2 GB of floats. Other pictures come back as to_tensor's floats."""
    if isinstance(img, Image.Image) and img.mode not in PIL_ARRAY_MODES:
        array = np.array(img, dtype=np.uint8)  # a writable copy
    elif isinstance(img, np.ndarray) and img.dtype in (np.uint8, np.uint16):
        array = img if img.flags.writeable else img.copy()
    else:
        return to_tensor(img), _as_is
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    return tensor, (_scale_uint8 if array.dtype == np.uint8 else _scale_uint16)


def _as_is(x: torch.Tensor) -> torch.Tensor:
    return x


def _scale_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(127.5).sub_(1.0)  # to_tensor's arithmetic, so results are identical


def _scale_uint16(x: torch.Tensor) -> torch.Tensor:
    return x.float().div_(32767.5).sub_(1.0)


# translate's default bound on an input's pixels, checked from the header before decoding:
# generous (a 16000 x 16000 scene), above Pillow's own guard, which pixel_limit lifts to it
DEFAULT_MAX_PIXELS = 256_000_000


def check_pixels(path: Path | str, max_pixels: int) -> ImageInfo:
    """The header of `path` (nothing decoded), refused with ImageError when it claims more than
    `max_pixels` pixels."""
    with pixel_limit(None):  # reading a header is safe whatever it claims: compared below
        info = image_info(path)
    pixels = info.width * info.height
    if pixels > max_pixels:
        raise ImageError(
            f"{path}: its header claims {info.width} x {info.height} = {pixels:,} pixels, over the --max-pixels "
            f"limit of {max_pixels:,}; nothing was decoded (raise --max-pixels if the image is meant)"
        )
    return info


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb guard set to `max_pixels` (None: off) for the block: files
    already checked by check_pixels may be larger than its default of 89 megapixels."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (C, H, W) in [-1, 1] -> 8-bit PIL image (C = 1 gives L, C = 3 gives RGB)."""
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1 or 3, H, W) tensor, got shape {tuple(tensor.shape)}")
    array = tensor.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte()
    array = array.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array, "L" if array.shape[2] == 1 else "RGB")


def split_pair(img: Picture, path: Path | str = "image") -> tuple[Picture, Picture]:
    """Aligned pair -> (left, right) halves. The width must be even: two equal halves."""
    w, h = picture_size(img)
    if w % 2:
        raise ImageError(f"{path}: width {w} is odd; an aligned pair needs two equal halves")
    half = w // 2
    return crop_picture(img, (0, 0, half, h)), crop_picture(img, (half, 0, w, h))


# --- lossless reading: every file as a PIL image (8-bit) or an (H, W, C) array ---

PIL_ARRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # one channel, more than 8 bits
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> channels (gray, RGB, gray+alpha, RGBA)
MODE_CHANNELS = {"1": 1, "L": 1, "LA": 2, "La": 2, "P": 3, "PA": 4, "RGB": 3, "RGBA": 4, "RGBa": 4, "RGBX": 3}


@dataclass(frozen=True)
class ImageInfo:
    """What a file's header says: size after EXIF orientation, channels after the conversions
    `read_image` applies (palette -> RGB or RGBA, CMYK -> RGB, ...), bits per sample."""

    width: int
    height: int
    channels: int
    bits: int


def read_image(path: Path | str) -> Picture:
    """Decode `path` fully and losslessly, EXIF orientation applied (to files Pillow decodes).

    8-bit files come back as PIL images in mode L, LA, RGB or RGBA: a palette becomes RGB (RGBA
    when it has transparency), 1-bit becomes L (0 / 255), CMYK and YCbCr become RGB by Pillow's
    conversion (no colour profile). 16-bit and float images, 16-bit colour PNG, N-channel TIFF
    and .npy come back as (H, W, C) arrays of uint8, uint16 or float32.
    Raises ImageError naming the file when it is not an image, truncated or corrupt.
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return _read_npy(path)
    try:
        with _pil_open(path) as img:
            kind = _array_kind(img)
            if kind == "png16":
                return _read_png16(path)  # Pillow would keep only the high byte of 16-bit colour
            if kind == "tiff":
                return _read_tiff(path)
            img = ImageOps.exif_transpose(img)
            img.load()
            return _normalise_pil(img, path)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        if path.suffix.lower() in TIFF_EXTENSIONS and path.stat().st_size:
            return _read_tiff(path)  # e.g. 5 bands: no Pillow mode holds them
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None


def image_info(path: Path | str) -> ImageInfo:
    """Size, channels and bit depth from the header only (no pixel decoding)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)  # reads the header, maps the rest
        except (OSError, ValueError, EOFError) as err:
            raise ImageError(f"{path}: not a readable .npy array ({err})") from None
        shape = _array_shape(array.shape, array.dtype, path)
        return ImageInfo(shape[1], shape[0], shape[2], _dtype_bits(array.dtype))
    try:
        with _pil_open(path) as img:
            kind = _array_kind(img)
            if kind == "tiff":
                return _tiff_info(path)
            w, h = img.size
            # Pillow's PNG reader decodes the whole image to look for an eXIf chunk after the
            # pixels: only one before them is read here (a header must stay a header)
            has_exif = img.format != "PNG" or "exif" in img.info
            orientation = img.getexif().get(0x0112, 1) if has_exif else 1
            if kind == "png16":
                channels, bits = MODE_CHANNELS[img.mode], 16
            elif img.mode in PIL_ARRAY_MODES:
                channels, bits = 1, 16 if img.mode.startswith("I;16") else 32
            elif img.mode == "P":
                channels, bits = 4 if "transparency" in img.info else 3, 8
            else:
                channels, bits = MODE_CHANNELS.get(img.mode, 3), 8
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        if path.suffix.lower() in TIFF_EXTENSIONS and path.stat().st_size:
            return _tiff_info(path)
        raise ImageError(f"{path}: not an image file PIL can read") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return ImageInfo(w, h, channels, bits)


def _array_kind(img: Image.Image) -> str | None:
    """'png16' or 'tiff' when Pillow cannot decode `img` losslessly, else None."""
    if img.format == "PNG" and img.mode in ("RGB", "RGBA", "LA") and img.tile and ";16" in str(img.tile[0][3]):
        return "png16"
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, 8)
        bits = max(bits) if isinstance(bits, tuple) else bits
        if bits > 8 and img.mode not in PIL_ARRAY_MODES:
            return "tiff"  # 16-bit colour: Pillow would keep 8 bits
    return None


def _needs_array_reader(path: Path | str) -> bool:
    try:
        with _pil_open(path) as img:
            return _array_kind(img) is not None or img.mode in PIL_ARRAY_MODES
    except (OSError, SyntaxError, ValueError):
        return Path(path).suffix.lower() in TIFF_EXTENSIONS and Path(path).is_file()


def _normalise_pil(img: Image.Image, path: Path) -> Picture:
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if mode in PIL_ARRAY_MODES:
        return _array_from_pil(img, path)
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode in ("1", "PA", "La", "RGBa"):
        return img.convert({"1": "L", "PA": "RGBA", "La": "LA", "RGBa": "RGBA"}[mode])
    try:
        return img.convert("RGB")  # CMYK, YCbCr, HSV, RGBX: Pillow's conversion, no colour profile
    except ValueError:
        raise ImageError(f"{path}: image mode {mode} cannot be converted to RGB") from None


def _array_from_pil(img: Image.Image, path: Path | str) -> np.ndarray:
    array = np.asarray(img)
    if img.mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
        raise ImageError(f"{path}: 32-bit integer pixels outside 0-65535; save as 16-bit or as .npy")
    return _check_array(array, path)


def _dtype_bits(dtype: np.dtype) -> int:
    return 8 if dtype in (np.uint8, np.bool_) else 8 * np.dtype(dtype).itemsize


def _array_shape(shape: tuple[int, ...], dtype: np.dtype, path: Path | str) -> tuple[int, int, int]:
    if len(shape) not in (2, 3) or 0 in shape:
        raise ImageError(f"{path}: array of shape {shape}; expected (H, W) or (H, W, C), channels last")
    if not (dtype in (np.uint8, np.uint16, np.bool_) or np.issubdtype(dtype, np.floating)):
        raise ImageError(f"{path}: {dtype} pixels; use uint8, uint16, bool or floats in [0, 1]")
    return (shape[0], shape[1], shape[2] if len(shape) == 3 else 1)


def _check_array(array: np.ndarray, path: Path | str) -> np.ndarray:
    """(H, W) or (H, W, C) of an accepted dtype -> (H, W, C) uint8, uint16 or float32."""
    h, w, c = _array_shape(array.shape, array.dtype, path)
    array = array.reshape(h, w, c)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        low, high = float(np.min(array)), float(np.max(array))
        if not (low >= 0.0 and high <= 1.0):  # also catches NaN
            raise ImageError(f"{path}: float pixels must lie in [0, 1], found [{low:g}, {high:g}]")
        return array
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError) as err:
        raise ImageError(f"{path}: not a readable .npy array ({err})") from None
    return _check_array(array, path)


def _tifffile(path: Path):  # noqa: ANN202 - the module, imported on demand
    try:
        import tifffile
    except ImportError:
        raise ImageError(
            f"{path}: reading 16-bit colour or N-channel TIFF needs the tifffile package "
            '(pip install "pix2pix[tiff]"), or save the image as .npy'
        ) from None
    return tifffile


def _tiff_series(path: Path) -> tuple[tuple[int, ...], str, np.dtype]:
    tifffile = _tifffile(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return tuple(series.shape), series.axes, series.dtype
    except Exception as err:  # noqa: BLE001 - tifffile raises many types for bad files
        raise ImageError(f"{path}: not a readable TIFF ({err})") from None


def _tiff_info(path: Path) -> ImageInfo:
    shape, axes, dtype = _tiff_series(path)
    if len(shape) == 3 and axes[-1] not in "SC":
        shape = (*shape[1:], shape[0])  # planar (C, H, W) -> channels last
    h, w, c = _array_shape(shape, dtype, path)
    return ImageInfo(w, h, c, _dtype_bits(dtype))


def _read_tiff(path: Path) -> np.ndarray:
    tifffile = _tifffile(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array, axes = series.asarray(), series.axes
    except Exception as err:  # noqa: BLE001
        raise ImageError(f"{path}: corrupt or truncated TIFF ({err})") from None
    if array.ndim == 3 and axes[-1] not in "SC":
        array = np.moveaxis(array, 0, -1)  # planar or one band per page: (C, H, W) -> (H, W, C)
    return _check_array(array, path)


def _read_png16(path: Path) -> np.ndarray:
    """16-bit colour PNG (RGB, RGBA, gray + alpha) -> (H, W, C) uint16; Pillow keeps only 8 bits.
    OpenCV's libpng decodes RGB and RGBA when installed (the `edges` extra); otherwise, and for
    gray + alpha, the pure decoder below, bit-exact with it and far slower on rows filtered with
    Average or Paeth (a Python loop per byte)."""
    data = Path(path).read_bytes()
    fast = _read_png16_opencv(data)
    if fast is not None:
        return fast
    _note_slow_png16(path)
    return _decode_png16(data, path)


def _read_png16_opencv(data: bytes) -> np.ndarray | None:
    """libpng's decoding of a complete 16-bit RGB / RGBA PNG, in RGB(A) order; None where
    OpenCV is missing or the file is anything else (the pure decoder then decides)."""
    try:
        import cv2
    except ImportError:
        return None
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or data[-8:-4] != b"IEND":
        return None  # not a PNG, or cut short: the pure decoder names the problem
    colour = data[25]  # IHDR: width, height, bit depth, colour type
    if colour not in (2, 6):
        return None  # gray + alpha: OpenCV would expand it to BGRA
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    channels = PNG_CHANNELS[colour]
    if image is None or image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != channels:
        return None
    return np.ascontiguousarray(image[:, :, [2, 1, 0, 3][:channels]])  # BGR(A) -> RGB(A)


_slow_png16_noted = False


def _note_slow_png16(path: Path) -> None:
    global _slow_png16_noted
    if not _slow_png16_noted:
        _slow_png16_noted = True
        warnings.warn(
            f"{path}: 16-bit colour PNG decoded in pure Python, seconds per megapixel; install OpenCV "
            '(pip install "pix2pix[edges]") to decode it natively',
            stacklevel=3,
        )


def _decode_png16(data: bytes, path: Path) -> np.ndarray:
    if data[:8] != PNG_SIGNATURE:
        raise ImageError(f"{path}: not a PNG file")
    pos, idat, header, ended = 8, [], None, False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) < length:
            break
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
        pos += 12 + length
    if header is None or not ended:
        raise ImageError(f"{path}: corrupt or truncated image (PNG ends before its IEND chunk)")
    w, h, bits, colour, _, _, interlace = header
    if bits != 16 or colour not in PNG_CHANNELS or interlace:
        raise ImageError(f"{path}: unsupported PNG ({bits}-bit, colour type {colour}, interlace {interlace})")
    channels = PNG_CHANNELS[colour]
    bpp, stride = 2 * channels, 2 * channels * w
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as err:
        raise ImageError(f"{path}: corrupt or truncated image ({err})") from None
    if len(raw) < h * (stride + 1):
        raise ImageError(f"{path}: corrupt or truncated image ({len(raw)} of {h * (stride + 1)} bytes)")
    rows = np.frombuffer(raw, np.uint8, count=h * (stride + 1)).reshape(h, stride + 1)
    out = np.empty((h, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(h):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:
            current = line
        elif kind == 1:  # Sub: running sum of each byte lane, mod 256
            current = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:  # Up
            current = line + prior
        elif kind in (3, 4):  # Average, Paeth: sequential along the row
            current = _unfilter_sequential(kind, line, prior, bpp)
        else:
            raise ImageError(f"{path}: corrupt PNG (row filter {kind})")
        out[y] = current
        prior = out[y]
    return out.view(">u2").reshape(h, w, channels).astype(np.uint16)


def _unfilter_sequential(kind: int, line: np.ndarray, prior: np.ndarray, bpp: int) -> np.ndarray:
    row, up = bytearray(line.tobytes()), prior.tobytes()
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        if kind == 3:
            row[i] = (row[i] + ((left + up[i]) >> 1)) & 0xFF
            continue
        upper_left = up[i - bpp] if i >= bpp else 0
        p = left + up[i] - upper_left
        pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - upper_left)
        predictor = left if pa <= pb and pa <= pc else up[i] if pb <= pc else upper_left
        row[i] = (row[i] + predictor) & 0xFF
    return np.frombuffer(bytes(row), np.uint8)


def _write_png16(array: np.ndarray, path: Path, filter_type: int = 1) -> None:
    """(H, W, C) uint16 with C in 1-4 -> a 16-bit PNG (Pillow cannot write 16-bit colour).
    Every row uses `filter_type` (0 none, 1 Sub, 2 Up, 3 Average, 4 Paeth)."""
    h, w, c = array.shape
    x = np.ascontiguousarray(array.astype(">u2")).view(np.uint8).reshape(h, w * c * 2).astype(np.int32)
    bpp = 2 * c
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    up = np.zeros_like(x)
    up[1:] = x[:-1]
    upper_left = np.zeros_like(x)
    upper_left[1:, bpp:] = x[:-1, :-bpp]
    if filter_type == 0:
        predictor = np.zeros_like(x)
    elif filter_type == 1:
        predictor = left
    elif filter_type == 2:
        predictor = up
    elif filter_type == 3:
        predictor = (left + up) >> 1
    else:
        p = left + up - upper_left
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upper_left)
        predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upper_left))
    filtered = ((x - predictor) & 0xFF).astype(np.uint8)
    rows = np.concatenate([np.full((h, 1), filter_type, np.uint8), filtered], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    Path(path).write_bytes(
        PNG_SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


# --- pictures: the same few operations on PIL images and (H, W, C) arrays ---


def picture_size(img: Picture) -> tuple[int, int]:
    """(width, height)."""
    return img.size if isinstance(img, Image.Image) else (img.shape[1], img.shape[0])


def picture_channels(img: Picture) -> int:
    return len(img.getbands()) if isinstance(img, Image.Image) else img.shape[2]


def is_grayscale(img: Picture) -> bool:
    """True for one-channel (+ alpha) pictures and for colour ones whose channels are all equal."""
    if picture_channels(img) in (1, 2):
        return True
    array = np.asarray(img) if isinstance(img, Image.Image) else img
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        return False
    return bool(np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 1], array[..., 2]))


def crop_picture(img: Picture, box: tuple[int, int, int, int]) -> Picture:
    left, top, right, bottom = box
    return img.crop(box) if isinstance(img, Image.Image) else img[top:bottom, left:right]


def flip_picture(img: Picture) -> Picture:
    """Mirror left-right."""
    return img.transpose(Image.FLIP_LEFT_RIGHT) if isinstance(img, Image.Image) else img[:, ::-1]


def resize_picture(img: Picture, size: tuple[int, int]) -> Picture:
    """Bicubic resize to `size` (width, height); arrays keep their dtype (floats stay in [0, 1])."""
    if isinstance(img, Image.Image):
        return img.resize(size, Image.BICUBIC)
    if picture_size(img) == size:
        return img
    if img.dtype == np.uint8 and img.shape[2] in (1, 3, 4):
        return np.asarray(to_pil8(img).resize(size, Image.BICUBIC)).reshape(size[1], size[0], img.shape[2])
    channels = [
        np.asarray(Image.fromarray(img[:, :, c].astype(np.float32), "F").resize(size, Image.BICUBIC))
        for c in range(img.shape[2])
    ]
    out = np.stack(channels, axis=2)
    if img.dtype == np.float32:
        return np.clip(out, 0.0, 1.0)
    return np.clip(np.rint(out), 0, np.iinfo(img.dtype).max).astype(img.dtype)


def to_pil8(img: Picture) -> Image.Image:
    """Any picture -> an 8-bit PIL image (L, LA, RGB or RGBA), scaling 16-bit and float values."""
    if isinstance(img, Image.Image):
        return img
    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
    if img.shape[2] not in modes:
        raise ImageError(f"a {img.shape[2]}-channel array has no 8-bit image mode (1 to 4 channels)")
    return Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else np.ascontiguousarray(img), modes[img.shape[2]])


def _composite_on_black(img: Image.Image) -> Image.Image:
    """LA / RGBA -> L / RGB on a black background, so the result does not depend on whatever
    colour hides under transparent pixels."""
    colour = img.mode == "RGBA"
    rgba = img.convert("RGBA")
    out = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), rgba).convert("RGB")
    return out if colour else out.convert("L")


def _luma(array: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W, 1) with ITU-R 601 weights, as Pillow's RGB -> L."""
    y = array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if array.dtype == np.float32:
        return y[..., None]
    return np.clip(np.rint(y), 0, np.iinfo(array.dtype).max).astype(array.dtype)[..., None]


def convert_channels(img: Picture, channels: int, path: Path | str = "image") -> Picture:
    """`img` with `channels` channels, predictably: gray -> colour repeats the channel, colour ->
    gray takes ITU-R 601 luma, an alpha channel (LA, RGBA; 2 or 4 channels of an array) is
    composited on black unless the model reads it (2 or 4 channels; an opaque one is added to
    1 or 3). N-channel arrays must already have `channels` channels."""
    if isinstance(img, Image.Image):
        have = len(img.getbands())
        if channels in (2, 4) and have in (channels, channels - 1):  # keep alpha, or add an opaque one
            return img if have == channels else img.convert("LA" if channels == 2 else "RGBA")
        if channels not in (1, 3):
            raise ImageError(f"{path}: has {have} channels; a {channels}-channel model cannot read it")
        if img.mode in ("LA", "RGBA"):
            img = _composite_on_black(img)
        mode = "L" if channels == 1 else "RGB"
        return img if img.mode == mode else img.convert(mode)
    have = img.shape[2]
    if have == channels:
        return img
    if have in (2, 4) and channels in (1, 3):
        alpha = img[..., -1:].astype(np.float32) / (1.0 if img.dtype == np.float32 else np.iinfo(img.dtype).max)
        colour = img[..., :-1].astype(np.float32) * alpha
        img = colour if img.dtype == np.float32 else np.rint(colour).astype(img.dtype)
        have -= 1
        if have == channels:
            return img
    if have == 1 and channels == 3:
        return np.repeat(img, 3, axis=2)
    if have == 3 and channels == 1:
        return _luma(img)
    if channels in (2, 4) and have == channels - 1:
        opaque = np.full((*img.shape[:2], 1), 1.0 if img.dtype == np.float32 else np.iinfo(img.dtype).max, img.dtype)
        return np.concatenate([img, opaque], axis=2)
    raise ImageError(f"{path}: has {have} channels; a {channels}-channel model cannot read it")


def to_array(tensor: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """Float tensor (C, H, W) in [-1, 1] -> (H, W, C) uint8 (bit_depth 8) or uint16 (16)."""
    if tensor.ndim != 3:
        raise ValueError(f"expected a (C, H, W) tensor, got shape {tuple(tensor.shape)}")
    x = tensor.detach().float().cpu().clamp(-1, 1).add(1)
    if bit_depth == 8:
        array = x.mul(127.5).round().byte().numpy()
    elif bit_depth == 16:
        array = x.mul(32767.5).round().int().numpy().astype(np.uint16)
    else:
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    return array.transpose(1, 2, 0)


def write_picture(img: Picture, path: Path | str, quality: int = 95) -> None:
    """Write a picture without losing anything the format can hold: PNG (8 or 16 bit, 1-4
    channels), TIFF (any channels; beyond Pillow's modes via tifffile), .npy (anything), JPEG
    (8-bit gray or RGB, lossy at `quality`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        np.save(path, np.asarray(img) if isinstance(img, Image.Image) else img)
        return
    if isinstance(img, Image.Image):
        if suffix in (".jpg", ".jpeg"):
            if img.mode not in ("L", "RGB"):
                img = convert_channels(img, 3 if img.mode == "RGBA" else 1, path)
            img.save(path, quality=quality)
        else:
            img.save(path)
        return
    h, w, c = img.shape
    if img.dtype == np.uint8 and c <= 4 and suffix != ".tif" and suffix != ".tiff":
        write_picture(to_pil8(img), path, quality)
    elif suffix == ".png" and img.dtype == np.uint16 and c <= 4:
        if c == 1:
            Image.fromarray(np.ascontiguousarray(img[:, :, 0])).save(path)  # mode I;16
        else:
            _write_png16(img, path)
    elif suffix in TIFF_EXTENSIONS:
        if img.dtype == np.uint8 and c in (1, 3, 4):
            to_pil8(img).save(path)
        else:
            _tifffile(path).imwrite(path, img if c > 1 else img[:, :, 0], photometric="rgb" if c == 3 else "minisblack")
    else:
        raise ImageError(
            f"{path}: {suffix or 'this format'} cannot hold {c}-channel {img.dtype} pixels; use .png (up to 4 "
            "channels, 16 bit), .tif or .npy"
        )
