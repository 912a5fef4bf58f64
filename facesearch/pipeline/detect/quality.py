"""How usable a detected face is, from its pixels: size, detector score, border cut, blur.

    quality = face_quality(image, box, score)      # FaceQuality
    quality.value                                  # 0..1, the product of its four parts
    quality.parts                                  # {"size": .., "score": .., "border": .., "sharpness": ..}
    quality.record(scale)                          # {"quality", "face_size", "border_cut", "blur"}
    is_unreliable(face.attributes)                 # half outside the photo: attributes not trusted
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from facesearch.pipeline import alignment
from facesearch.spec import QUALITY_KEYS

#: Face side (px) from which size no longer lowers quality.
FULL_SIZE = 64.0
#: Side (px) the face is resized to before measuring blur, so blur compares across sizes.
BLUR_SIDE = 64
#: The face's box (x0, y0, x1, y1) in its aligned crop (spec.INPUT_SIZE): the median of the
#: boxes SCRFD gave 40 CelebA faces (20 aligned, 20 wild), moved into their crops.
FACE_IN_CROP = (20.0, 18.0, 77.0, 98.0)
#: Laplacian variance at which the sharpness part is 0.5 (sharp CelebA faces: a few hundred;
#: the same faces after a Gaussian blur of sigma 2 px at this side: under 20).
HALF_SHARPNESS = 50.0
#: A face with more than this share of itself outside the photo (border_cut) has its attributes
#: flagged unreliable (Face.unreliable, Hit.unreliable): they are predicted from a face the
#: network sees partly as the aligner's border fill. Measured on 39 CelebA wild photos cut
#: through their main face at 10-70% of its box (121 cut faces found, mediapipe detector):
#: border_cut below 0.15 / 0.15-0.3 / 0.3-0.45 / above 0.45 changed 1.8 / 3.3 / 5.2 / 7.3 of
#: the 40 CelebA decisions and the gender probability by 0.006 / 0.008 / 0.094 / 0.343 on
#: average against the uncut face: above 0.3 even gender is no longer to be trusted
#: (python bench/quality_border_cut.py).
UNRELIABLE_BORDER_CUT = 0.3
#: Below this quality a face is tiny or blurred and what is read from it is a guess: it joins no
#: person (index.people.MIN_QUALITY), its same-person calls are flagged (search.compare) and its
#: fit to a text or its region score among look-alikes is scaled by quality / this
#: (search.terms.quality_weights). Of the 1,170 faces of the 1,111 wild CelebA photos, the 8
#: grouped into people below 0.15 were all tiny or blurred background faces (12-50 px, blur
#: 1.4-33, quality 0.004-0.10), 7 of them one "person" of five different people; no face of a
#: photo's own subject was below 0.1. A new user's trial: dark 13-47 px audience faces of a
#: video (quality 0.01-0.03) led "a scared child", and a 25 px face of quality 0.06 was called
#: the same person as a stranger.
RELIABLE_QUALITY = 0.1


@dataclass(frozen=True)
class FaceQuality:
    """A face's quality record; `value` in 0..1 is the product of the parts in `parts`."""

    size: float        # face side in pixels of the image given (square root of the box's area)
    score: float       # detector confidence, 0..1
    border_cut: float  # share of the face outside the image, 0..1 (see face_quality)
    blur: float        # variance of the Laplacian of the face (grey, BLUR_SIDE px); low = blurred

    @property
    def parts(self) -> dict[str, float]:
        """The four factors of `value`, each in 0..1: size, score, border (1 - cut) and
        sharpness."""
        return {"size": min(1.0, self.size / FULL_SIZE), "score": float(np.clip(self.score, 0, 1)),
                "border": 1.0 - self.border_cut,
                "sharpness": self.blur / (self.blur + HALF_SHARPNESS)}

    @property
    def value(self) -> float:
        """Overall quality in 0..1 (the product of `parts`)."""
        return float(np.prod(list(self.parts.values())))

    def record(self, scale: float = 1.0) -> dict[str, float]:
        """The spec.QUALITY_KEYS as a face's attributes carry them: quality (value, 0..1),
        face_size (the face's side in pixels of the original photo: `size` times `scale`, the
        original size over the size measured at), border_cut (0..1) and blur (Laplacian
        variance)."""
        values = (round(self.value, 4), round(self.size * scale, 1), round(self.border_cut, 4),
                  round(self.blur, 1))
        return dict(zip(QUALITY_KEYS, values))


