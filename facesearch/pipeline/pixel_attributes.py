"""Attributes read from a face's pixels rather than predicted by the network (spec.PIXEL_ATTRIBUTES):
hair length (hair_long, hair_short), red hair (hair_red: red, auburn, ginger) and eye colour
(eyes_blue, eyes_green, eyes_brown), each a probability in 0..1.

    measurer = PixelMeasurer()                       # one per thread (mediapipe graphs)
    measurer.measure(pixels, detection)              # {"hair_long": 0.93, ..., "eyes_brown": 0.81}
    head = measurer.head(pixels, detection)          # the head crop and its person segmentation,
    head.aligned_person()                            # warped into the aligned crop (FacePreparer)
    measurer.measure(pixels, detection, head)        # the same values, the segmentation reused

Hair. The head and shoulders are cut out of the decoded photo around the aligned face (HEAD_BOX,
in the aligned crop's template units, resampled to HEAD_SCALE pixels a unit: eyes 21 px apart;
wider than the 112x96 crop, which ends at the chin), segmented once (mediapipe's selfie
segmentation: the one person segmentation a face, which FacePreparer also warps into the aligned
crop for the "mesh" parser's hair and background regions) and cut into regions by the "mesh"
parser (pipeline/parse/mesh.py: face-mesh polygons and the person mask). The skin's colour is read on
the cheeks (face skin between the eyes' and the mouth's rows), the hair's on the head (from the
eyes down not further out than HAIR_FALL_SHARE face widths: not the shoulders): under the
learned face parser's hair class when the index parses with it (the default; HeadView.hair,
warped from the face's one head parse: hats are a class of their own), else the mesh parser's
hair region less skin-coloured pixels (Mahalanobis distance in CIELAB; auburn hair beside skin
of its colour was lost that way, leaving the shadows). Hair-colour accuracy against CelebA's
labels (training/pixel_eval.py): 0.702 with the mesh region, 0.763 with the parser's hair class.

Red/auburn/ginger hair is the hue/chroma corner of CIELAB that brown, blond, black and grey hair
do not reach (`red_probability`, placed with CelebA's hair-colour labels: see the constants); it
must hold on the top of the head and beside the face alike (HAIR_PARTS; a part not seen halves
it, UNSEEN_PART: a red hat is one part only), the hair must differ from the background around
the head (MIN_CONTRAST: a red wall seen through the person mask's edge), the skin must not be
saturated by warm or coloured light (SKIN_CHROMA_MAX: brown hair under it reads red), and once
the network's classes are known, `with_classes` scales it by the chance that hair shows at all
(no hat, not bald) and that it is not what the network calls black, grey or blond (a red hat
over grey hair, a pink scarf over blond hair, blond hair under warm light).

Length: the hair grows down through the person mask by colour (pixels nearer the hair's colour
than the skin's, connected to the hair above the chin; from the eyes down only beside the face
and neck, not out on the shoulders) and is followed from the top of the head down while it
lasts: how far below the chin it reaches, in face heights (chin minus brows), says long or
short. Where the photo ends before the hair does, where the neck under the chin is covered in
the hair's colour (a scarf, a collar, a dark top: NECK_COVERED) and the hair seems to go below
it, or where no hair is seen at all (bald, covered, lost in a background of its colour), the
length is unknown (no keys; a head the network calls bald is short-haired, `with_classes`).
Seen from the front, hair ending above the chin may be tied back and a dark top may pass for
hair: `with_classes` weighs hair_short by the network's Male and hair_long by its complement.

Eyes. At the photo's full resolution, inside each eye's opening (the face mesh's eyelid contour),
the iris is the darkest vertical band of the iris's expected width (IRIS_SHARE of the eye's
width; the gaze moves it), less highlights and the pupil; its median colour in CIELAB, less the
tint of the sclera (white under neutral light; no colour when the sclera is not seen or the light
is too coloured), is compared with colour prototypes
(EYE_PROTOTYPES). Eyes narrower than MIN_EYE_WIDTH pixels or less open than MIN_EYE_OPENING, and
eyes behind eyeglasses (the network's Eyeglasses > 0.5, `with_classes`), give no eye colour: the
keys are then absent (a stored face has NULL there, and a text query ranks it as unknown, 0.5).

A detector that gives no face mesh (scrfd) gets one fitted at its landmarks (mediapipe's face
mesh, `with_mesh`, about 6 ms a face) where the eyes are wide enough to read; faces still without
one (small eyes, a mesh not found) get hair attributes from the mean mesh and no eye colour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facesearch.pipeline import alignment
from facesearch.pipeline.detect.base import Detection
from facesearch.pipeline.detect.mediapipe import MESH_LEFT_EYE, MESH_RIGHT_EYE, MediapipeDetector
from facesearch.spec import INPUT_SIZE, REGIONS

if TYPE_CHECKING:
    from facesearch.pipeline.parse.learned import HeadParse, LearnedParser
    from facesearch.pipeline.parse.mesh import MeshParser

# --- the head crop -------------------------------------------------------------------------
#: The head crop in the aligned crop's template units (x0, y0, x1, y1; the 112x96 crop is
#: (0, 0, 96, 112), eyes at y=50, mouth at y=77): 2 face widths either side, from the top of
#: the head to about 2.5 face heights below the chin (where long hair ends).
HEAD_BOX = (-56.0, -24.0, 152.0, 232.0)
#: Pixels per template unit in the head crop (0.8: a 166 x 205 crop, eyes 21 px apart).
HEAD_SCALE = 0.8
#: Where the aligned face's parts are in template units (spec.ALIGN_TEMPLATE: eyes at y=50,
#: mouth at 77, centre x=48; the brows about 12 above the eyes).
TEMPLATE_EYES_Y, TEMPLATE_MOUTH_Y, TEMPLATE_BROWS_Y, TEMPLATE_CENTRE_X = 50.0, 77.0, 38.0, 48.0
#: The face's width in template units (the face oval of the mean mesh).
TEMPLATE_FACE_WIDTH = 64.0
#: Standard deviations (Mahalanobis) within which a pixel counts as the face skin's colour.
SKIN_DISTANCE = 3.0
#: Fewest hair pixels (head crop) to read a hair colour from; fewer: no hair seen (bald, covered,
#: or lost in a background of its colour).
MIN_HAIR_PIXELS = 60

# --- hair colour: calibrated on CelebA's labels -------------------------------------------
#: Red, auburn and ginger hair: hue angle h = atan2(b*, a*) between RED_HUE_MIN and RED_HUE_MAX
#: degrees (red-orange; below it are the magentas and violets of coloured light) and chroma
#: C* = hypot(a*, b*) above RED_CHROMA (median of the hair's pixels; CIELAB of sRGB, D65).
#: Measured on 463 CelebA faces labelled Black/Blond/Brown/Gray_Hair (training/pixel_eval.py):
#: median hue / chroma black 27 / 2.1, brown 50 / 12.8, grey 61 / 7.6, blond 70 / 20.5; on 11
#: red-haired faces picked by eye from the reddest 30 of 1,100: hue 30-51 (one at -3, under
#: violet light), chroma 22-53. Red hair is as red as the reddest brown but far more saturated,
#: and redder than blond at the same chroma.
RED_HUE_MIN = 20.0
RED_HUE_MAX = 50.0
RED_HUE_SPREAD = 3.0
RED_CHROMA = 20.0
RED_CHROMA_SPREAD = 3.0
#: The light's colour: under warm or coloured light (stage light, sunset, a red backdrop's glow)
#: skin turns as saturated as nothing else does and brown hair reads as auburn, so hair_red is
#: scaled by sigmoid((SKIN_CHROMA_MAX - C*) / SKIN_CHROMA_SPREAD) of the skin's chroma on the
#: cheeks. Skin chroma of 300 pixel-gallery faces: median 26, 95th percentile 40, over 45 in 2.7%;
#: the judged red-hair hits had 16-36, the warm-light brown hair among the top 25 42-72.
SKIN_CHROMA_MAX = 42.0
SKIN_CHROMA_SPREAD = 3.0
#: The parts of the hair whose colours red hair must agree in (HairMeasure.parts).
HAIR_PARTS = ("top", "sides")
#: hair_red is multiplied by this for each of HAIR_PARTS not seen (too few pixels): unknown, so
#: at most half as likely, and still ranked by how red the part seen is.
UNSEEN_PART = 0.5
#: The network's hair-colour classes that red hair is not (`with_classes`): hair_red is scaled by
#: 1 - the largest of their probabilities. CelebA has no red label (its redheads are mostly
#: Brown_Hair or unlabelled); of the judged top "red hair" hits before, the network called 3 of
#: the 7 wrong ones black, grey or blond (> 0.5: a pink scarf over blond hair, blond hair under
#: warm light) and 1 of the 8 right ones (a strawberry blonde).
OTHER_HAIR_COLOURS = ("Black_Hair", "Gray_Hair", "Blond_Hair")
#: Hair within this colour difference (CIE76 delta E) of the background around the head may be
#: the background seen through the person mask's edge: hair_red is scaled by contrast / this.
MIN_CONTRAST = 20.0

# --- hair length ---------------------------------------------------------------------------
#: Hair reaching this many face heights below the chin is long (shoulders: about 0.6) ...
LONG_AT = 0.45
#: ... and hair ending this far above the chin (ears, neck line) or higher is short.
SHORT_AT = -0.1
LENGTH_SPREAD = 0.2
#: Weights of the pixels' hair_short for a woman and hair_long for a man (`with_classes`): seen
#: from the front, a woman's hair ending above the chin is often tied back (a bun, a ponytail)
#: and a man's hair "reaching" below it often a dark collar or top. Set by hand; of the judged
#: top hits before (pixel_judgements.csv, the network's Male > 0.5 or not): "short" 16 of 18
#: men right, 0 of 6 women; "long" 15 of 19 women right, 0 of 1 man.
SHORT_IF_FEMALE = 0.3
LONG_IF_MALE = 0.3
#: Below the chin, hair counts only outside the neck band: |x - face centre| < this share of the
#: face's width (a collar or shirt of the hair's colour sits under the chin, hair beside the neck).
NECK_SHARE = 0.3
#: Under the chin, down to NECK_DEPTH face heights, the neck band covered more than NECK_COVERED
#: by the hair's colour (connected to the hair) is a collar, scarf or top, not the neck: the
#: length below the chin is then unknown.
NECK_DEPTH = 0.3
NECK_COVERED = 0.6
#: From the eyes down, hair counts not further out than this many face widths from the face's
#: centre (the shoulders are there).
HAIR_FALL_SHARE = 0.9
#: The hair is followed down from the top of the head across gaps of at most this many face
#: heights (a strand's shadow); a longer gap (the neck, then a dark collar) ends it.
GAP_SHARE = 0.06

# --- eyes ----------------------------------------------------------------------------------
#: Narrowest eye (corner to corner, photo pixels) whose colour is read.
MIN_EYE_WIDTH = 14.0
#: Least opening (lid to lid over corner to corner) whose colour is read.
MIN_EYE_OPENING = 0.2
#: The iris's width as a share of the eye's (11.7 mm of about 30 mm).
IRIS_SHARE = 0.4
#: An eye's width (corner to corner) as a share of the distance between the eyes' centres
#: (about 30 of 63 mm; a little less, so that no readable eye is skipped): a face without a
#: mesh whose eyes would be narrower than MIN_EYE_WIDTH gets none fitted (`with_mesh`).
EYE_WIDTH_SHARE = 0.42
#: Most tint (chroma of the sclera's a*, b*) taken off the iris's colour as the light's; a more
#: coloured sclera (a stage light, face paint) gives no eye colour.
SCLERA_TINT_MAX = 12.0
#: The white of the eye must be this much lighter (L*) than the iris, or it is not seen.
MIN_SCLERA_CONTRAST = 10.0
#: Iris colour prototypes (L*, a*, b*) and their spread: blue/grey-blue irises have negative
#: b*, green ones negative a* with positive b*, brown ones positive a* and b*, darker. Set by
#: hand (no eye-colour labels here), checked by eye on the top hits (training/text_eval.py,
#: PIXEL_QUERIES: blue and brown P@10 0.8, green 0.4).
EYE_PROTOTYPES = {
    "eyes_blue": (50.0, -2.0, -8.0),
    "eyes_green": (48.0, -7.0, 10.0),
    "eyes_brown": (32.0, 7.0, 12.0),
}
EYE_SPREAD = 7.0
#: Weight of lightness beside a* and b* in the distance to a prototype (lighting moves L*).
EYE_LIGHTNESS_WEIGHT = 0.3
#: Reliability of a reading (`eye_reliability`, PixelMeasurer.eyes): the spread (CIELAB units)
#: of the distance to the nearest prototype, and the weight of one eye read alone. Set by hand
#: from the judged top hits before: 5 of the 6 wrong ones for green eyes and 1 of 2 each for
#: blue and brown were one eye read alone; the 2 wrong blue ones had violet irises (a* +11,
#: b* -16: a stage light or make-up), 15 units from the blue prototype, the right ones 2-8.
EYE_OUTLIER = 10.0
ONE_EYE_RELIABILITY = 0.6


def lab(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> CIELAB float32 (..., 3): L* 0..100, a*, b* about -128..127."""
    pixels = np.asarray(pixels)
    image = pixels.reshape(-1, 1, 3) if pixels.ndim != 3 else pixels  # a list of colours: a column
    # as an image, not a (n, 1) column: OpenCV converts an image row by row (4x faster)
    return cv2.cvtColor(image.astype(np.float32) * np.float32(1 / 255), cv2.COLOR_RGB2LAB).reshape(pixels.shape)


