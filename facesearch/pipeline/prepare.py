"""From a photo to network inputs: detect every face, align it, cut its 7 region masks.

    preparer = FacePreparer(settings)   # detect.detector(settings.detector) -> alignment
                                        # -> parse.parser(settings.parser)
    faces = preparer.prepare(pixels, scale)   # list[PreparedFace], largest first

Each face is segmented (person vs background) once: the pixel attributes' head crop is
(pipeline/pixel_attributes.py, PixelMeasurer.head), and the "mesh" parser's person mask of the
aligned crop, which lies inside it, is warped from that (HeadView.aligned_person; the aligned
crop was segmented a second time before: FacePreparer.share_person_mask = False still does).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facesearch.pipeline import alignment
from facesearch.pipeline.detect import Detector
from facesearch.pipeline.detect import detector as make_detector
from facesearch.pipeline.detect.quality import FaceQuality, face_quality
from facesearch.pipeline.parse import Parser, coarse_masks
from facesearch.pipeline.parse import parser as make_parser
from facesearch.pipeline.parse.learned import LearnedParser
from facesearch.pipeline.parse.mesh import MeshParser
from facesearch.pipeline.pixel_attributes import PixelMeasurer
from facesearch.settings import DEFAULTS, Settings


@dataclass
class PreparedFace:
    """A face ready for the descriptor network, with its place in the original photo."""

    bbox: np.ndarray        # (4,) x0, y0, x1, y1 in pixels of the original photo
    landmarks: np.ndarray   # (5, 2) in pixels of the original photo
    score: float            # detector confidence
    crop: np.ndarray        # (112, 96, 3) uint8 aligned face
    masks: np.ndarray       # (7, 112, 96) float32 one-hot region masks of the crop
    #: (112, 112, 3) uint8 crop aligned to the ArcFace template on the photo's own pixels (the
    #: identity embedder's input, alignment.arcface_crop).
    identity_crop: np.ndarray | None = None
    #: The detector's extra point sets (Detection.points) in crop pixels, e.g. "mesh" (468, 2).
    points: dict[str, np.ndarray] = field(default_factory=dict)
    #: The face's quality record (detect/quality.py), measured for every detector: the
    #: backend's own when it gives one (scrfd), else from the pixels it was detected in.
    quality: FaceQuality | None = None
    #: Original photo size over the size the face was found in (FacePreparer.prepare's `scale`).
    scale: float = 1.0
    #: spec.PIXEL_ATTRIBUTES read from the photo's pixels (pipeline/pixel_attributes.py): hair
    #: length, red hair, eye colour; a key is absent when the pixels cannot tell.
    pixel_attributes: dict[str, float] = field(default_factory=dict)

    @property
    def quality_record(self) -> dict[str, float]:
        """spec.QUALITY_KEYS of this face (FaceQuality.record, face_size in original pixels);
        empty without a quality record."""
        return {} if self.quality is None else self.quality.record(self.scale)

    @property
    def mesh(self) -> np.ndarray | None:
        """(468, 2) face mesh in crop pixels when the detector found one, else None."""
        return self.points.get("mesh")

    @property
    def mesh_found(self) -> bool:
        """Whether the detector found this face's mesh (the mesh parser used the mean otherwise)."""
        return "mesh" in self.points

    @property
    def grid_masks(self) -> np.ndarray:
        """The masks at the feature-map grid (7, 7, 6) float32, as the network takes them."""
        return coarse_masks(self.masks)


class FacePreparer:
    """Detection -> alignment -> region masks, with the backends `settings` names (or the ones
    given). Create once per thread; models load on first use. Raises FaceSearchError for an
    unknown backend name."""

    #: The "mesh" parser takes the aligned crop's person mask from the head crop's segmentation
    #: (one selfie segmentation a face); False segments the aligned crop again, as before
    #: (bench/describe_speed.py --separate-segmentation measures the difference).
    share_person_mask: bool = True

    def __init__(self, settings: Settings = DEFAULTS, detector: Detector | None = None,
                 parser: Parser | None = None):
        self.detector = detector or make_detector(settings.detector, settings)
        self.parser = parser or make_parser(settings.parser, settings)
        # the pixel attributes cut the head with the "mesh" parser (this one when it is that)
        # and read the hair's colour under the learned parser's hair class (when it is that)
        self.measurer = PixelMeasurer(self.parser if isinstance(self.parser, MeshParser) else None,
                                      self.parser if isinstance(self.parser, LearnedParser) else None)

    def prepare(self, pixels: np.ndarray, scale: float = 1.0) -> list[PreparedFace]:
        """Every face of an (H, W, 3) uint8 RGB image, largest first; `scale` maps its pixels to
        the original photo's (original size / decoded size). Faces the parser cannot parse are
        left out."""
        faces = []
        for face in self.detector.detect(pixels):
            face = self.measurer.with_mesh(pixels, face)  # eye colour needs one (scrfd gives none)
            matrix = alignment.template_transform(face.landmarks)
            crop = alignment.warp(pixels, matrix)
            in_crop = face.transformed(matrix)
            # One person segmentation a face, on the head crop the pixel attributes read; the
            # "mesh" parser's person mask of the aligned crop is warped from it (it is inside).
            parse = (self.parser.head_parse(pixels, face.landmarks)
                     if isinstance(self.parser, LearnedParser) else None)  # one parse a face
            head = self.measurer.head(pixels, face, parse)
            if isinstance(self.parser, MeshParser) and self.share_person_mask:
                masks = self.parser.masks(crop, in_crop, person=head.aligned_person())
            elif parse is not None:
                masks = self.parser.region_masks(parse, matrix)
            else:
                masks = self.parser.masks_in_photo(pixels, face, matrix, crop)
            if masks is None:
                continue
            quality = face.quality or face_quality(pixels, face.bbox, face.score, face.landmarks)
            faces.append(PreparedFace(bbox=face.bbox * scale, landmarks=face.landmarks * scale,
                                      score=face.score, crop=crop, masks=masks,
                                      identity_crop=alignment.arcface_crop(pixels, face.landmarks),
                                      points=in_crop.points, quality=quality, scale=scale,
                                      pixel_attributes=self.measurer.measure(pixels, face, head)))
        return faces
