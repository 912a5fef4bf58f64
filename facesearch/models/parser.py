"""Our face parser (the patent's facial segmentation module), run in numpy: a head crop in, a
map of 12 classes out.

A compact encoder-decoder (about 0.27 M parameters, ~77 M multiply-adds a face) trained by
training/parser_train.py on labels of the 19-class BiSeNet face parser (training/parser_teacher.py,
the teacher; training-time only). The shipped weights are float16 safetensors
(weights/parser.safetensors, model card: weights/MODEL_CARD.md, "Face parser"); this file runs
them in float32 without torch, each batch norm folded into its convolution, and
tests/test_parser.py checks it against the torch network.

Layout (ARCHITECTURE; every convolution 3x3 without bias, then batch norm and ReLU):

    input (128, 128, 3) RGB, (x / 255 - 0.5) / 0.25
    stem 3->16 /2, enc1 16->16                       64 x 64   (skip 1)
    down2 16->32 /2, enc2 32->32                     32 x 32   (skip 2)
    down3 32->64 /2, enc3 64->64                     16 x 16   (skip 3)
    down4 64->96 /2, enc4 96->96                      8 x 8
    + context: the global mean of enc4 through a 1x1 convolution (BN, ReLU), added everywhere
    up3: 1x1 96->64, nearest x2, + skip 3, 3x3 -> 48  16 x 16
    up2: 1x1 48->32, nearest x2, + skip 2, 3x3 -> 32  32 x 32
    up1: 1x1 32->16, nearest x2, + skip 1, 3x3 -> 16  64 x 64
    head: 1x1 convolution (with bias) to the 12 classes at 64 x 64

(The decoder adds the skips after a 1x1 reduction at the lower resolution rather than
concatenating them: 3x3 convolutions of few channels at 64 x 64 are what costs in numpy.)

The class scores are at half the crop's side; a score pixel (i, j) sits at crop pixel
(2i + 0.5, 2j + 0.5), so bilinear resampling with half-pixel centres (cv2, or torch's
align_corners=False) brings them to any grid.

    net = load_parser()                       # FaceSearchError when the weights are missing
    scores = net(head_crops)                  # (B, 128, 128, 3) uint8 -> (B, 64, 64, 12) float32
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.models.shipped import WEIGHTS_DIR
from facesearch.models.threads import one_blas_thread
from facesearch.spec import REGIONS

PARSER_FILE = WEIGHTS_DIR / "parser.safetensors"
#: The parser's classes, in its output order. The teacher's 19 are merged: left and right brows,
#: eyes and ears; mouth and both lips ("lips"); earrings with the ears; a necklace with the neck.
PARSER_CLASSES: tuple[str, ...] = ("background", "skin", "eyebrows", "eyes", "nose", "lips",
                                   "hair", "hat", "glasses", "ears", "neck", "cloth")
#: The region (spec.REGIONS) each parser class counts in. A hat counts as hair and the neck as
#: background, as the "mesh" parser draws them (the person above the chin outside the face oval
#: is hair); ears and glasses frames are face skin (the teacher marks the eyes behind glasses).
REGION_OF_CLASS: dict[str, str] = {
    "background": "background", "skin": "face_skin", "eyebrows": "eyebrows", "eyes": "eyes",
    "nose": "nose", "lips": "lips", "hair": "hair", "hat": "hair", "glasses": "face_skin",
    "ears": "face_skin", "neck": "background", "cloth": "background"}
#: Index into spec.REGIONS of each parser class, in PARSER_CLASSES order.
REGION_INDEX = np.array([REGIONS.index(REGION_OF_CLASS[name]) for name in PARSER_CLASSES])
#: The head crop's side the parser reads (pixels), and its output stride.
PARSER_SIDE = 128
OUTPUT_STRIDE = 2
#: Input normalisation: (x / 255 - INPUT_MEAN) / INPUT_STD, every channel.
INPUT_MEAN = 0.5
INPUT_STD = 0.25
#: The layers: (name, input channels, output channels, stride) of the encoder's 3x3 convolutions.
ENCODER: tuple[tuple[str, int, int, int], ...] = (
    ("stem", 3, 16, 2), ("enc1", 16, 16, 1), ("down2", 16, 32, 2), ("enc2", 32, 32, 1),
    ("down3", 32, 64, 2), ("enc3", 64, 64, 1), ("down4", 64, 96, 2), ("enc4", 96, 96, 1))
#: The decoder's steps: (name, the encoder layer whose output is added after upsampling, output
#: channels of its 3x3 convolution). Each has a 1x1 convolution "<name>_reduce" to the skip's
#: channels before the upsampling.
DECODER: tuple[tuple[str, str, int], ...] = (("up3", "enc3", 48), ("up2", "enc2", 32),
                                             ("up1", "enc1", 16))
CONTEXT = "context"
HEAD = "head"
#: torch.nn.BatchNorm2d's default epsilon (what the network was trained with).
BATCH_NORM_EPS = 1e-5
#: Faces per numpy forward pass (larger batches outgrow the CPU caches).
BATCH = 4


class _FoldedConv:
    """A bias-free convolution (1x1 or 3x3, padding 1) with its batch norm folded in, NHWC."""

    def __init__(self, tensors: dict[str, np.ndarray], name: str, stride: int = 1):
        weight = tensors[f"{name}.0.weight"]
        scale = tensors[f"{name}.1.weight"] / np.sqrt(tensors[f"{name}.1.running_var"] + BATCH_NORM_EPS)
        self.bias = (tensors[f"{name}.1.bias"] - tensors[f"{name}.1.running_mean"] * scale).astype(np.float32)
        out_ch, _, self.kernel, _ = weight.shape
        weight = weight * scale[:, None, None, None]
        # (O, C, k, k) -> (k*k*C, O): patches in (i, j, c) order
        self.weight = np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, out_ch), np.float32)
        self.stride = stride

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kernel == 1:
            y = x @ self.weight
        else:
            _, height, width, _ = x.shape
            s = self.stride
            out_h, out_w = (height - 1) // s + 1, (width - 1) // s + 1
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            windows = [padded[:, i:i + s * out_h:s, j:j + s * out_w:s] for i in range(3) for j in range(3)]
            y = np.concatenate(windows, axis=-1) @ self.weight
        y += self.bias
        return np.maximum(y, 0.0, out=y)


def _upsample2(x: np.ndarray) -> np.ndarray:
    """Nearest-neighbour x2 upsampling of an NHWC array (torch's F.interpolate 'nearest')."""
    return x.repeat(2, axis=1).repeat(2, axis=2)


class NumpyParserNet:
    """The parser's eval-mode forward in numpy, from its state dict (any float dtype; computed in
    float32). Raises KeyError when the weights lack a layer it needs."""

    def __init__(self, tensors: dict[str, np.ndarray]):
        t = {key: np.asarray(value, dtype=np.float32) for key, value in tensors.items()
             if not key.endswith("num_batches_tracked")}
        self.encoder = [(name, _FoldedConv(t, f"convs.{name}", stride))
                        for name, _, _, stride in ENCODER]
        self.context = _FoldedConv(t, f"convs.{CONTEXT}")
        self.decoder = [(skip, _FoldedConv(t, f"convs.{name}_reduce"), _FoldedConv(t, f"convs.{name}"))
                        for name, skip, _ in DECODER]
        self.head_weight = np.ascontiguousarray(t[f"{HEAD}.weight"][:, :, 0, 0].T)
        self.head_bias = t[f"{HEAD}.bias"]

    def scores(self, crops: np.ndarray) -> np.ndarray:
        """(B, 128, 128, 3) uint8 RGB head crops -> class scores (logits) (B, 64, 64, 12) float32."""
        x = (np.asarray(crops, np.float32) * np.float32(1 / 255) - INPUT_MEAN) / INPUT_STD
        outputs = {}
        for name, conv in self.encoder:
            x = conv(x)
            outputs[name] = x
        x = x + self.context(x.mean(axis=(1, 2), keepdims=True))
        for skip, reduce, conv in self.decoder:
            x = conv(_upsample2(reduce(x)) + outputs[skip])
        return x @ self.head_weight + self.head_bias

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """As `scores`, in batches of BATCH faces."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (PARSER_SIDE, PARSER_SIDE, 3):
            raise FaceSearchError(f"the face parser takes (B, {PARSER_SIDE}, {PARSER_SIDE}, 3) "
                                  f"head crops, not {crops.shape}")
        with one_blas_thread():  # BLAS's spinning threads would take the other stages' CPU
            return np.concatenate([self.scores(crops[i:i + BATCH]) for i in range(0, len(crops), BATCH)])


def load_parser_file(path: Path) -> NumpyParserNet:
    """The numpy parser of a safetensors weights file (read without torch); FaceSearchError when
    the file is missing."""
    if not Path(path).is_file():
        raise FaceSearchError(f"face parser weights not found at {path} (the 'learned' parser "
                              "needs them: python -m facesearch.training.parser_train --export)")
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as stored:
        return NumpyParserNet({key: stored.get_tensor(key) for key in stored.keys()})


@lru_cache(maxsize=1)
def load_parser() -> NumpyParserNet:
    """The shipped parser (PARSER_FILE), loaded once per process."""
    return load_parser_file(PARSER_FILE)