def hue_chroma(colour: np.ndarray) -> tuple[float, float]:
    """(hue angle in degrees, chroma) of a CIELAB colour (L*, a*, b*)."""
    return math.degrees(math.atan2(colour[2], colour[1])), math.hypot(colour[1], colour[2])



def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def red_probability(colour: np.ndarray) -> float:
    """The probability that hair of median CIELAB colour `colour` is red/auburn/ginger."""
    hue, chroma = hue_chroma(colour)
    return (_sigmoid((hue - RED_HUE_MIN) / RED_HUE_SPREAD) * _sigmoid((RED_HUE_MAX - hue) / RED_HUE_SPREAD)
            * _sigmoid((chroma - RED_CHROMA) / RED_CHROMA_SPREAD))


def length_probabilities(below_chin: float) -> dict[str, float]:
    """hair_long and hair_short from how far the hair reaches below the chin (face heights)."""
    return {"hair_long": _sigmoid((below_chin - LONG_AT) / LENGTH_SPREAD),
            "hair_short": _sigmoid((SHORT_AT - below_chin) / LENGTH_SPREAD)}


def eye_reliability(colour: np.ndarray) -> float:
    """0..1: how near an iris's median CIELAB colour is to the nearest of EYE_PROTOTYPES
    (a Gaussian of the weighted distance, EYE_OUTLIER): 1 on a prototype, small far from all."""
    weights = np.array([EYE_LIGHTNESS_WEIGHT, 1.0, 1.0])
    nearest = min(np.sum(weights * (colour - np.array(p)) ** 2) for p in EYE_PROTOTYPES.values())
    return float(np.exp(-nearest / (2 * EYE_OUTLIER ** 2)))


