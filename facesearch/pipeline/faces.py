"""A face as the pipeline hands it back: `FaceSearch.describe(photo)` returns these."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facesearch.pipeline.detect.quality import is_unreliable
from facesearch.spec import region_block


@dataclass(frozen=True)
class TrackSpan:
    """Where a video face (a track: one person followed across frames, pipeline.tracking) is in
    its video, in seconds from the first frame."""

    track_id: int   # 1, 2, ... in order of first appearance within the video
    start: float    # first sampled frame the face is in
    end: float      # last sampled frame the face is in
    time: float     # the best frame (sharp, frontal, large): the one the face's box is in
    frames: int     # sampled frames the face was found in

    def to_dict(self) -> dict:
        """JSON-ready: track_id, start, end, time, frames."""
        return {"track_id": self.track_id, "start": self.start, "end": self.end,
                "time": self.time, "frames": self.frames}


@dataclass
class Face:
    """A face found in a photo (or a video track: see `track`): its master vector, its identity
    vector, where it is, and its predicted classes.

    Not to be confused with `facesearch.index.store.FaceRow`, the stored row of an indexed face.
    """

    vector: np.ndarray          # (364,) float32: 7 unit-norm blocks in spec.REGIONS order
    bbox: list[float]           # [x0, y0, x1, y1] in pixels of the original photo
    landmarks: list[list[float]]  # 5 points: eyes, nose tip, mouth corners
    attributes: dict[str, float]  # class -> probability, and "age" in years
    score: float                # detector confidence
    crop: np.ndarray = field(repr=False)   # aligned face (112, 96, 3)
    masks: np.ndarray = field(repr=False)  # region masks (7, 112, 96)
    #: (512,) float32 unit-norm ArcFace identity vector (models/arcface.py): same person or not.
    identity: np.ndarray | None = field(default=None, repr=False)
    #: For a face of a video: its track (times in seconds); None for a photo's face.
    track: TrackSpan | None = None

    @property
    def quality(self) -> float | None:
        """The face's quality, 0..1 (attributes["quality"], detect/quality.py), or None."""
        return self.attributes.get("quality")

    @property
    def unreliable(self) -> bool:
        """Whether the face is half outside the photo (border_cut above
        quality.UNRELIABLE_BORDER_CUT), so that its attributes are not to be trusted."""
        return is_unreliable(self.attributes)

    def region_vector(self, region: str) -> np.ndarray:
        """The 52-dim block f_k of one region."""
        return region_block(self.vector, region)

    def to_dict(self) -> dict:
        """JSON-ready: bbox, landmarks, score, quality, unreliable, attributes, the vector and
        the identity vector as lists."""
        described = {"bbox": self.bbox, "landmarks": self.landmarks, "score": self.score,
                     "quality": self.quality, "unreliable": self.unreliable,
                     "attributes": self.attributes, "vector": self.vector.tolist(),
                     "identity": None if self.identity is None else self.identity.tolist()}
        return described if self.track is None else described | self.track.to_dict()
