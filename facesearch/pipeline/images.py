"""Reading photos: any common format, EXIF orientation honoured, RGB out, huge photos reduced."""
from __future__ import annotations

import os
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

try:  # HEIC/HEIF (phones); AVIF is Pillow's own
    from pillow_heif import register_heif_opener
except ImportError:  # pragma: no cover - a dependency; without it HEIC files say what to install
    register_heif_opener = None
else:
    register_heif_opener()

from facesearch.errors import FaceSearchError, first_line
from facesearch.settings import DEFAULTS

Image.MAX_IMAGE_PIXELS = None  # we bound memory ourselves: draft(), MAX_DECODED_BYTES, strips
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # rotations by 90 or 270 degrees
#: What each EXIF orientation needs to look as displayed (ImageOps.exif_transpose's table).
_ORIENTATION_METHODS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}
#: Most memory one decoded photo may take (in Pillow's own pixel layout) before it is reduced.
#: JPEGs are decoded at reduced size (draft), so only huge PNG, TIFF, WebP, ... come near it; a
#: 12000 x 9000 RGB PNG takes 432 MB. Anything bigger is refused as too large, not decoded.
MAX_DECODED_BYTES = 450_000_000
#: Pixels converted at a time when a big photo is reduced strip by strip.
_STRIP_PIXELS = 1_000_000
#: Modes whose pixels Pillow keeps in fewer than 4 bytes.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


#: LOAD_TRUNCATED_IMAGES is a Pillow global: one truncated file is re-read at a time.
_TRUNCATED_LOCK = threading.Lock()


class ImageError(FaceSearchError):
    """A file that cannot be read as a photo."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded photo: RGB pixels plus the factor from decoded to original pixel coordinates."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    scale: float        # original size / decoded size
    original_size: tuple[int, int]  # (width, height) after EXIF rotation
    partial: bool = False  # a truncated file, read as far as it goes (the rest is grey)


def load_image(path: str | os.PathLike, max_side: int = DEFAULTS.max_decode_side) -> DecodedImage:
    """Decode a photo to RGB as displayed (EXIF orientation applied); the first frame of an
    animation; reduced to at most `max_side`. Every format Pillow reads, HEIC/HEIF through
    pillow-heif. A truncated file is read as far as it goes (`partial` True). Memory stays
    bounded whatever the file claims; every failure is an ImageError with a one-line reason."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise ImageError(f"{path}: is a folder, not an image")
        if not stat.S_ISREG(mode):  # a FIFO or a device would block or never end
            raise ImageError(f"{path}: not a regular file")
        with warnings.catch_warnings():  # Pillow warns (multi-line) about odd metadata
            warnings.simplefilter("ignore")
            try:
                with Image.open(path) as image:
                    return _decode(image, path, max_side)
            except OSError as error:
                if "truncated" not in str(error) and "broken data stream" not in str(error):
                    raise
            with _TRUNCATED_LOCK:  # read a truncated file as far as it goes
                ImageFile.LOAD_TRUNCATED_IMAGES = True
                try:
                    with Image.open(path) as image:
                        decoded = _decode(image, path, max_side)
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = False
            return DecodedImage(decoded.pixels, decoded.scale, decoded.original_size, partial=True)
    except ImageError:
        raise
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageError(f"{path}: broken symbolic link (to {os.readlink(path)})") from None
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageError(f"{path}: {_unreadable_reason(path)}") from None
    except MemoryError:
        raise ImageError(f"{path}: too large to decode (out of memory)") from None
    except Exception as error:  # noqa: BLE001 - hostile files make decoders raise anything
        raise ImageError(f"{path}: unreadable image ({first_line(error)})") from None


