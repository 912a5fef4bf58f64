"""Scenes whose faces we place ourselves, built from real photos, for detection tests and
bench/detection_recall.py: collages of aligned CelebA crops, a wide panorama of wild photos,
a large frame of small faces, photos turned sideways. Each returns the image and the truth.
Nothing is written to disk."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facesearch.pipeline.detect import tiling

#: The face's box in a CelebA aligned photo (178 x 218 px): brows to chin, cheek to cheek
#: (CelebA aligns every face to the same eye and mouth positions).
ALIGNED_FACE_BOX = np.array([46.0, 60.0, 132.0, 186.0])
ALIGNED_SIZE = (178, 218)


def read(path: Path) -> np.ndarray:
    """An (H, W, 3) uint8 RGB photo."""
    return np.asarray(Image.open(path).convert("RGB"))


def paste(canvas: np.ndarray, photo: np.ndarray, x: int, y: int, width: int, height: int) -> None:
    """Paste `photo` resized to width x height at (x, y) of `canvas` (in place)."""
    canvas[y:y + height, x:x + width] = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)


def collage(photos: list[Path], grid: int, side: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """grid x grid aligned CelebA crops (the first grid**2 of `photos`), each fitted into its
    cell of a side x side grey canvas -> (image, face boxes (grid**2, 4))."""
    canvas = np.full((side, side, 3), 128, np.uint8)
    cell = side // grid
    height, width = cell, int(cell * ALIGNED_SIZE[0] / ALIGNED_SIZE[1])
    scale = height / ALIGNED_SIZE[1]
    boxes = []
    for index, path in enumerate(photos[:grid * grid]):
        x = (index % grid) * cell + (cell - width) // 2
        y = (index // grid) * cell
        paste(canvas, read(path), x, y, width, height)
        boxes.append(ALIGNED_FACE_BOX * scale + [x, y, x, y])
    return canvas, np.array(boxes)


def small_faces_frame(photos: list[Path], width: int = 6000, height: int = 4000,
                      sides: tuple[int, int] = (20, 48), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A large frame (24 megapixels by default) of a blurred, enlarged first photo as the
    background, with the other aligned crops pasted at random places, spread on a grid, their
    faces `sides` px wide -> (image, face boxes (n, 4))."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(read(photos[0]), (0, 0), 8)
    frame = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    crops = photos[1:]
    columns = int(np.ceil(np.sqrt(len(crops) * width / height)))
    rows = int(np.ceil(len(crops) / columns))
    boxes = []
    for index, path in enumerate(crops):
        face = rng.uniform(*sides)
        scale = face / (ALIGNED_FACE_BOX[2] - ALIGNED_FACE_BOX[0])
        w, h = int(ALIGNED_SIZE[0] * scale), int(ALIGNED_SIZE[1] * scale)
        cell_w, cell_h = width // columns, height // rows
        x = (index % columns) * cell_w + int(rng.uniform(0, cell_w - w))
        y = (index // columns) * cell_h + int(rng.uniform(0, cell_h - h))
        paste(frame, read(path), x, y, w, h)
        boxes.append(ALIGNED_FACE_BOX * (w / ALIGNED_SIZE[0]) + [x, y, x, y])
    return frame, np.array(boxes)


def panorama(photos: list[Path], width: int = 9000, height: int = 1800) -> tuple[np.ndarray, np.ndarray]:
    """The photos scaled up to `height` and set side by side, evenly spaced, on a width x height
    grey canvas -> (image, each photo's region (n, 4)); a detection inside a region is that
    photo's person."""
    scaled = []
    for path in photos:
        photo = read(path)
        w = int(photo.shape[1] * height / photo.shape[0])
        scaled.append(cv2.resize(photo, (w, height), interpolation=cv2.INTER_LINEAR))
    gap = (width - sum(p.shape[1] for p in scaled)) // (len(scaled) + 1)
    if gap < 0:
        raise ValueError("the photos do not fit side by side")
    canvas = np.full((height, width, 3), 128, np.uint8)
    regions, x = [], gap
    for photo in scaled:
        canvas[:, x:x + photo.shape[1]] = photo
        regions.append([x, 0, x + photo.shape[1], height])
        x += photo.shape[1] + gap
    return canvas, np.array(regions, float)


def turned(image: np.ndarray, box: np.ndarray, quarter_turns: int) -> tuple[np.ndarray, np.ndarray, int]:
    """A photo stored turned `quarter_turns` x 90 degrees counter-clockwise (no EXIF tag), a box
    of the upright photo in its pixels, and the rotation (degrees counter-clockwise) that makes
    it upright again."""
    height, width = image.shape[:2]
    stored = tiling.rotated(image, quarter_turns)
    # rotation_matrix(k', ...) of the stored photo maps the upright photo's pixels into it.
    to_stored = tiling.rotation_matrix(-quarter_turns, *stored.shape[:2])
    corners = np.array([[box[0], box[1]], [box[2], box[3]]]) @ to_stored[:, :2].T + to_stored[:, 2]
    return stored, np.concatenate([corners.min(0), corners.max(0)]), (-90 * quarter_turns) % 360


def hits(found: list[np.ndarray], truth: np.ndarray, iou: float = 0.3) -> int:
    """How many truth boxes (n, 4) some found box overlaps with IoU >= `iou` (each found box
    counts for one truth box at most)."""
    if not len(found):
        return 0
    found_boxes = np.array(found, float)
    used = np.zeros(len(found_boxes), bool)
    count = 0
    for box in truth:
        overlaps = np.where(used, 0.0, tiling.box_iou(box, found_boxes))
        if overlaps.max() >= iou:
            used[int(overlaps.argmax())] = True
            count += 1
    return count
