"""Media sources: which files are media, how the index names them, and the items they yield.

The unit of work is a media item: a source yields (key, frame index, timestamp, pixels). A photo
yields one item (frame 0, no timestamp); a video will yield its frames. `find_images` lists the
photo files under the folders a user gives, `photo_key` is how the index stores a file's path,
`media_source` picks the source that reads a file.

    for item in media_source(path, settings):     # a PhotoSource: one MediaItem
        faces = preparer.prepare(item.pixels, item.scale)
"""
from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.pipeline.images import load_image
from facesearch.settings import DEFAULTS, Settings

#: File extensions facesearch reads as photos.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


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


def find_images(paths: Iterable[str | os.PathLike],
                on_error: Callable[[str, str], None] | None = None) -> list[Path]:
    """Every image file under the given files and folders (recursively, following symbolic links
    but never into the same folder twice), sorted, absolute; a file reached by several paths
    (links) is listed once. Sub-folders that cannot be read go to `on_error(folder, reason)`."""
    found: dict[str, Path] = {}  # real path -> the path found
    seen_folders: set[tuple[int, int]] = set()

    def add(path: Path) -> None:
        real = os.path.realpath(path)  # unlike Path.resolve, never raises (link loops)
        found[real] = min(found.get(real, path), path)

    def unreadable(error: OSError) -> None:
        if on_error:
            on_error(printable(error.filename), f"folder cannot be read ({error.strerror or error})")

    for root in map(Path, paths):
        if not root.is_dir():
            if root.exists() or root.is_symlink():  # a file, odd or not, or a broken link
                add(root.absolute())
                continue
            raise FaceSearchError(f"{printable(root)}: no such file or folder")
        if not os.access(root, os.R_OK | os.X_OK):
            raise FaceSearchError(f"{printable(root)}: folder cannot be read (permission denied)")
        for folder, folders, files in os.walk(root, followlinks=True, onerror=unreadable):
            try:
                info = os.stat(folder)
            except OSError:
                folders[:] = []
                continue
            if (info.st_dev, info.st_ino) in seen_folders:  # a link back up: a loop
                folders[:] = []
                continue
            seen_folders.add((info.st_dev, info.st_ino))
            for name in files:
                if is_image_path(Path(name)):
                    add(Path(folder, name).absolute())
    return sorted(found.values())


def printable(text: str | os.PathLike) -> str:
    """A path (or message) as text that can be printed and stored: bytes of a file name that are
    not UTF-8 (Python keeps them as lone surrogates) become backslash escapes."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def photo_key(path: Path) -> str | None:
    """How the index stores a photo's path: absolute, links resolved, printable; None for a
    symbolic link loop (Path.resolve raises on those before Python 3.13)."""
    try:
        return printable(str(path.resolve()))
    except (RuntimeError, OSError):
        return None


@dataclass(frozen=True)
class MediaItem:
    """One picture to find faces in: a photo, or one frame of a video."""

    key: str                        # the media file's path as stored (printable)
    frame: int                      # frame index within the media, 0 for a photo
    timestamp: float | None         # seconds from the media's start; None for a photo
    pixels: np.ndarray              # (H, W, 3) uint8 RGB, decoded (possibly reduced)
    scale: float                    # original pixels per decoded pixel (>= 1)
    original_size: tuple[int, int]  # (width, height) of the original picture, as displayed


class MediaSource(ABC):
    """The media items of one media file, in order. Iterating may raise FaceSearchError (e.g.
    images.ImageError) for a file that cannot be read; iterate once."""

    def __init__(self, path: str | os.PathLike, settings: Settings = DEFAULTS):
        self.path = Path(path)
        self.settings = settings

    @property
    def key(self) -> str:
        """The file's path as stored: what its items carry as `key`."""
        return printable(self.path)

    @abstractmethod
    def __iter__(self) -> Iterator[MediaItem]:
        """The items, in frame order."""


class PhotoSource(MediaSource):
    """A photo: one item (frame 0, no timestamp), decoded by images.load_image at most
    Settings.max_decode_side on its longest side. Raises images.ImageError when unreadable."""

    def __iter__(self) -> Iterator[MediaItem]:
        photo = load_image(self.path, self.settings.max_decode_side)
        yield MediaItem(key=self.key, frame=0, timestamp=None, pixels=photo.pixels,
                        scale=photo.scale, original_size=photo.original_size)


def media_source(path: str | os.PathLike, settings: Settings = DEFAULTS) -> MediaSource:
    """The source that reads a media file: a PhotoSource (every file is read as a photo)."""
    return PhotoSource(path, settings)