def _decode(image: Image.Image, path: Path, max_side: int) -> DecodedImage:
    image.seek(0)  # the first frame of an animation
    orientation = _orientation(image)
    width, height = image.size
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    if width < 1 or height < 1:
        raise ImageError(f"{path}: empty image")
    if max(width, height) > max_side:
        image.draft("RGB", (max_side, max_side))  # JPEG: decoded at 1/2, 1/4 or 1/8 size
    decoded_bytes = image.size[0] * image.size[1] * _BYTES_PER_PIXEL.get(image.mode, 4)
    if decoded_bytes > MAX_DECODED_BYTES:
        raise ImageError(f"{path}: too large to decode ({width} x {height} pixels, "
                         f"{decoded_bytes / 1e6:.0f} MB decoded; at most {MAX_DECODED_BYTES / 1e6:.0f} MB)")
    image.load()
    rgb = _reduced_rgb(image, max_side)
    if rgb is not image:
        image.close()  # the full-size pixels go now, not when the file is closed
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    image = rgb
    if orientation in _ORIENTATION_METHODS:
        image = image.transpose(_ORIENTATION_METHODS[orientation])
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise ImageError(f"{path}: empty image")
    return DecodedImage(pixels=pixels, scale=width / pixels.shape[1], original_size=(width, height))


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 when absent, unknown or unreadable: bad metadata is not fatal)."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
        return value if isinstance(value, int) and 1 <= value <= 8 else 1
    except Exception:  # noqa: BLE001 - corrupt EXIF blocks raise many kinds of errors
        return 1


def _reduced_rgb(image: Image.Image, max_side: int) -> Image.Image:
    """The loaded `image` as RGB, box-reduced by the whole factor that keeps its longest side at
    least `max_side`, made without a second full-size copy: a big image is converted and reduced
    a strip of rows at a time."""
    width, height = image.size
    factor = max(width, height) // max_side
    if factor < 2:
        rgb = image if image.mode == "RGB" else _to_rgb(image)
    else:
        span = image.getextrema() if image.mode.startswith(("I", "F")) else None
        rgb = Image.new("RGB", (-(-width // factor), -(-height // factor)))
        rows = factor * max(1, _STRIP_PIXELS // (width * factor))
        for top in range(0, height, rows):
            strip = image.crop((0, top, width, min(height, top + rows)))
            strip = strip if strip.mode == "RGB" else _to_rgb(strip, span)
            rgb.paste(strip.reduce(factor), (0, top // factor))
    return rgb


def _to_rgb(image: Image.Image, span: tuple[float, float] | None = None) -> Image.Image:
    """Grayscale, CMYK, palette and alpha images to RGB (alpha composited on white); 16-bit and
    float images are stretched over `span` (their whole range by default)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        low, high = span if span is not None else (array.min(), array.max())
        scaled = (array - low) / max(float(high) - float(low), 1e-9) * 255
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


#: The PNG end chunk: length 0, type IEND, its (constant) CRC.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def truncated_at_end(path: str | os.PathLike) -> bool:
    """Whether a JPEG or PNG file was cut short, so that a decoder can only read it as far as it
    goes: a JPEG whose image data (from its first start-of-scan on) has no end marker, a PNG
    without its IEND chunk. Data appended after a complete image (a phone's motion-photo video,
    a vendor trailer) does not count. Other formats, and files that cannot be read: False."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    if data.startswith(b"\x89PNG"):
        return _PNG_END not in data
    if not data.startswith(b"\xff\xd8"):
        return False
    offset = 2
    while offset + 4 <= len(data):  # marker segments up to the first start of scan (FF DA)
        if data[offset] != 0xFF:
            return False  # not a marker where one must be: a damaged header, not a cut file
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker == 0xDA:
            return data.find(b"\xff\xd9", offset) == -1  # entropy data holds FF D9 only as EOI
        if marker == 0xD9:
            return False
        offset += 2 + int.from_bytes(data[offset + 2:offset + 4], "big")
    return True  # cut before the image data began


def _unreadable_reason(path: Path) -> str:
    """Why Pillow could not identify a file, and what to install when that would help."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(32)
    except OSError:
        head = b""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        if register_heif_opener is None:
            return "a HEIC/HEIF photo, which needs pillow-heif (pip install pillow-heif)"
        return "a HEIC/HEIF file that cannot be decoded"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "an AVIF photo this Pillow cannot decode (pip install -U pillow)"
    return "not an image (or an unsupported format)"


def rgb_array(pixels: np.ndarray) -> np.ndarray:
    """A photo given as an array, checked: (H, W, 3) uint8 RGB as it is; FaceSearchError (one
    line) for another shape or type (a float image, grey levels, RGBA), which the detectors would
    otherwise reject with a multi-line error of their own."""
    if not (isinstance(pixels, np.ndarray) and pixels.ndim == 3 and pixels.shape[2] == 3
            and pixels.dtype == np.uint8):
        raise FaceSearchError(f"an image array must be (height, width, 3) uint8 RGB, not "
                              f"{getattr(pixels, 'dtype', type(pixels).__name__)} of shape {getattr(pixels, 'shape', '?')}")
    return pixels
