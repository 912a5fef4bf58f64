"""Faces followed across a video's sampled frames: one track per person while visible.

The tracker is norfair's (a Kalman filter per track over the face box's two corners, Hungarian
matching) with our distance between a detection and a track: box overlap (IoU with the track's
predicted box) and face similarity (cosine of ArcFace identity vectors, models/arcface.py), so
that a face that moved a lot between two sampled frames still joins its track when it is clearly
the same person, and a different person stepping into the same place does not. Afterwards, two
tracks that follow one another within STITCH_GAP seconds, near where the first ended (MAX_JUMP),
and whose faces are the same person (mean identity cosine >= STITCH_COSINE) are joined (the face
turned away, or the detector missed it, for a moment). The thresholds were set by looking at the
distances on the shared clips (../shared/data/video): see each constant.

    tracks = VideoTracks(fps=2.0)
    for frame in frames:                                  # in time order
        tracks.add(frame.time, prepared_faces, identities, frame.pixels, frame.scale)
    for track in tracks.finish():                         # Track: id, start, end, best frames
        track.best                                        # up to BEST_FRAMES Observations, best first

Each track is described from its best frames: ranked by `frame_quality` (the quality record of
detect/quality.py, i.e. size, detector score, border cut and sharpness, times how frontal the face
is from its 5 landmarks).
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facesearch.pipeline.detect.quality import face_quality
from facesearch.pipeline.prepare import PreparedFace
from facesearch.spec import unit_mean

if TYPE_CHECKING:
    from norfair import Detection

#: Frames a track is described from (its best ones by frame_quality).
BEST_FRAMES = 3
#: Seconds a track may go unseen before it ends (norfair's hit counter, in sampled frames).
MAX_GAP = 1.0
#: Identity cosine from which a detection may join a track without box overlap, within MAX_JUMP
#: face sides (well above the same-person operating point of 0.186, models/arcface.py's
#: calibration).
STRONG_COSINE = 0.35
#: Identity cosine below which box overlap must carry a match against a penalty of
#: WEAK_PENALTY per unit of shortfall: a profile face can score low against a frontal one of the
#: same person (but its box overlaps a lot), a different person in the same place (a shot cut)
#: too (on short_hamilton_clip.mp4 a cut to the audience put a face at IoU 0.34, cosine 0.12).
#: WEAK_COSINE is about the same-person operating point (0.186). The penalty was 2 until scrfd
#: found the blurred audience in the shot before the speaker's: its face 0.5 s before the cut,
#: in his place (IoU 0.5, cosine 0.085), joined his track; at 4 no face under cosine 0.2 joins
#: one whose box it overlaps less than 0.75 (0.25 + 4 x 0.115 > MAX_DISTANCE).
WEAK_COSINE = 0.2
WEAK_PENALTY = 4.0
#: A match on STRONG_COSINE without box overlap is allowed only within this many face sides
#: (centre to centre) of the track's predicted box: ArcFace vectors of small, blurred faces of
#: different people can score that high (crowd_walking.mp4: 0.72 at 8.6 face sides).
MAX_JUMP = 3.0
#: Largest distance (0..1, see `_distance`) at which a detection joins a track.
MAX_DISTANCE = 0.7
#: Tracks following one another within this many seconds are joined when their faces are the
#: same person by STITCH_COSINE (mean identity vectors).
STITCH_GAP = 2.0
STITCH_COSINE = 0.4


def frontality(landmarks: np.ndarray) -> float:
    """How frontal a face is, 0..1, from its 5 landmarks ((5, 2): eyes, nose tip, mouth corners):
    1 when the nose tip is midway between the eyes, 0 when it is half the eye distance (or more)
    to one side (a profile)."""
    eyes = landmarks[:2]
    distance = float(np.linalg.norm(eyes[1] - eyes[0]))
    if distance <= 1e-6:
        return 0.0
    offset = abs(float(landmarks[2, 0] - eyes[:, 0].mean())) / distance
    return float(np.clip(1.0 - 2.0 * offset, 0.0, 1.0))


def frame_quality(pixels: np.ndarray, scale: float, face: PreparedFace) -> float:
    """How good a frame shows a face, 0..1: detect.quality.face_quality (size, score, border cut,
    sharpness; measured on the decoded frame `pixels`, whose pixels are 1/`scale` of the
    original's) times 0.1 + 0.9 x frontality."""
    quality = face_quality(pixels, face.bbox / scale, face.score, face.landmarks / scale).value
    return quality * (0.1 + 0.9 * frontality(face.landmarks))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _jump(before: np.ndarray, after: np.ndarray) -> float:
    """How far a face moved between two (x0, y0, x1, y1) boxes: centre distance in sides of
    the later box (the square root of its area)."""
    side = max(1.0, float(np.sqrt(max(0.0, (after[2] - after[0]) * (after[3] - after[1])))))
    return float(np.linalg.norm((after[:2] + after[2:]) / 2 - (before[:2] + before[2:]) / 2)) / side


def _distance(detection: Detection, tracked) -> float:
    """0 (same face for sure) .. 1+ (not it): 1 - max(IoU, cosine) when the identity cosine with
    the track's last face is at least STRONG_COSINE and the box is within MAX_JUMP face sides of
    the track's, 1 - IoU when it is at least WEAK_COSINE, else 1 - IoU plus WEAK_PENALTY x the
    cosine's shortfall from WEAK_COSINE, and no match at all when the track was not seen in the
    previous sampled frame (at 4 frames a second, short_hamilton_clip.mp4's speaker track,
    unseen for 1.2 s after a cut, otherwise took an audience face in the same place: IoU 0.75,
    cosine 0.12). Detections carry (sampled frame number, index) as `data`."""
    box, predicted = detection.points.reshape(-1), tracked.estimate.reshape(-1)
    iou = box_iou(box, predicted)
    cosine = float(np.dot(detection.embedding, tracked.last_detection.embedding))
    if cosine >= STRONG_COSINE and _jump(predicted, box) <= MAX_JUMP:
        return 1.0 - max(iou, cosine)
    if cosine >= WEAK_COSINE:
        return 1.0 - iou
    if detection.data[0] - tracked.last_detection.data[0] > 1:
        return float("inf")  # an unlike face never takes over a track that missed a frame
    return 1.0 - iou + WEAK_PENALTY * (WEAK_COSINE - cosine)


def _kept_face(face: PreparedFace) -> PreparedFace:
    """What a track keeps of a frame's face until the video ends (~0.1 MB instead of ~0.4 MB):
    its one-hot region masks as bool (`Observation.prepared` gives float32 back), without the
    ArcFace crop and point sets (its identity vector is computed)."""
    return dataclasses.replace(face, masks=face.masks.astype(bool), identity_crop=None, points={})


@dataclass(order=True)
class Observation:
    """A face in one sampled frame of its track. Ordered by `quality` (for keeping the best)."""

    quality: float                                   # frame_quality, 0..1
    order: int                                       # tie-break: earlier frames first
    time: float = field(compare=False)               # seconds
    face: PreparedFace = field(compare=False, repr=False)    # masks bool: see _kept_face
    identity: np.ndarray = field(compare=False, repr=False)  # (512,) unit norm

    @property
    def prepared(self) -> PreparedFace:
        """The face as the descriptor takes it (masks float32 again)."""
        return dataclasses.replace(self.face, masks=self.face.masks.astype(np.float32))


@dataclass
class Track:
    """One person followed across frames: when, how often, and its best frames."""

    track_id: int
    start: float
    end: float
    frames: int = 0
    first_box: np.ndarray | None = field(default=None, repr=False)  # (4,) at `start`
    last_box: np.ndarray | None = field(default=None, repr=False)   # (4,) at `end`
    identity_sum: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    _kept: list[Observation] = field(default_factory=list, repr=False)  # min-heap by quality

    def add(self, observation: Observation) -> None:
        """Count a frame of this track; keep it if it is among its BEST_FRAMES best."""
        if self.first_box is None or observation.time <= self.start:
            self.first_box = observation.face.bbox
        if self.last_box is None or observation.time >= self.end:
            self.last_box = observation.face.bbox
        self.start, self.end = min(self.start, observation.time), max(self.end, observation.time)
        self.frames += 1
        vector = observation.identity.astype(np.float32)
        self.identity_sum = vector.copy() if self.identity_sum.size == 0 else self.identity_sum + vector
        if len(self._kept) < BEST_FRAMES:
            heapq.heappush(self._kept, observation)
        else:
            heapq.heappushpop(self._kept, observation)

    def absorb(self, other: Track) -> None:
        """Take another track's frames (a stitch)."""
        if other.end >= self.end:
            self.last_box = other.last_box
        if other.start <= self.start:
            self.first_box = other.first_box
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.frames += other.frames
        self.identity_sum = self.identity_sum + other.identity_sum
        for observation in other._kept:
            heapq.heappush(self._kept, observation)
            if len(self._kept) > BEST_FRAMES:
                heapq.heappop(self._kept)

    @property
    def identity(self) -> np.ndarray:
        """(512,) unit-norm mean identity of all its frames."""
        return unit_mean(self.identity_sum[None])

    @property
    def best(self) -> list[Observation]:
        """Its best frames (at most BEST_FRAMES), best first."""
        return sorted(self._kept, reverse=True)


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class VideoTracks:
    """Tracks of the faces of one video, frame by frame (see the module's docstring)."""

    def __init__(self, fps: float):
        """`fps`: sampled frames per second (Settings.video_fps), which sets how many frames a
        track may miss (MAX_GAP seconds) before it ends."""
        # norfair is imported here, not with this module: its package imports filterpy and
        # matplotlib (~1.5-3 s), which no photo or text query should pay
        from norfair import Detection, Tracker

        self._detection = Detection
        hold = max(1, int(round(MAX_GAP * fps)))
        with _quiet_root_logger():  # norfair logs a tip about vectorised distances on the root logger
            self._tracker = Tracker(distance_function=_distance, distance_threshold=MAX_DISTANCE,
                                    hit_counter_max=hold, initialization_delay=0,
                                    pointwise_hit_counter_max=max(2, hold))
        self._tracks: dict[int, Track] = {}
        self._order = itertools.count()
        self._frames = itertools.count()  # sampled frame numbers

    def add(self, time: float, faces: list[PreparedFace], identities: np.ndarray,
            pixels: np.ndarray, scale: float) -> list[int]:
        """One sampled frame at `time` seconds: its prepared faces (boxes in original pixels),
        their identity vectors (n, 512), the decoded frame `pixels` and its `scale` (original
        per decoded pixel). Returns the tracker's id for each face."""
        frame = next(self._frames)
        detections = [self._detection(points=np.asarray(face.bbox, np.float64).reshape(2, 2),
                                embedding=np.asarray(identity, np.float32), data=(frame, i))
                      for i, (face, identity) in enumerate(zip(faces, identities))]
        self._tracker.update(detections)
        found = {id(detection): detection for detection in detections}
        ids = [0] * len(faces)
        for tracked in self._tracker.tracked_objects:
            detection = tracked.last_detection
            if id(detection) in found and tracked.id is not None:
                ids[detection.data[1]] = tracked.id
        for i, (face, identity) in enumerate(zip(faces, identities)):
            track = self._tracks.setdefault(ids[i], Track(ids[i], time, time))
            track.add(Observation(quality=frame_quality(pixels, scale, face), order=-next(self._order),
                                  time=time, face=_kept_face(face), identity=identity))
        return ids

    def finish(self) -> list[Track]:
        """Every track, stitched (STITCH_GAP, STITCH_COSINE) and numbered 1, 2, ... by start."""
        tracks = sorted(self._tracks.values(), key=lambda track: (track.start, track.track_id))
        joined: list[Track] = []
        for track in tracks:
            for earlier in reversed(joined):
                if (earlier.end < track.start and track.start - earlier.end <= STITCH_GAP
                        and float(np.dot(earlier.identity, track.identity)) >= STITCH_COSINE
                        and _jump(earlier.last_box, track.first_box) <= MAX_JUMP):
                    earlier.absorb(track)
                    break
            else:
                joined.append(track)
        for number, track in enumerate(joined, start=1):
            track.track_id = number
        return joined
