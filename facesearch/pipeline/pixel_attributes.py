"""Attributes read from a face's pixels rather than predicted by the network (spec.PIXEL_ATTRIBUTES):
hair length (hair_long, hair_short), red hair (hair_red: red, auburn, ginger) and eye colour
(eyes_blue, eyes_green, eyes_brown), each a probability in 0..1.

    measurer = PixelMeasurer()                       # one per thread (mediapipe graphs)
    measurer.measure(pixels, detection)              # {"hair_long": 0.93, ..., "eyes_brown": 0.81}

Hair. The head and shoulders are cut out of the decoded photo around the aligned face (HEAD_BOX,
in the aligned crop's template units, resampled to HEAD_SCALE pixels a unit: eyes 21 px apart;
wider than the 112x96 crop, which ends at the chin) and cut into regions by the "mesh" parser
(pipeline/parse/mesh.py: face-mesh polygons and the person mask). The skin's colour is read on
the cheeks (face skin between the eyes' and the mouth's rows), the hair's on the head: the
parser's hair region (from the eyes down not further out than HAIR_FALL_SHARE face widths: not
the shoulders), less skin-coloured pixels (Mahalanobis distance in CIELAB).

Red/auburn/ginger hair is the hue/chroma corner of CIELAB that brown, blond, black and grey hair
do not reach (`red_probability`, placed with CelebA's hair-colour labels: see the constants); it
must hold on the top of the head and beside the face alike (HAIR_PARTS; a part not seen counts
as 0.5: a red hat is one part only), the hair must differ from the background around the head (MIN_CONTRAST: a red wall
seen through the person mask's edge), and once the network's classes are known, `with_classes`
scales it by the chance that hair shows at all (no hat, not bald).

Length: the hair grows down through the person mask by colour (pixels nearer the hair's colour
than the skin's, connected to the hair above the chin; from the eyes down only beside the face
and neck, not out on the shoulders) and is followed from the top of the head down while it
lasts: how far below the chin it reaches, in face heights (chin minus brows), says long or
short. Where the photo ends before the hair does, or no hair is seen at all (bald, covered,
lost in a background of its colour), the length is unknown (no keys; a head the network calls
bald is short-haired, `with_classes`).

Eyes. At the photo's full resolution, inside each eye's opening (the face mesh's eyelid contour),
the iris is the darkest vertical band of the iris's expected width (IRIS_SHARE of the eye's
width; the gaze moves it), less highlights and the pupil; its median colour in CIELAB, less the
tint of the sclera (white under neutral light; no colour when the sclera is not seen or the light
is too coloured), is compared with colour prototypes
(EYE_PROTOTYPES). Eyes narrower than MIN_EYE_WIDTH pixels or less open than MIN_EYE_OPENING, and
eyes behind eyeglasses (the network's Eyeglasses > 0.5, `with_classes`), give no eye colour: the
keys are then absent (a stored face has NULL there, and a text query ranks it as unknown, 0.5).

Faces without a face mesh (another detector, a mesh not found) get hair attributes from the
mean mesh and no eye colour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import cv2
import numpy as np

from facesearch.pipeline import alignment
from facesearch.pipeline.detect.base import Detection
from facesearch.pipeline.detect.mediapipe import MESH_LEFT_EYE, MESH_RIGHT_EYE
from facesearch.spec import REGIONS

if TYPE_CHECKING:
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
#: The parts of the hair whose colours red hair must agree in (HairMeasure.parts).
HAIR_PARTS = ("top", "sides")
#: Hair within this colour difference (CIE76 delta E) of the background around the head may be
#: the background seen through the person mask's edge: hair_red is scaled by contrast / this.
MIN_CONTRAST = 20.0

# --- hair length ---------------------------------------------------------------------------
#: Hair reaching this many face heights below the chin is long (shoulders: about 0.6) ...
LONG_AT = 0.45
#: ... and hair ending this far above the chin (ears, neck line) or higher is short.
SHORT_AT = -0.1
LENGTH_SPREAD = 0.2
#: Below the chin, hair counts only outside the neck band: |x - face centre| < this share of the
#: face's width (a collar or shirt of the hair's colour sits under the chin, hair beside the neck).
NECK_SHARE = 0.3
#: ... and not further out than this many face widths from its centre (the shoulders).
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


def lab(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., 3) -> CIELAB float32 (..., 3): L* 0..100, a*, b* about -128..127."""
    shape = pixels.shape
    flat = np.asarray(pixels, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(shape)


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
    red hair: on CelebA, hats were a third of the reddest "hair" before); behind eyeglasses
    (P > 0.5: sunglasses, reflections) the eye colour is dropped; a bald head (P(Bald) > 0.5)
    has short hair (hair_short at least P(Bald), hair_long at most 1 - P(Bald))."""
    values = dict(values)
    if classes.get("Eyeglasses", 0.0) > 0.5:  # behind glasses (sunglasses) no eye colour is read
        for name in EYE_PROTOTYPES:
            values.pop(name, None)
    bald = classes.get("Bald", 0.0)
    if bald > 0.5:  # a bald head has short hair, whatever the pixels said of its length
        values |= {"hair_short": round(max(values.get("hair_short", 0.0), bald), 4),
                   "hair_long": round(min(values.get("hair_long", 1.0), 1.0 - bald), 4)}
    if "hair_red" not in values:
        return values
    seen = (1.0 - classes.get("Wearing_Hat", 0.0)) * (1.0 - bald)
    return values | {"hair_red": round(values["hair_red"] * seen, 4)}


def head_transform(landmarks: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """(2x3 matrix from photo pixels to the head crop, (width, height) of the crop)."""
    matrix = alignment.template_transform(landmarks)
    x0, y0, x1, y1 = HEAD_BOX
    shift = np.array([[HEAD_SCALE, 0, -x0 * HEAD_SCALE], [0, HEAD_SCALE, -y0 * HEAD_SCALE]])
    head = shift @ np.vstack([matrix, [0, 0, 1]])
    return head, (round((x1 - x0) * HEAD_SCALE), round((y1 - y0) * HEAD_SCALE))


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


class PixelMeasurer:
    """Measures spec.PIXEL_ATTRIBUTES of faces in a photo. Models load on first use; one instance
    per thread (mediapipe graphs are not shared)."""

    def __init__(self, parser: MeshParser | None = None):
        """`parser`: a "mesh" parser of this thread to share (its person segmenter loads once);
        default: one of its own, made on first use."""
        self._given_parser = parser

    @cached_property
    def _parser(self) -> MeshParser:
        from facesearch.pipeline.parse.mesh import MeshParser

        return self._given_parser or MeshParser()

    def measure(self, image: np.ndarray, face: Detection) -> dict[str, float]:
        """The pixel attributes of one face of an (H, W, 3) uint8 RGB photo, its detection in the
        photo's pixels: hair_long, hair_short, hair_red whenever the face's regions can be placed;
        eyes_* only when at least one eye is open and large enough (see the module's docstring).
        Values rounded to 4 places."""
        values = self.hair(image, face)
        values |= self.eyes(image, face)
        return {name: round(float(value), 4) for name, value in values.items()}

    # --- hair ------------------------------------------------------------------------------
    def head(self, image: np.ndarray, face: Detection):
        """(head crop (h, w, 3) uint8, valid (h, w) bool: inside the photo, mesh in crop pixels)."""
        matrix, size = head_transform(face.landmarks)
        crop = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
        valid = cv2.warpAffine(np.ones(image.shape[:2], np.uint8), matrix, size, flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT).astype(bool)
        mesh = face.mesh
        if mesh is not None:
            mesh = alignment.transform_points(mesh, matrix)
        else:
            mean = self._parser.mean_mesh  # template pixels of the 112x96 crop
            if mean is None:
                return crop, valid, None
            x0, y0 = HEAD_BOX[:2]
            mesh = (mean.astype(np.float64) - [x0, y0]) * HEAD_SCALE
        return crop, valid, mesh

    def hair(self, image: np.ndarray, face: Detection) -> dict[str, float]:
        """hair_long, hair_short, hair_red of a face (empty when no mesh can place its regions;
        no length when the photo ends before the hair does)."""
        measured = self.measure_hair(image, face)
        if measured is None:
            return {}
        if measured.colour is None:  # no hair seen (bald, covered, or lost in the background):
            return {"hair_red": 0.0}   # no red hair to see; the length is unknown
        # red must be seen on the top of the head and beside the face; a part not seen counts
        # as unknown (0.5): a red hat, a red wall above a head, a red scarf is one part only
        red = min([red_probability(measured.parts[p]) if p in measured.parts else 0.5 for p in HAIR_PARTS]
                  + [red_probability(measured.colour)])
        values = {"hair_red": red * min(measured.contrast / MIN_CONTRAST, 1.0)}
        if measured.reach is not None:
            values |= length_probabilities(measured.reach)
        return values

    def measure_hair(self, image: np.ndarray, face: Detection) -> HairMeasure | None:
        """The hair's median CIELAB colour and how far below the chin it reaches (the module's
        docstring), or None when no mesh can place the face's regions."""
        crop, valid, mesh = self.head(image, face)
        if mesh is None:
            return None
        person = self._parser.person_mask(crop) & valid
        masks = self._parser.mesh_masks(crop, mesh, person=person).astype(bool)
        colours = lab(crop)
        # The skin's colour from the cheeks (between the eyes' and the mouth's rows of the
        # template: no bangs, brows or beard), the hair's from the crown (above the brows, over
        # the face's width: not the shoulders or the background beside the head).
        rows = np.arange(crop.shape[0])[:, None] / HEAD_SCALE + HEAD_BOX[1]  # in template units
        columns = np.arange(crop.shape[1])[None, :] / HEAD_SCALE + HEAD_BOX[0]
        skin = cv2.erode(masks[REGIONS.index("face_skin")].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        skin &= (rows > TEMPLATE_EYES_Y) & (rows < TEMPLATE_MOUTH_Y)
        if skin.sum() < 20:
            return None
        skin_mean, skin_inverse = _gaussian(colours[skin])
        to_skin = _mahalanobis(colours, skin_mean, skin_inverse)
        hair_top = cv2.erode(masks[REGIONS.index("hair")].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        hair_top &= to_skin >= SKIN_DISTANCE
        # The hair's colour: the hair region on the head, not beside the shoulders (from the
        # eyes down, at most HAIR_FALL_SHARE face widths out, in template units: 64 wide).
        on_head = (rows < TEMPLATE_EYES_Y) | (np.abs(columns - TEMPLATE_CENTRE_X) < HAIR_FALL_SHARE * TEMPLATE_FACE_WIDTH)
        on_head = cv2.erode((hair_top & on_head).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        chin_y = float(mesh[:, 1].max())
        brow_y = float(np.percentile(mesh[:, 1], 5))
        face_height = max(chin_y - brow_y, 1.0)
        if hair_top.sum() < MIN_HAIR_PIXELS:
            return HairMeasure(None, None)
        colour = np.median(colours[on_head if on_head.sum() >= MIN_HAIR_PIXELS // 2 else hair_top], axis=0)
        beside = np.abs(columns - TEMPLATE_CENTRE_X) > TEMPLATE_FACE_WIDTH / 2
        regions = {"top": on_head & (rows < TEMPLATE_BROWS_Y),  # HAIR_PARTS
                   "sides": on_head & (rows >= TEMPLATE_BROWS_Y) & (rows < TEMPLATE_MOUTH_Y) & beside}
        parts = {name: np.median(colours[region], axis=0) for name, region in regions.items()
                 if region.sum() >= MIN_HAIR_PIXELS // 3}
        around = ~person & valid & (rows < TEMPLATE_MOUTH_Y)
        contrast = (float(np.linalg.norm(colour - np.median(colours[around], axis=0)))
                    if around.sum() >= MIN_HAIR_PIXELS else 100.0)
        # The hair goes on through the person mask: pixels nearer the hair's colour than the
        # skin's, connected to the hair above the chin.
        hair_mean, hair_inverse = _gaussian(colours[hair_top])
        to_hair = _mahalanobis(colours, hair_mean, hair_inverse)
        near = (to_hair < to_skin) & (to_hair < SKIN_DISTANCE)
        face_parts = masks[[REGIONS.index(r) for r in ("face_skin", "eyes", "eyebrows", "lips", "nose")]].any(0)
        candidate = (person & near & ~face_parts) | hair_top
        _, labels = cv2.connectedComponents(candidate.astype(np.uint8), connectivity=8)
        connected = np.isin(labels, np.unique(labels[hair_top]))
        # From the eyes down, hair falls beside the face and the neck (below the chin not in
        # the neck band, in the middle: a collar or a shirt of the hair's colour sits there) and
        # not further out than HAIR_FALL_SHARE face widths (the shoulders are there).
        centre_x, face_width = float(mesh[:, 0].mean()), float(np.ptp(mesh[:, 0]))
        offset = np.abs(np.arange(connected.shape[1]) - centre_x)
        y = np.arange(connected.shape[0])
        connected[np.ix_(y > chin_y, offset < NECK_SHARE * face_width)] = False
        connected[np.ix_(rows[:, 0] > TEMPLATE_EYES_Y, offset > HAIR_FALL_SHARE * face_width)] = False
        lowest = _run_end(connected.sum(axis=1) >= 2, max_gap=max(int(GAP_SHARE * face_height), 1))
        reach = ((lowest if lowest is not None else brow_y) - chin_y) / face_height
        photo_ends = (float(np.flatnonzero(valid.any(axis=1)).max()) - chin_y) / face_height
        if reach < LONG_AT and photo_ends < LONG_AT + 0.1 and reach > photo_ends - 0.1:
            return HairMeasure(colour, None, parts, contrast)  # the photo ends before the hair
        return HairMeasure(colour, reach, parts, contrast)

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
        return {name: float(np.mean([p[name] for p in probabilities])) for name in EYE_PROTOTYPES}

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
    centred = (colours - mean).astype(np.float32)
    # (x A) . x summed over the 3 channels: the quadratic form, several times faster than a
    # three-operand einsum on a head crop's pixels
    return np.sqrt(np.maximum(((centred @ inverse.astype(np.float32)) * centred).sum(axis=-1), 0.0))


__all__ = ["PixelMeasurer", "with_classes", "eye_probabilities", "length_probabilities", "red_probability"]
