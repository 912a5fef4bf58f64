"""Reading photos: any common format, EXIF orientation honoured, RGB out, huge photos reduced."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import IMAGE_EXTENSIONS, MAX_DECODE_SIDE
from .errors import FaceSearchError

Image.MAX_IMAGE_PIXELS = None  # we bound memory ourselves with draft() and thumbnail()
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # rotations by 90 or 270 degrees


class ImageError(FaceSearchError):
    """A file that cannot be read as a photo."""


@dataclass(frozen=True)
class Photo:
    """A decoded photo: RGB pixels plus the factor from decoded to original pixel coordinates."""

    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    scale: float        # original size / decoded size
    original_size: tuple[int, int]  # (width, height) after EXIF rotation


def load_image(path: str | os.PathLike, max_side: int = MAX_DECODE_SIDE) -> Photo:
    """Decode a photo to RGB; the first frame of an animation; reduced to at most `max_side`."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.seek(0)
            width, height = image.size
            if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
                width, height = height, width
            if max(width, height) > max_side:
                image.draft("RGB", (max_side, max_side))  # JPEG: decode at reduced size
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                image = _to_rgb(image)
            if max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            pixels = np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageError(f"{path}: not an image (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{path}: unreadable image ({_first_line(error)})") from None
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 1:
        raise ImageError(f"{path}: empty image")
    return Photo(pixels=pixels, scale=width / pixels.shape[1], original_size=(width, height))


def _to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, CMYK, palette and alpha images to RGB (alpha composited on white)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-9)
        return Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def is_image_path(path: Path) -> bool:
    """Whether a file's extension is one facesearch indexes."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def content_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (what decides whether a photo changed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
