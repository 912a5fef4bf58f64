"""The descriptor network's forward pass (models/network.py: DescriptorNet in eval mode) in numpy.

Describing a photo runs this, so that a query with a new photo does not import torch (about
1.5-3 s of a cold start on 2 cores) nor build the torch module: the weights are read from the
same safetensors file (float16, computed in float32), each batch norm folded into the layer
before it. Same inputs, same outputs as `DescriptorNet.forward`: master vectors (B, 364) and
logits (B, N_LOGITS); tests/test_descriptor_numpy.py checks them against torch (max abs
difference ~1e-5 on real faces). Training and evaluation keep the torch network. The shipped
model runs the backbone's convolutions (`features`) on onnxruntime instead
(models/descriptor_onnx.py, `NumpyDescriptorNet.backbone`: the same folded weights, ~4x less CPU).

Layout (channels, widths) is read from the weights' shapes; the stages' strides and the input
normalisation from models/network_layout.py.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from facesearch.models.network_layout import (AGE_GROUP_MEANS, AGE_TOP_SHARE, AGE_YOUNG_EVIDENCE, AGE_YOUNG_WEIGHT,
                                              HEADS, IMAGENET_MEAN, IMAGENET_STD, MOBILENET_STAGES)
from facesearch.spec import REGION_DIM, REGIONS, unit_blocks

#: Faces per forward pass. With the backbone on onnxruntime (`NumpyDescriptorNet.backbone`), CPU
#: ms a face, mirror averaging and emotions included, one BLAS thread, same run: 4.7 in batches
#: of 4, 3.8 at 8, 3.3 at 16 (the numpy backbone: 13.6 at 4, 15.9 at 16; its larger batches
#: outgrew the CPU caches).
BATCH = 16
#: torch.nn.BatchNorm's default epsilon (what the network was trained with).
BATCH_NORM_EPS = 1e-5


def _batch_norm(tensors: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) of an eval-mode batch norm: y = x * scale + shift."""
    scale = tensors[f"{prefix}.weight"] / np.sqrt(tensors[f"{prefix}.running_var"] + BATCH_NORM_EPS)
    return scale, tensors[f"{prefix}.bias"] - tensors[f"{prefix}.running_mean"] * scale


