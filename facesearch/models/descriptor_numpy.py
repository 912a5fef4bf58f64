"""The descriptor network's forward pass (models/network.py: DescriptorNet in eval mode) in numpy.

Describing a photo runs this, so that a query with a new photo does not import torch (about
1.5-3 s of a cold start on 2 cores) nor build the torch module: the weights are read from the
same safetensors file (float16, computed in float32), each batch norm folded into the layer
before it. Same inputs, same outputs as `DescriptorNet.forward`: master vectors (B, 364) and
logits (B, N_LOGITS); tests/test_descriptor_numpy.py checks them against torch (max abs
difference ~1e-5 on real faces). Training and evaluation keep the torch network.

Layout (channels, widths) is read from the weights' shapes; the stages' strides and the input
normalisation from models/network_layout.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facesearch.models.network_layout import HEADS, IMAGENET_MEAN, IMAGENET_STD, MOBILENET_STAGES
from facesearch.spec import REGION_DIM, REGIONS, unit_blocks

#: Faces per forward pass: larger batches outgrow the CPU caches (2 cores, same run: 15.0 ms a
#: face in batches of 1-4, 17.8 at 8, 21.6 at 64; torch at 64: 76.7 on the same busy machine).
BATCH = 4
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
        if self.kernel == 1:
            y = x @ self.weight
        else:
            batch, height, width, _ = x.shape
            s = self.stride
            out_h, out_w = (height - 1) // s + 1, (width - 1) // s + 1
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            windows = [padded[:, i:i + s * out_h:s, j:j + s * out_w:s] for i in range(3) for j in range(3)]
            if self.depthwise:
                y = windows[0] * self.weight[0, 0]
                for n, window in enumerate(windows[1:], start=1):
                    y += window * self.weight[n // 3, n % 3]
            else:
                y = np.concatenate(windows, axis=-1) @ self.weight
        y += self.bias
        return np.clip(y, 0.0, 6.0, out=y) if self.relu6 else y


class NumpyDescriptorNet:
    """DescriptorNet's eval-mode forward in numpy, from its state dict (numpy arrays, any float
    dtype; computed in float32). Raises KeyError when the weights lack a layer it needs."""

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
        """images (B, 3, 112, 96) in [0, 1] -> backbone features (B, 7, 6, 96) NHWC float32."""
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
        features = self.features(images)                                  # (B, 7, 6, 96)
        batch = len(features)
        maps = self.maps(features).transpose(0, 3, 1, 2)                  # (B, 78, 7, 6)
        stacks = maps[:, None] * np.asarray(masks, np.float32)[:, :, None]  # (B, 7, 78, 7, 6)
        hidden = np.einsum("brd,rdh->brh", stacks.reshape(batch, len(REGIONS), -1), self.w1) + self.b1
        scale, shift = self.norm
        hidden = np.maximum(hidden.reshape(batch, -1) * scale + shift, 0.0).reshape(batch, len(REGIONS), -1)
        blocks = np.einsum("brh,rhd->brd", hidden, self.w2) + self.b2     # (B, 7, 52)
        vectors = unit_blocks(blocks.reshape(batch, len(REGIONS) * REGION_DIM).astype(np.float32))
        vector_logits = self._run_stack(vectors, self.vector_classifier)
        flat = features.transpose(0, 3, 1, 2).reshape(batch, -1)          # NCHW flatten, as torch
        attribute_logits = self._run_stack(flat, self.classifier)
        logits = np.concatenate([attribute_logits, vector_logits[:, HEADS["celeba"].stop:]], axis=1)
        return vectors, logits.astype(np.float32)


def load_numpy_network(weights: Path) -> NumpyDescriptorNet:
    """The numpy network of a safetensors weights file (read without torch)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="np") as stored:
        return NumpyDescriptorNet({key: stored.get_tensor(key) for key in stored.keys()})