def eye_probabilities(colour: np.ndarray) -> dict[str, float]:
    """eyes_blue/green/brown from an iris's median CIELAB colour: a softmax over the squared
    distances to EYE_PROTOTYPES."""
    weights = np.array([EYE_LIGHTNESS_WEIGHT, 1.0, 1.0])
    distances = np.array([np.sum(weights * (colour - np.array(p)) ** 2) for p in EYE_PROTOTYPES.values()])
    scores = np.exp(-(distances - distances.min()) / (2 * EYE_SPREAD ** 2))
    return {name: float(s) for name, s in zip(EYE_PROTOTYPES, scores / scores.sum())}


def with_classes(values: dict[str, float], classes: dict[str, float]) -> dict[str, float]:
    """Pixel attributes once the network's classes are known: red hair needs hair to be seen, so
    hair_red is scaled by (1 - P(Wearing_Hat)) (1 - P(Bald)) (a red hat or a bald scalp is not
    red hair: on CelebA, hats were a third of the reddest "hair" before) and by 1 - the largest
    of P(Black_Hair), P(Gray_Hair), P(Blond_Hair) (OTHER_HAIR_COLOURS: a red hat or scarf over
    grey or blond hair, blond hair under warm light); behind eyeglasses (P > 0.5: sunglasses,
    reflections) the eye colour is dropped; a bald head (P(Bald) > 0.5) has short hair
    (hair_short at least P(Bald), hair_long at most 1 - P(Bald)). Seen from the front, hair
    ending above the chin is short or tied back, and hair reaching below it long or a dark
    top of its colour: hair_short is weighed by P(Male) + (1 - P(Male)) SHORT_IF_FEMALE and
    hair_long by (1 - P(Male)) + P(Male) LONG_IF_MALE (the likelier reading for each)."""
    values = dict(values)
    if classes.get("Eyeglasses", 0.0) > 0.5:  # behind glasses (sunglasses) no eye colour is read
        for name in EYE_PROTOTYPES:
            values.pop(name, None)
    male = classes.get("Male", 0.5)
    if "hair_short" in values:
        values["hair_short"] = round(values["hair_short"] * (male + (1.0 - male) * SHORT_IF_FEMALE), 4)
    if "hair_long" in values:
        values["hair_long"] = round(values["hair_long"] * ((1.0 - male) + male * LONG_IF_MALE), 4)
    bald = classes.get("Bald", 0.0)
    if bald > 0.5:  # a bald head has short hair, whatever the pixels said of its length
        values |= {"hair_short": round(max(values.get("hair_short", 0.0), bald), 4),
                   "hair_long": round(min(values.get("hair_long", 1.0), 1.0 - bald), 4)}
    if "hair_red" not in values:
        return values
    seen = (1.0 - classes.get("Wearing_Hat", 0.0)) * (1.0 - bald)
    other = max(classes.get(name, 0.0) for name in OTHER_HAIR_COLOURS)
    return values | {"hair_red": round(values["hair_red"] * seen * (1.0 - other), 4)}