def is_low_quality(attributes: Mapping[str, object]) -> bool:
    """Whether a face's quality (in `attributes`, from FaceQuality.record) is below
    RELIABLE_QUALITY. False when there is no quality record (faces indexed before it)."""
    quality = attributes.get("quality")
    return isinstance(quality, (int, float)) and quality < RELIABLE_QUALITY


def is_unreliable(attributes: Mapping[str, object]) -> bool:
    """Whether a face's attributes are not to be trusted: its border_cut (in `attributes`, from
    FaceQuality.record) is above UNRELIABLE_BORDER_CUT. False when there is no quality record
    (faces indexed before it existed)."""
    cut = attributes.get("border_cut")
    return isinstance(cut, (int, float)) and cut > UNRELIABLE_BORDER_CUT


def face_quality(image: np.ndarray, box: np.ndarray, score: float,
                 landmarks: np.ndarray | None = None) -> FaceQuality:
    """The quality of the face at `box` (x0, y0, x1, y1, in pixels of the (H, W, 3) uint8 RGB
    `image`, possibly reaching past its border) found with detector confidence `score`.

    Detectors tend to box only the visible part of a face the border cuts, so the border cut
    is the larger of the box's share outside the image and, given the face's 5 `landmarks`
    ((5, 2) in the same pixels), the share of the face they imply (FACE_IN_CROP of its aligned
    crop) that falls outside."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    inside = max(0.0, min(x1, width) - max(x0, 0)) * max(0.0, min(y1, height) - max(y0, 0))
    cut = 1.0 - inside / area if area > 0 else 1.0
    if landmarks is not None:
        cut = max(cut, _crop_outside(landmarks, height, width))
    return FaceQuality(size=float(np.sqrt(area)), score=float(score), border_cut=float(np.clip(cut, 0, 1)),
                       blur=_blur(image, (x0, y0, x1, y1)))


def _crop_outside(landmarks: np.ndarray, height: int, width: int, steps: int = 16) -> float:
    """Share of the face implied by its landmarks (FACE_IN_CROP of its aligned crop) that lies
    outside a height x width image, sampled on a steps x steps grid."""
    x0, y0, x1, y1 = FACE_IN_CROP
    to_image = alignment.invert(alignment.template_transform(np.asarray(landmarks, np.float64)))
    ys, xs = np.meshgrid(y0 + (np.arange(steps) + 0.5) * (y1 - y0) / steps,
                         x0 + (np.arange(steps) + 0.5) * (x1 - x0) / steps, indexing="ij")
    points = alignment.transform_points(np.stack([xs.ravel(), ys.ravel()], axis=1), to_image)
    outside = (points[:, 0] < 0) | (points[:, 0] > width) | (points[:, 1] < 0) | (points[:, 1] > height)
    return float(outside.mean())


def _blur(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian of the box's middle (its central 80%, inside the image), grey
    and resized to BLUR_SIDE px; 0 for a box with no pixels."""
    x0, y0, x1, y1 = box
    dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    height, width = image.shape[:2]
    left, top = max(0, int(round(x0 + dx))), max(0, int(round(y0 + dy)))
    right, bottom = min(width, int(round(x1 - dx))), min(height, int(round(y1 - dy)))
    if right - left < 2 or bottom - top < 2:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (BLUR_SIDE, BLUR_SIDE), interpolation=cv2.INTER_AREA
                      if min(grey.shape) > BLUR_SIDE else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F).var())
