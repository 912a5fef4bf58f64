"""The "learned" parser backend: our own face parser (models/parser.py) on a head crop.

The head crop is a square cut from the photo by a similarity transform of the face's 5 landmarks
(head_template): the aligned crop's framing widened to 160 x 160 aligned pixels (32 more on each
side, 24 above, 24 below), so that it holds the hair above and beside the face, the ears and some
neck. The parser reads it at 128 x 128 and scores 12 classes (models/parser.PARSER_CLASSES) on a
64 x 64 grid; the scores are warped into the aligned crop (bilinear, then argmax) and the classes
merged into the 7 regions (models/parser.REGION_OF_CLASS). Its hair and hat masks are there for
the pixel attributes too (`LearnedParser.head_parse(pixels, landmarks).photo_mask(("hair",),
matrix, size)`: the hair of any crop of the photo, at that crop's resolution).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.models.parser import OUTPUT_STRIDE, PARSER_CLASSES, PARSER_SIDE, REGION_INDEX
from facesearch.pipeline import alignment
from facesearch.pipeline.parse.base import Parser
from facesearch.spec import ALIGN_TEMPLATE, INPUT_SIZE, REGIONS

if TYPE_CHECKING:
    from facesearch.pipeline.detect.base import Detection

#: The head crop's side and where the aligned crop (spec.INPUT_SIZE, 112 x 96) sits in it, in
#: aligned-crop pixels: x from -32 to 128, y from -24 to 136.
HEAD_SIDE_ALIGNED = 160
HEAD_OFFSET = (32.0, 24.0)


def head_template(side: int) -> np.ndarray:
    """(5, 2) where the 5 landmarks land in a head crop of `side` pixels."""
    return (np.asarray(ALIGN_TEMPLATE, np.float64) + HEAD_OFFSET) * (side / HEAD_SIDE_ALIGNED)


def head_transform(landmarks5: np.ndarray, side: int) -> np.ndarray:
    """2x3 matrix from image pixels to the head crop of `side` pixels (least-squares similarity
    of the (5, 2) landmarks onto head_template)."""
    return alignment.similarity_transform(landmarks5, head_template(side))


def head_crop(image: np.ndarray, landmarks5: np.ndarray, side: int) -> np.ndarray:
    """The (side, side, 3) uint8 head crop of an RGB image's face; outside the photo is black
    (a replicated border draws streaks that the teacher reads as hair or a hat)."""
    return cv2.warpAffine(image, head_transform(landmarks5, side), (side, side),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def aligned_from_head(matrix_aligned: np.ndarray, matrix_head: np.ndarray,
                      stride: int = OUTPUT_STRIDE) -> np.ndarray:
    """2x3 matrix from the parser's score grid (a pixel per `stride` head-crop pixels, its
    centre at head-crop pixel stride * i + (stride - 1) / 2) to the aligned crop, given the
    photo -> aligned crop and photo -> head crop matrices."""
    grid_to_head = np.array([[stride, 0, (stride - 1) / 2], [0, stride, (stride - 1) / 2], [0, 0, 1]])
    head_to_photo = np.vstack([alignment.invert(matrix_head), [0, 0, 1]])
    return (np.vstack([matrix_aligned, [0, 0, 1]]) @ head_to_photo @ grid_to_head)[:2]


@dataclass
class HeadParse:
    """The parser's reading of one face's head crop: class scores on its grid and the matrix
    from the photo to the head crop (PARSER_SIDE pixels)."""

    scores: np.ndarray   # (64, 64, 12) float32 logits, PARSER_CLASSES order
    matrix: np.ndarray   # (2, 3) photo pixels -> head-crop pixels (PARSER_SIDE x PARSER_SIDE)

    @property
    def labels(self) -> np.ndarray:
        """(PARSER_SIDE, PARSER_SIDE) uint8 class index (PARSER_CLASSES) of each head-crop pixel
        (scores resampled bilinearly, then argmax)."""
        big = cv2.resize(self.scores, (PARSER_SIDE, PARSER_SIDE), interpolation=cv2.INTER_LINEAR)
        return big.argmax(-1).astype(np.uint8)

    def mask(self, *names: str) -> np.ndarray:
        """Bool (PARSER_SIDE, PARSER_SIDE) mask of the head-crop pixels of the named classes
        (PARSER_CLASSES, e.g. "hair", "hat"); FaceSearchError for an unknown name."""
        unknown = [name for name in names if name not in PARSER_CLASSES]
        if unknown:
            raise FaceSearchError(f"unknown parser class {unknown[0]!r}: use one of "
                                  f"{', '.join(PARSER_CLASSES)}")
        return np.isin(self.labels, [PARSER_CLASSES.index(name) for name in names])

    def photo_mask(self, names: tuple[str, ...], matrix: np.ndarray, size: tuple[int, int]
                   ) -> np.ndarray:
        """Bool (height, width) mask of the named classes in another crop of the same photo,
        given the photo -> that crop 2x3 `matrix` and its `size` (width, height): the class
        scores are warped there (bilinear), so the mask is as fine as that crop allows."""
        warp = aligned_from_head(matrix, self.matrix)
        scores = cv2.warpAffine(self.scores, warp, size, flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        labels = scores.argmax(-1)
        inside = cv2.warpAffine(np.ones(self.scores.shape[:2], np.uint8), warp, size,
                                flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT) > 0
        return np.isin(labels, [PARSER_CLASSES.index(name) for name in names]) & inside


class LearnedParser(Parser):
    """The 7 regions from our own face parser (models/parser.py), read on the head crop cut from
    the photo and warped into the aligned crop. Runs in numpy; the weights load on first use
    (FaceSearchError when they are missing)."""

    name = "learned"

    @cached_property
    def network(self):
        """The shipped parser network (numpy)."""
        from facesearch.models.parser import load_parser

        return load_parser()

    def head_parse(self, pixels: np.ndarray, landmarks5: np.ndarray) -> HeadParse:
        """The parse of the head crop of a face of an (H, W, 3) uint8 RGB photo, given its (5, 2)
        landmarks in the photo's pixels."""
        crop = head_crop(pixels, landmarks5, PARSER_SIDE)
        return HeadParse(scores=self.network(crop[None])[0],
                         matrix=head_transform(landmarks5, PARSER_SIDE))

    def region_masks(self, parse: HeadParse, matrix: np.ndarray) -> np.ndarray:
        """One-hot float32 (7, H, W) region masks (spec.REGIONS order, H, W = spec.INPUT_SIZE) of
        the aligned crop that the photo -> crop `matrix` cuts, from a head parse."""
        height, width = INPUT_SIZE
        warp = aligned_from_head(matrix, parse.matrix)
        scores = cv2.warpAffine(parse.scores, warp, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        regions = REGION_INDEX[scores.argmax(-1)]
        return (regions[None] == np.arange(len(REGIONS))[:, None, None]).astype(np.float32)

    def masks_in_photo(self, pixels: np.ndarray, face: Detection, matrix: np.ndarray,
                       crop: np.ndarray) -> np.ndarray | None:
        """The aligned crop's masks, parsed on the head crop cut from the photo (hair above and
        beside the aligned crop is seen)."""
        return self.region_masks(self.head_parse(pixels, face.landmarks), matrix)

    def masks(self, crop: np.ndarray, face: Detection) -> np.ndarray | None:
        """The masks of an aligned crop alone (no photo): the head crop is cut from the crop
        itself, black outside it, so hair above the crop is not seen; FacePreparer calls
        masks_in_photo instead."""
        return self.region_masks(self.head_parse(crop, face.landmarks), np.eye(2, 3))