def head_transform(landmarks: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(2x3 matrix from photo pixels to the head crop, (width, height) of the crop)."""
    matrix = alignment.template_transform(landmarks)
    x0, y0, x1, y1 = HEAD_BOX
    shift = np.array([[HEAD_SCALE, 0, -x0 * HEAD_SCALE], [0, HEAD_SCALE, -y0 * HEAD_SCALE]])
    head = shift @ np.vstack([matrix, [0, 0, 1]])
    return head, (round((x1 - x0) * HEAD_SCALE), round((y1 - y0) * HEAD_SCALE))


@dataclass(frozen=True)
class HeadView:
    """A face's head crop (HEAD_BOX at HEAD_SCALE) with what is read from it once a face: the
    parts of the photo it holds, the face mesh in its pixels and its person segmentation."""

    crop: np.ndarray            # (h, w, 3) uint8 RGB; black outside the photo
    valid: np.ndarray           # (h, w) bool: inside the photo
    mesh: np.ndarray | None     # (468, 2) face mesh in crop pixels (the mean mesh without one); None: no mesh
    person: np.ndarray          # (h, w) float32 person probability 0..1 (one selfie segmentation)
    #: (h, w) bool: the learned face parser's hair class (hats are their own class), warped
    #: from its head parse; None without one (the hair is then the mesh parser's hair region
    #: less skin-coloured pixels).
    hair: np.ndarray | None = None

    def aligned_person(self, threshold: float = 0.5) -> np.ndarray:
        """The person mask of the face's aligned crop (spec.INPUT_SIZE, 112 x 96) bool, warped
        from this head crop's segmentation (the aligned crop is HEAD_BOX's (56, 24)..(152, 136)
        at 1 / HEAD_SCALE), so the aligned crop needs no segmentation of its own."""
        height, width = INPUT_SIZE
        x0, y0 = HEAD_BOX[:2]
        aligned_to_head = np.array([[HEAD_SCALE, 0.0, -x0 * HEAD_SCALE], [0.0, HEAD_SCALE, -y0 * HEAD_SCALE]])
        probability = cv2.warpAffine(self.person, aligned_to_head, (width, height),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                     borderMode=cv2.BORDER_CONSTANT)
        return probability > threshold


@dataclass(frozen=True)
class HairMeasure:
    """What the pixels say about a face's hair."""

    colour: np.ndarray | None  # median CIELAB (L*, a*, b*) of the hair; None: no hair seen
    reach: float | None        # face heights below the chin (negative: above); None: unknown
    #: Median CIELAB of each part of the hair seen with enough pixels: "top" (above the brows),
    #: "sides" (beside the face, brows to mouth); red hair must be red in every part seen.
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    #: Colour difference (CIE76 delta E) between the hair and the background around the head:
    #: small, and the hair's colour may be the background's (the person mask's edge).
    contrast: float = 100.0
    #: Median CIELAB of the face's skin on the cheeks (the light's colour shows in it too).
    skin: np.ndarray | None = None


