"""Searching a photo of any size with a detector that sees a fixed window, shared by backends.

A detector with a fixed input (SCRFD: 640 px) sees a 24-megapixel frame shrunk tenfold, so a
20 px face becomes 2 px. `search_plan` lays out what to run instead: the whole photo fitted
into one window, plus, when the smallest face asked for would be too small there, a pyramid of
scales (each half the previous) cut into overlapping windows. A quarter of a window overlaps
its neighbour, so a face up to a quarter window wide lies whole inside some window at its
level, and a bigger one is at most half a window wide one level down; boxes touching a
window's inner edge (cut by the tiling, not by the photo), and boxes wider than the overlap,
are therefore dropped (`Window.owns`), and what remains is merged across windows and levels with `nms`.

Rotations: `rotated(image, k)` turns a photo by k quarter turns counter-clockwise and
`rotation_matrix` maps points found in the turned photo back to the photo's own pixels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: Share of a window that overlaps its neighbour.
OVERLAP = 0.25


@dataclass(frozen=True)
class Window:
    """One detector run: the part of the photo at `scale` (detector pixels per photo pixel)
    that lies in x0..x1, y0..y1 of the photo scaled by `scale`."""

    scale: float
    x0: int
    y0: int
    x1: int
    y1: int
    #: Whether each edge (left, top, right, bottom) lies inside the scaled photo (a tile edge).
    inner: tuple[bool, bool, bool, bool]
    #: The side (px) of the tiles of this window's level.
    size: int = 0

    def owns(self, box: np.ndarray, margin: float = 2.0) -> bool:
        """Whether a box (x0, y0, x1, y1 in this window's pixels) is this window's to report:
        a tile reports only boxes that touch none of its inner edges (the tiling may have cut
        that face; a neighbour sees it whole) and are at most an overlap wide (a bigger face is
        seen whole one level down, where a part of it found here would be a duplicate)."""
        width, height = self.x1 - self.x0, self.y1 - self.y0
        if not any(self.inner):
            return True
        if max(box[2] - box[0], box[3] - box[1]) > OVERLAP * self.size:
            return False
        return not ((self.inner[0] and box[0] <= margin) or (self.inner[1] and box[1] <= margin)
                    or (self.inner[2] and box[2] >= width - margin)
                    or (self.inner[3] and box[3] >= height - margin))


def search_plan(height: int, width: int, size: int, min_face: float, detectable: float) -> list[Window]:
    """Windows covering an image of `height` x `width` px so that a detector with `size`-px
    windows, which finds faces of `detectable` px and more, finds faces of `min_face` px and
    more: the whole image at the scale that fits it into one window (first; never enlarged), then, finest first, tiled levels
    down from the scale at which `min_face` becomes `detectable`. Raises ValueError for sizes
    below 1."""
    if min(height, width, size) < 1 or min_face <= 0 or detectable <= 0:
        raise ValueError("image, window and face sizes must be positive")
    fit = min(1.0, size / max(height, width))
    windows = [Window(fit, 0, 0, round(width * fit), round(height * fit), (False,) * 4)]
    scale = detectable / min_face
    while scale > fit * 1.1:
        windows.extend(_tiles(scale, round(height * scale), round(width * scale), size))
        scale /= 2
    return windows


def _tiles(scale: float, height: int, width: int, size: int) -> list[Window]:
    """Overlapping `size` windows over a `height` x `width` scaled image."""
    def starts(length: int) -> list[int]:
        if length <= size:
            return [0]
        count = math.ceil((length - size) / (size * (1 - OVERLAP))) + 1
        return [round(v) for v in np.linspace(0, length - size, count)]
    return [Window(scale, x, y, min(x + size, width), min(y + size, height),
                   (x > 0, y > 0, x + size < width, y + size < height), size)
            for y in starts(height) for x in starts(width)]


def resized(image: np.ndarray, scale: float) -> np.ndarray:
    """An image scaled by `scale` (area averaging when shrinking, bilinear when enlarging)."""
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def padded(image: np.ndarray, multiple: int) -> np.ndarray:
    """An image padded with black at the right and bottom to sides that are multiples of
    `multiple` (at least one multiple)."""
    height, width = image.shape[:2]
    pad_h = max(multiple, math.ceil(height / multiple) * multiple) - height
    pad_w = max(multiple, math.ceil(width / multiple) * multiple) - width
    if not pad_h and not pad_w:
        return image
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))


def _intersections(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection areas of one (4,) box with each of (n, 4) boxes -> (n,)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    return width * height


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box with each of (n, 4) boxes (x0, y0, x1, y1) -> (n,)."""
    inter = _intersections(box, boxes)
    union = (box[2] - box[0]) * (box[3] - box[1]) + _areas(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.4,
        contained: float | None = None) -> np.ndarray:
    """Indices of the (n, 4) boxes kept by greedy non-maximum suppression, best score first: a
    box overlapping (IoU > `iou`) a better kept one is dropped; with `contained`, so is a box
    whose intersection with a better kept one covers more than that share of the smaller of
    the two (a box inside another)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        best, order = order[0], order[1:]
        keep.append(int(best))
        if order.size:
            rest = boxes[order]
            drop = box_iou(boxes[best], rest) > iou
            if contained is not None:
                smaller = np.minimum(_areas(boxes[best][None])[0], _areas(rest))
                inter = _intersections(boxes[best], rest)
                drop |= (smaller > 0) & (inter > contained * smaller)
            order = order[~drop]
    return np.asarray(keep, dtype=np.int64)


def rotated(image: np.ndarray, quarter_turns: int) -> np.ndarray:
    """The image turned `quarter_turns` x 90 degrees counter-clockwise (contiguous)."""
    return np.ascontiguousarray(np.rot90(image, quarter_turns % 4))


def rotation_matrix(quarter_turns: int, height: int, width: int) -> np.ndarray:
    """The 2x3 affine that maps pixel coordinates of `rotated(image, quarter_turns)` back to
    those of the (height x width) image."""
    return {0: np.array([[1.0, 0, 0], [0, 1, 0]]),
            1: np.array([[0.0, -1, width], [1, 0, 0]]),
            2: np.array([[-1.0, 0, width], [0, -1, height]]),
            3: np.array([[0.0, 1, 0], [-1, 0, height]])}[quarter_turns % 4]