class _Conv:
    """A bias-free conv (1x1, 3x3 full or 3x3 depthwise) with its batch norm folded in, NHWC."""

    def __init__(self, weight: np.ndarray, norm: tuple[np.ndarray, np.ndarray], stride: int,
                 relu6: bool):
        scale, shift = norm
        out_ch, in_per_group, kh, _ = weight.shape
        self.depthwise = in_per_group == 1 and kh == 3
        self.kernel = kh
        weight = weight * scale[:, None, None, None]
        if self.depthwise:       # (C, 1, 3, 3) -> (3, 3, C)
            self.weight = np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))
        else:                    # (O, C, k, k) -> (k*k*C, O), patches in (i, j, c) order
            self.weight = np.ascontiguousarray(weight.transpose(2, 3, 1, 0).reshape(-1, out_ch))
        self.bias = shift.astype(np.float32)
        self.stride = stride
        self.relu6 = relu6

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (B, H, W, C) float32 -> (B, H', W', out channels) float32. Computed in place where
        it can be (a new array per tap cost page faults) and 1x1 convs as one 2-d matmul (numpy
        runs an N-d matmul as one small GEMM per row of pixels)."""
        if self.kernel == 1:
            y = (x.reshape(-1, x.shape[-1]) @ self.weight).reshape(*x.shape[:-1], -1)
        else:
            batch, height, width, channels = x.shape
            s = self.stride
            out_h, out_w = (height - 1) // s + 1, (width - 1) // s + 1
            padded = np.zeros((batch, height + 2, width + 2, channels), np.float32)
            padded[:, 1:-1, 1:-1] = x
            windows = [padded[:, i:i + s * out_h:s, j:j + s * out_w:s] for i in range(3) for j in range(3)]
            if self.depthwise:
                y = windows[0] * self.weight[0, 0]
                product = np.empty_like(y)
                for n, window in enumerate(windows[1:], start=1):
                    y += np.multiply(window, self.weight[n // 3, n % 3], out=product)
            else:
                y = np.concatenate(windows, axis=-1) @ self.weight
        y += self.bias
        if self.relu6:
            np.maximum(y, 0.0, out=y)
            np.minimum(y, 6.0, out=y)
        return y


class NumpyDescriptorNet:
    """DescriptorNet's eval-mode forward in numpy, from its state dict (numpy arrays, any float
    dtype; computed in float32). Raises KeyError when the weights lack a layer it needs."""

    #: What runs `features` instead of numpy when set: images (B, 3, 112, 96) -> (B, 7, 6, 96)
    #: NHWC, the same convolutions (DescriptorModel sets models/descriptor_onnx.py's, on
    #: onnxruntime: about 4x less CPU); None: numpy (`numpy_features`).
    backbone: Callable[[np.ndarray], np.ndarray] | None = None

    def __init__(self, tensors: dict[str, np.ndarray]):
        t = {key: np.asarray(value, dtype=np.float32) for key, value in tensors.items()
             if not key.endswith("num_batches_tracked")}
        self.mean = np.asarray(IMAGENET_MEAN, np.float32)
        self.std = np.asarray(IMAGENET_STD, np.float32)
        self.stem = _Conv(t["backbone.0.0.weight"], _batch_norm(t, "backbone.0.1"), 2, True)
        self.blocks: list[tuple[list[_Conv], bool]] = []
        index, in_ch = 1, t["backbone.0.0.weight"].shape[0]
        for expansion, out_ch, repeats, stride in MOBILENET_STAGES:
            for repeat in range(repeats):
                p = f"backbone.{index}.conv"
                step = stride if repeat == 0 else 1
                if expansion == 1:
                    convs = [_Conv(t[f"{p}.0.0.weight"], _batch_norm(t, f"{p}.0.1"), step, True),
                             _Conv(t[f"{p}.1.weight"], _batch_norm(t, f"{p}.2"), 1, False)]
                else:
                    convs = [_Conv(t[f"{p}.0.0.weight"], _batch_norm(t, f"{p}.0.1"), 1, True),
                             _Conv(t[f"{p}.1.0.weight"], _batch_norm(t, f"{p}.1.1"), step, True),
                             _Conv(t[f"{p}.2.weight"], _batch_norm(t, f"{p}.3"), 1, False)]
                self.blocks.append((convs, step == 1 and in_ch == out_ch))
                index, in_ch = index + 1, out_ch
        self.maps = _Conv(t["maps.0.weight"], _batch_norm(t, "maps.1"), 1, True)
        # region networks F_k: einsum, batch norm over the 7 x 128 hidden units, ReLU, einsum
        self.w1, self.b1 = t["regions.w1"], t["regions.b1"]
        self.norm = _batch_norm(t, "regions.norm")
        self.w2, self.b2 = t["regions.w2"], t["regions.b2"]
        self.vector_classifier = self._linear_stack(t, "vector_classifier", (0, 1), 3)
        self.classifier = self._linear_stack(t, "classifier", (2, 3), 6)
        #: Each age group's mean training age (network_layout.AGE_GROUP_MEANS), None before it.
        self.age_group_means: np.ndarray | None = t.get(AGE_GROUP_MEANS)
        #: The oldest group's share of the age head's excess (network_layout.AGE_TOP_SHARE).
        self.age_top_share = float(t[AGE_TOP_SHARE][0]) if AGE_TOP_SHARE in t else 0.0
        #: The Young attribute's evidence on the age groups (network_layout.AGE_YOUNG_EVIDENCE,
        #: (2, len(AGE_GROUPS))) and its weight; None and 0 before it.
        self.age_young_evidence: np.ndarray | None = t.get(AGE_YOUNG_EVIDENCE)
        self.age_young_weight = float(t[AGE_YOUNG_WEIGHT][0]) if AGE_YOUNG_WEIGHT in t else 0.0

    @staticmethod
    def _linear_stack(t: dict[str, np.ndarray], prefix: str, first: tuple[int, int], last: int):
        """Linear -> batch norm -> ReLU -> Linear (dropout is the identity in eval mode), folded:
        (w1, b1, w2, b2) with y = relu(x @ w1 + b1) @ w2 + b2."""
        linear, norm = first
        scale, shift = _batch_norm(t, f"{prefix}.{norm}")
        w1 = t[f"{prefix}.{linear}.weight"].T * scale
        b1 = t[f"{prefix}.{linear}.bias"] * scale + shift
        return w1, b1, t[f"{prefix}.{last}.weight"].T.copy(), t[f"{prefix}.{last}.bias"]

    @staticmethod
    def _run_stack(x: np.ndarray, stack) -> np.ndarray:
        w1, b1, w2, b2 = stack
        return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2

    def features(self, images: np.ndarray) -> np.ndarray:
        """images (B, 3, 112, 96) in [0, 1] -> backbone features (B, 7, 6, 96) NHWC float32, run by
        `backbone` when set, else in numpy (`numpy_features`)."""
        backbone = self.backbone
        return backbone(images) if backbone is not None else self.numpy_features(images)

    def numpy_features(self, images: np.ndarray) -> np.ndarray:
        """`features` computed in numpy (the reference the onnxruntime graph is checked against)."""
        x = (np.asarray(images, np.float32).transpose(0, 2, 3, 1) - self.mean) / self.std
        x = self.stem(np.ascontiguousarray(x))
        for convs, residual in self.blocks:
            y = x
            for conv in convs:
                y = conv(y)
            x = x + y if residual else y
        return x

    def __call__(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (B, 3, 112, 96) float in [0, 1]; masks (B, 7, 7, 6) -> master vectors (B, 364)
        float32 (7 unit blocks) and logits (B, N_LOGITS) float32, as DescriptorNet.forward."""
        vectors, logits, _ = self.outputs(images, masks)
        return vectors, logits

    def outputs(self, images: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As __call__, plus the backbone features the attribute classifier reads, flattened as
        torch flattens them (B, 96 x 7 x 6 = 4032, NCHW order) float32: the emotion head
        (models/emotion.py) reads them too, at no extra cost of the network."""
        features = self.features(images)                                  # (B, 7, 6, 96)
        batch = len(features)
        maps = self.maps(features).transpose(0, 3, 1, 2)                  # (B, 78, 7, 6)
        stacks = maps[:, None] * np.asarray(masks, np.float32)[:, :, None]  # (B, 7, 78, 7, 6)
        # per region r: (B, 78*7*6) @ (78*7*6, 128), as one batched matmul (BLAS; np.einsum's
        # own loop took a quarter of the forward: 5 of 19 CPU ms a face)
        by_region = stacks.reshape(batch, len(REGIONS), -1).transpose(1, 0, 2)  # (7, B, 3276)
        hidden = np.matmul(by_region, self.w1).transpose(1, 0, 2) + self.b1     # (B, 7, 128)
        scale, shift = self.norm
        hidden = np.maximum(hidden.reshape(batch, -1) * scale + shift, 0.0).reshape(batch, len(REGIONS), -1)
        blocks = np.matmul(hidden.transpose(1, 0, 2), self.w2).transpose(1, 0, 2) + self.b2  # (B, 7, 52)
        vectors = unit_blocks(blocks.reshape(batch, len(REGIONS) * REGION_DIM).astype(np.float32))
        vector_logits = self._run_stack(vectors, self.vector_classifier)
        flat = features.transpose(0, 3, 1, 2).reshape(batch, -1)          # NCHW flatten, as torch
        attribute_logits = self._run_stack(flat, self.classifier)
        logits = np.concatenate([attribute_logits, vector_logits[:, HEADS["celeba"].stop:]], axis=1)
        return vectors, logits.astype(np.float32), flat.astype(np.float32, copy=False)


def load_numpy_network(weights: Path) -> NumpyDescriptorNet:
    """The numpy network of a safetensors weights file (read without torch)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="np") as stored:
        return NumpyDescriptorNet({key: stored.get_tensor(key) for key in stored.keys()})