def _in_photo(matrix: np.ndarray, size: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    """(h, w) bool: which pixels of a crop cut with `matrix` (photo -> crop, 2x3) of `size` (w, h)
    come from inside a photo of `shape` (as warping an all-ones photo with INTER_NEAREST, without
    allocating one)."""
    inverse = cv2.invertAffineTransform(matrix)
    xs, ys = np.arange(size[0], dtype=np.float32), np.arange(size[1], dtype=np.float32)[:, None]
    photo_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    photo_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return (photo_x > -0.5) & (photo_x < shape[1] - 0.5) & (photo_y > -0.5) & (photo_y < shape[0] - 0.5)


class PixelMeasurer:
    """Measures spec.PIXEL_ATTRIBUTES of faces in a photo. Models load on first use; one instance
    per thread (mediapipe graphs are not shared)."""

    def __init__(self, parser: MeshParser | None = None, hair_parser: LearnedParser | None = None):
        """`parser`: a "mesh" parser of this thread to share (its person segmenter loads once);
        default: one of its own, made on first use. `hair_parser`: the learned face parser whose
        hair class gives the pixels the hair's colour is read from (HeadView.hair); None: the
        mesh parser's hair region less skin-coloured pixels (auburn hair beside skin of its
        colour is then lost, leaving the shadows)."""
        self._given_parser = parser
        self.hair_parser = hair_parser

    @cached_property
    def _parser(self) -> MeshParser:
        from facesearch.pipeline.parse.mesh import MeshParser

        return self._given_parser or MeshParser()

    @cached_property
    def _mesher(self) -> MediapipeDetector:
        return MediapipeDetector()

    def with_mesh(self, image: np.ndarray, face: Detection) -> Detection:
        """The detection with a face mesh (points["mesh"], photo pixels) fitted at its landmarks
        when it has none and its eyes are wide enough for their colour to be read
        (MIN_EYE_WIDTH, EYE_WIDTH_SHARE); the same detection otherwise or when no mesh fits.
        Only the pixel attributes read the fitted mesh: alignment keeps the detector's landmarks."""
        if face.mesh is not None:
            return face
        if np.linalg.norm(face.landmarks[1] - face.landmarks[0]) * EYE_WIDTH_SHARE < MIN_EYE_WIDTH:
            return face
        mesh = self._mesher.face_mesh(image, face.landmarks)
        return face if mesh is None else replace(face, points={**face.points, "mesh": mesh})

    def measure(self, image: np.ndarray, face: Detection, view: HeadView | None = None) -> dict[str, float]:
        """The pixel attributes of one face of an (H, W, 3) uint8 RGB photo, its detection in the
        photo's pixels: hair_long, hair_short, hair_red whenever the face's regions can be placed;
        eyes_* only when at least one eye is open and large enough (see the module's docstring).
        `view`: the face's head view when already made (`head`). Values rounded to 4 places."""
        values = self.hair(image, face, view)
        values |= self.eyes(image, face)
        return {name: round(float(value), 4) for name, value in values.items()}

    # --- hair ------------------------------------------------------------------------------
    def head(self, image: np.ndarray, face: Detection, parse: HeadParse | None = None) -> HeadView:
        """The face's head view: its head crop, which of it is inside the photo, its mesh in
        crop pixels (the mean mesh when the detector gave none; None without either), its
        person segmentation (the one selfie segmentation a face: FacePreparer warps it into
        the aligned crop for the "mesh" parser, `HeadView.aligned_person`) and, with a learned
        parser, its hair mask (from `parse` when the face's head parse was made already, else
        from `hair_parser`'s own)."""
        matrix, size = head_transform(face.landmarks)
        crop = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
        valid = _in_photo(matrix, size, image.shape)
        mesh = face.mesh
        if mesh is not None:
            mesh = alignment.transform_points(mesh, matrix)
        elif self._parser.mean_mesh is not None:  # template pixels of the 112x96 crop
            mesh = (self._parser.mean_mesh.astype(np.float64) - HEAD_BOX[:2]) * HEAD_SCALE
        # zoomed 2x as before (mesh.SEGMENTER_ZOOM: 0.8 ms more a face): unzoomed, the mask's
        # edge moved and hair-colour accuracy fell from 70.2% to 69.5% (training/pixel_eval.py)
        person = self._parser.person_probability(crop)
        if parse is None and self.hair_parser is not None:
            parse = self.hair_parser.head_parse(image, face.landmarks)
        hair = None if parse is None else parse.photo_mask(("hair",), matrix, size) & valid
        return HeadView(crop, valid, mesh, np.where(valid, person, 0.0).astype(np.float32), hair)

    def hair(self, image: np.ndarray, face: Detection, view: HeadView | None = None) -> dict[str, float]:
        """hair_long, hair_short, hair_red of a face (empty when no mesh can place its regions;
        no length when the photo ends before the hair does)."""
        measured = self.measure_hair(image, face, view)
        if measured is None:
            return {}
        if measured.colour is None:  # no hair seen (bald, covered, or lost in the background):
            return {"hair_red": 0.0}   # no red hair to see; the length is unknown
        # red must be seen on the top of the head and beside the face; a part not seen halves
        # it (UNSEEN_PART): a red hat, a red wall above a head, a red scarf is one part only
        red = min([red_probability(measured.parts[p]) for p in HAIR_PARTS if p in measured.parts]
                  + [red_probability(measured.colour)])
        red *= UNSEEN_PART ** sum(p not in measured.parts for p in HAIR_PARTS)
        if measured.skin is not None:  # warm or coloured light (SKIN_CHROMA_MAX)
            red *= _sigmoid((SKIN_CHROMA_MAX - hue_chroma(measured.skin)[1]) / SKIN_CHROMA_SPREAD)
        values = {"hair_red": red * min(measured.contrast / MIN_CONTRAST, 1.0)}
        if measured.reach is not None:
            values |= length_probabilities(measured.reach)
        return values

    def measure_hair(self, image: np.ndarray, face: Detection, view: HeadView | None = None
                     ) -> HairMeasure | None:
        """The hair's median CIELAB colour and how far below the chin it reaches (the module's
        docstring), or None when no mesh can place the face's regions."""
        view = view or self.head(image, face)
        crop, valid, mesh = view.crop, view.valid, view.mesh
        if mesh is None:
            return None
        person = view.person > 0.5
        labels = self._parser.mesh_labels(crop, mesh, person=person)
        colours = lab(crop)
        # The skin's colour from the cheeks (between the eyes' and the mouth's rows of the
        # template: no bangs, brows or beard), the hair's from the crown (above the brows, over
        # the face's width: not the shoulders or the background beside the head).
        rows = np.arange(crop.shape[0])[:, None] / HEAD_SCALE + HEAD_BOX[1]  # in template units
        columns = np.arange(crop.shape[1])[None, :] / HEAD_SCALE + HEAD_BOX[0]
        small = np.ones((3, 3), np.uint8)
        skin = cv2.erode((labels == REGIONS.index("face_skin")).view(np.uint8), small).view(bool)
        skin &= (rows > TEMPLATE_EYES_Y) & (rows < TEMPLATE_MOUTH_Y)
        if np.count_nonzero(skin) < 20:
            return None
        skin_mean, skin_inverse = _gaussian(colours[skin])
        to_skin = _mahalanobis(colours, skin_mean, skin_inverse)
        hair_top = cv2.erode((labels == REGIONS.index("hair")).view(np.uint8), small).view(bool)
        hair_top &= to_skin >= SKIN_DISTANCE
        # The hair's colour: the hair region on the head, not beside the shoulders (from the
        # eyes down, at most HAIR_FALL_SHARE face widths out, in template units: 64 wide).
        on_head = (rows < TEMPLATE_EYES_Y) | (np.abs(columns - TEMPLATE_CENTRE_X) < HAIR_FALL_SHARE * TEMPLATE_FACE_WIDTH)
        # With the learned parser, its hair class (hats apart) without the skin-colour cut.
        coloured = hair_top if view.hair is None else cv2.erode(view.hair.view(np.uint8), small).view(bool)
        on_head = cv2.erode((coloured & on_head).view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
        chin_y = float(mesh[:, 1].max())
        brow_y = float(np.percentile(mesh[:, 1], 5))
        face_height = max(chin_y - brow_y, 1.0)
        skin_colour = np.median(colours[skin], axis=0)
        if np.count_nonzero(coloured) < MIN_HAIR_PIXELS:
            return HairMeasure(None, None, skin=skin_colour)
        colour = np.median(colours[on_head if np.count_nonzero(on_head) >= MIN_HAIR_PIXELS // 2 else coloured], axis=0)
        beside = np.abs(columns - TEMPLATE_CENTRE_X) > TEMPLATE_FACE_WIDTH / 2
        regions = {"top": on_head & (rows < TEMPLATE_BROWS_Y),  # HAIR_PARTS
                   "sides": on_head & (rows >= TEMPLATE_BROWS_Y) & (rows < TEMPLATE_MOUTH_Y) & beside}
        parts = {name: np.median(colours[region], axis=0) for name, region in regions.items()
                 if np.count_nonzero(region) >= MIN_HAIR_PIXELS // 3}
        around = ~person & valid & (rows < TEMPLATE_MOUTH_Y)
        contrast = (float(np.linalg.norm(colour - np.median(colours[around], axis=0)))
                    if np.count_nonzero(around) >= MIN_HAIR_PIXELS else 100.0)
        if np.count_nonzero(hair_top) < MIN_HAIR_PIXELS:  # hair of the skin's colour: not followed
            return HairMeasure(colour, None, parts, contrast, skin_colour)
        # The hair goes on through the person mask: pixels nearer the hair's colour than the
        # skin's, connected to the hair above the chin.
        hair_mean, hair_inverse = _gaussian(colours[hair_top])
        to_hair = _mahalanobis(colours, hair_mean, hair_inverse)
        near = (to_hair < to_skin) & (to_hair < SKIN_DISTANCE)
        face_parts = (labels != REGIONS.index("hair")) & (labels != REGIONS.index("background"))
        candidate = (person & near & ~face_parts) | hair_top
        count, components = cv2.connectedComponents(candidate.view(np.uint8), connectivity=8)
        touching = np.zeros(count, bool)  # the components holding hair above the chin
        touching[components[hair_top]] = True
        connected = touching[components]
        # From the eyes down, hair falls beside the face and the neck (below the chin not in
        # the neck band, in the middle: a collar or a shirt of the hair's colour sits there) and
        # not further out than HAIR_FALL_SHARE face widths (the shoulders are there).
        centre_x, face_width = float(mesh[:, 0].mean()), float(np.ptp(mesh[:, 0]))
        offset = np.abs(np.arange(connected.shape[1]) - centre_x)
        y = np.arange(connected.shape[0])
        # A neck covered in the hair's colour just under the chin is a collar, a scarf or a
        # dark top, not hair (hair falls beside the neck): what is below the chin cannot be told
        # from clothes, so the length is unknown unless the hair ends above the chin.
        neck = np.ix_((y > chin_y) & (y < chin_y + NECK_DEPTH * face_height), offset < NECK_SHARE * face_width)
        neck_covered = connected[neck].mean() > NECK_COVERED if connected[neck].size else False
        connected[np.ix_(y > chin_y, offset < NECK_SHARE * face_width)] = False
        connected[np.ix_(rows[:, 0] > TEMPLATE_EYES_Y, offset > HAIR_FALL_SHARE * face_width)] = False
        lowest = _run_end(connected.sum(axis=1) >= 2, max_gap=max(int(GAP_SHARE * face_height), 1))
        reach = ((lowest if lowest is not None else brow_y) - chin_y) / face_height
        photo_ends = (float(np.flatnonzero(valid.any(axis=1)).max()) - chin_y) / face_height
        if neck_covered and reach > 0.0:
            return HairMeasure(colour, None, parts, contrast, skin_colour)  # hair or clothes below the chin
        if reach < LONG_AT and photo_ends < LONG_AT + 0.1 and reach > photo_ends - 0.1:
            return HairMeasure(colour, None, parts, contrast, skin_colour)  # the photo ends before the hair
        return HairMeasure(colour, reach, parts, contrast, skin_colour)

    # --- eyes ------------------------------------------------------------------------------
    def eyes(self, image: np.ndarray, face: Detection) -> dict[str, float]:
        """eyes_blue, eyes_green, eyes_brown from the open, large enough eyes (the mean of their
        probabilities); empty when there is none or no face mesh."""
        mesh = face.mesh
        if mesh is None:
            return {}
        found = [self.iris_colour(image, mesh[list(contour)]) for contour in (MESH_LEFT_EYE, MESH_RIGHT_EYE)]
        found = [colour for colour in found if colour is not None]
        if not found:
            return {}
        probabilities = [eye_probabilities(colour) for colour in found]
        # how much the reading says: an iris colour far from every prototype (violet light,
        # glare, make-up) or one eye read alone (the other too small, shut or in shadow) is
        # drawn toward 0.5, what a face whose eyes cannot be read counts as in a query, so
        # the clearest eyes rank first
        reliability = float(np.mean([eye_reliability(colour) for colour in found]))
        reliability *= 1.0 if len(found) == 2 else ONE_EYE_RELIABILITY
        return {name: reliability * float(np.mean([p[name] for p in probabilities])) + (1.0 - reliability) * 0.5
                for name in EYE_PROTOTYPES}

    @staticmethod
    def iris_colour(image: np.ndarray, contour: np.ndarray) -> np.ndarray | None:
        """Median CIELAB colour of the iris inside an eye's lid contour ((16, 2) photo pixels, in
        order around the opening: corner, lower lid, corner, upper lid), or None when the eye is
        too small or too closed."""
        corner_a, corner_b = contour[0], contour[8]
        width = float(np.linalg.norm(corner_b - corner_a))
        opening = float(np.linalg.norm(contour[4] - contour[12]))
        if width < MIN_EYE_WIDTH or opening < MIN_EYE_OPENING * width:
            return None
        x0, y0 = np.floor(contour.min(0)).astype(int) - 1
        x1, y1 = np.ceil(contour.max(0)).astype(int) + 2
        height, image_width = image.shape[:2]
        if x0 < 0 or y0 < 0 or x1 > image_width or y1 > height:
            return None
        patch = image[y0:y1, x0:x1]
        mask = np.zeros(patch.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round((contour - [x0, y0]) * 4).astype(np.int32)], 1, shift=2)
        mask = cv2.erode(mask, np.ones((3, 3), np.uint8)).astype(bool)
        if mask.sum() < 12:
            return None
        colours = lab(patch)
        lightness = np.where(mask, colours[..., 0], np.nan)
        column_count = mask.sum(axis=0)
        column_mean = np.where(column_count > 0, np.nansum(lightness, axis=0) / np.maximum(column_count, 1), np.inf)
        band = max(int(round(IRIS_SHARE * width)), 3)
        windows = np.convolve(np.where(np.isfinite(column_mean), column_mean, 1e3), np.ones(band) / band, mode="valid")
        start = int(np.argmin(windows))
        iris = np.zeros_like(mask)
        iris[:, start:start + band] = True
        iris &= mask
        values = colours[iris]
        if len(values) < 8:
            return None
        low, high = np.percentile(values[:, 0], [15, 90])  # the pupil and lashes; highlights
        kept = values[(values[:, 0] >= low) & (values[:, 0] <= high)]
        colour = np.median(kept if len(kept) >= 4 else values, axis=0)
        # The sclera is white: its tint is the light's (a blue stage light, a warm lamp), taken
        # off the iris's a* and b* (a von Kries-like correction in CIELAB).
        # No white of the eye seen (covered, painted, in shadow), or light too coloured to
        # tell (a stage light): no eye colour.
        sclera = colours[mask & ~iris]
        if len(sclera) < 6:
            return None
        bright = sclera[sclera[:, 0] >= np.percentile(sclera[:, 0], 70)]
        white = np.median(bright, axis=0)
        tint = white[1:]
        if white[0] - colour[0] < MIN_SCLERA_CONTRAST or np.hypot(*tint) > SCLERA_TINT_MAX:
            return None
        return colour - np.array([0.0, *tint])


def _run_end(rows: np.ndarray, max_gap: int) -> int | None:
    """The last row of the first run of True rows (gaps of at most `max_gap` rows bridged), or
    None when no row is True."""
    found = np.flatnonzero(rows)
    if not len(found):
        return None
    breaks = np.flatnonzero(np.diff(found) > max_gap + 1)
    return int(found[breaks[0]] if len(breaks) else found[-1])


def _gaussian(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (3,) and inverse covariance (3, 3) of CIELAB samples (n, 3), regularised."""
    mean = samples.mean(0)
    covariance = np.cov(samples.T) + np.eye(3) * 4.0 if len(samples) > 3 else np.eye(3) * 25.0
    # OpenCV's inverse: LAPACK's threads cost milliseconds for a 3x3 on a busy machine
    return mean, cv2.invert(covariance.astype(np.float64), flags=cv2.DECOMP_CHOLESKY)[1]


def _mahalanobis(colours: np.ndarray, mean: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of every pixel (..., 3) to a Gaussian."""
    centred = np.ascontiguousarray(colours - mean.astype(np.float32), dtype=np.float32)
    # (x A) . x summed over the 3 channels: the quadratic form, as two per-pixel matrix products
    # in OpenCV (5x faster than numpy's matmul and channel sum on a head crop's pixels)
    image = centred.reshape(-1, 1, 3) if centred.ndim != 3 else centred
    product = cv2.transform(image, inverse.astype(np.float32))
    squared = cv2.transform(product * image, np.ones((1, 3), np.float32))
    return np.sqrt(np.maximum(squared, 0.0)).reshape(centred.shape[:-1])


__all__ = ["PixelMeasurer", "HeadView", "with_classes", "eye_probabilities", "eye_reliability", "length_probabilities", "red_probability"]
