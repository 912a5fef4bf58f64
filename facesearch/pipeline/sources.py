"""Media sources: which files are media, how the index names them, and the items they yield.

The unit of work is a media item: a source yields (key, frame index, timestamp, pixels). A photo
yields one item (frame 0, no timestamp); a video yields its frames sampled Settings.video_fps
times a second (pipeline.video). `find_images` lists the photo and video files under the folders
a user gives, `photo_key` is how the index stores a file's path, `media_source` picks the source
that reads a file, `load_still` decodes a photo or the frame of a video shown at a given time.

    for item in media_source(path, settings):     # a PhotoSource: one MediaItem; a VideoSource: many
        faces = preparer.prepare(item.pixels, item.scale)
"""
from __future__ import annotations

import hashlib
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.pipeline.images import DecodedImage, load_image
from facesearch.pipeline.video import frame_at, probe, sampled_frames
from facesearch.settings import DEFAULTS, Settings

#: File extensions of the usual photo formats (any extension Pillow registers counts too).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".webp", ".bmp", ".tif",
                              ".tiff", ".gif", ".heic", ".heif", ".hif", ".avif"})
#: Video file extensions (videos are also found by their first bytes, see media_kind).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mts", ".m2ts",
                              ".3gp", ".wmv", ".mpg", ".mpeg"})
#: ISO-BMFF brands ("ftyp" box) of still images: HEIC/HEIF and AVIF; other brands are video.
_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                           b"mif1", b"msf1", b"avif", b"avis"})
#: Leading bytes of image formats, so that a photo is found whatever its name says.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00",
                b"MM\x00*", b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51")
#: Leading bytes of video containers (besides ISO-BMFF): Matroska/WebM, MPEG-PS, ASF.
_VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75")


def _pillow_extensions() -> frozenset[str]:
    from PIL import Image

    return frozenset(Image.registered_extensions())


def is_image_path(path: Path) -> bool:
    """Whether a file's extension is that of a photo format (see also `media_kind`)."""
    suffix = path.suffix.lower()
    return suffix in IMAGE_EXTENSIONS or (suffix not in VIDEO_EXTENSIONS and suffix in _pillow_extensions())


def media_kind(path: str | os.PathLike) -> str | None:
    """"image", "video" or None (not media), from the file's first bytes, else its extension:
    a JPEG named .dat is an image, a HEIC or AVIF one too (ISO-BMFF still-image brand), an
    MP4 a video. Files that cannot be opened, and ones that are not regular files, are judged
    by their extension."""
    path = Path(path)
    head = b""
    try:
        if stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO or device (it would block)
            with open(path, "rb") as handle:
                head = handle.read(32)
    except OSError:
        pass
    if head[4:8] == b"ftyp":
        brands = {head[8:12]} | {head[i:i + 4] for i in range(16, len(head) - 3, 4)}
        return "image" if brands & _IMAGE_BRANDS else "video"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head.startswith(_VIDEO_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return "image" if is_image_path(path) else None


def content_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (what decides whether a photo changed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_images(paths: Iterable[str | os.PathLike],
                on_error: Callable[[str, str], None] | None = None,
                on_skipped: Callable[[str, str], None] | None = None) -> list[Path]:
    """Every image and video file under the given files and folders (recursively, following
    symbolic links but never into the same folder twice), sorted, absolute, under the paths the
    user gave (a link is listed under its own path, not its target's; a file reached by several
    paths is listed under each). Media are found by content (`media_kind`), not by extension
    alone. Sub-folders that cannot be read go to `on_error(folder, reason)`; `on_skipped(path,
    reason)` hears of media files that are found but not read (none at present)."""
    found: set[Path] = set()
    seen_folders: set[tuple[int, int]] = set()

    def add(path: Path) -> None:
        found.add(Path(os.path.abspath(path)))

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
                if media_kind(Path(folder, name)) in ("image", "video"):
                    add(Path(folder, name))
    return sorted(found)


def printable(text: str | os.PathLike) -> str:
    """A path (or message) as text that can be printed and stored: bytes of a file name that are
    not UTF-8 (Python keeps them as lone surrogates) become backslash escapes."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def photo_key(path: Path) -> str | None:
    """How the index stores a photo's path: absolute and normalised but with links kept as the
    user named them (hits, `remove` and `--where path ~` see the user's paths), printable; None
    for a symbolic link loop (Path.resolve raises on those before Python 3.13)."""
    try:
        path.resolve()
    except (RuntimeError, OSError):
        return None
    return printable(os.path.abspath(path))


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


class VideoSource(MediaSource):
    """A video: its frames sampled Settings.video_fps times a second (pipeline.video.sampled_frames),
    each decoded at most Settings.max_decode_side, with its time in seconds. Raises
    video.VideoError (one line) when the file cannot be decoded."""

    def __iter__(self) -> Iterator[MediaItem]:
        info = probe(self.path)
        for frame in sampled_frames(self.path, self.settings.video_fps, self.settings.max_decode_side):
            yield MediaItem(key=self.key, frame=frame.index, timestamp=frame.time, pixels=frame.pixels,
                            scale=frame.scale, original_size=(info.width, info.height))


def media_source(path: str | os.PathLike, settings: Settings = DEFAULTS) -> MediaSource:
    """The source that reads a media file: a VideoSource for a video (by content, see
    `media_kind`), else a PhotoSource."""
    return VideoSource(path, settings) if media_kind(path) == "video" else PhotoSource(path, settings)


def load_still(path: str | os.PathLike, time: float | None = None,
               max_side: int = DEFAULTS.max_decode_side) -> DecodedImage:
    """A photo decoded (images.load_image), or with `time` (seconds) the frame of a video shown
    then (video.frame_at), at most `max_side` on its longer side. Raises images.ImageError or
    video.VideoError (both FaceSearchError, one line)."""
    if time is None:
        return load_image(path, max_side)
    return frame_at(path, time, max_side)
