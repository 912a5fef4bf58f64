"""The descriptor network in the patent's shape (US 11,036,789 B2).

image 112x96 -> CNN feature maps (78 x 7 x 6) -> masked by each of the 7 region masks -> 7 small
networks F_k -> 7 vectors of 52 dims -> each L2-normalised -> concatenated master vector (364).
The localizer-and-classifier module gives one probability per soft-biometric class plus an age
estimate: the 40 CelebA attributes from the CNN's features (96 x 7 x 6) the maps are made from,
where they are on the face included; gender, age and ethnicity from the master vector (the age
as the expected age over the age groups, network_layout.AGE_GROUP_MEANS).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The layout shared with the numpy forward pass (models/descriptor_numpy.py) lives in
# models/network_layout.py: stages, input normalisation, the logits' heads and their reading.
from facesearch.models.network_layout import (AGE_GROUP_MEANS, AGE_TOP_SHARE, AGE_YOUNG_EVIDENCE,  # noqa: F401
                                              AGE_YOUNG_WEIGHT, BACKBONE_CHANNELS, HEADS, IMAGENET_MEAN,
                                              IMAGENET_STD, MOBILENET_STAGES, N_LOGITS, class_probabilities)
from facesearch.spec import AGE_GROUPS, CELEBA_ATTRIBUTES, FEATURE_GRID, FEATURE_MAPS, REGION_DIM, REGIONS

#: Hidden width of each region network F_k.
REGION_HIDDEN = 128
#: Hidden width of both classifier networks (on the features, on the master vector).
CLASSIFIER_HIDDEN = 512


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block; parameter names match torchvision's so ImageNet weights load as is."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = [] if expansion == 1 else [_conv_bn(in_ch, hidden, 1)]
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2_stride16() -> nn.Sequential:
    """MobileNetV2's `features` up to the last stride-16 stage (96 channels)."""
    layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
    in_ch = 32
    for expansion, out_ch, repeats, stride in MOBILENET_STAGES:
        for i in range(repeats):
            layers.append(InvertedResidual(in_ch, out_ch, stride if i == 0 else 1, expansion))
            in_ch = out_ch
    return nn.Sequential(*layers)


class RegionNetworks(nn.Module):
    """The 7 networks F_k, batched: each maps its masked stack T_k (78x7x6) to 52 dims."""

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        n, d_in = len(REGIONS), FEATURE_MAPS * FEATURE_GRID[0] * FEATURE_GRID[1]
        self.w1 = nn.Parameter(torch.randn(n, d_in, REGION_HIDDEN) * d_in ** -0.5)
        self.b1 = nn.Parameter(torch.zeros(n, REGION_HIDDEN))
        self.norm = nn.BatchNorm1d(n * REGION_HIDDEN)
        self.dropout = nn.Dropout(dropout)
        self.w2 = nn.Parameter(torch.randn(n, REGION_HIDDEN, REGION_DIM) * REGION_HIDDEN ** -0.5)
        self.b2 = nn.Parameter(torch.zeros(n, REGION_DIM))

    def forward(self, stacks: torch.Tensor) -> torch.Tensor:
        """(B, 7, 78, 7, 6) region stacks -> (B, 7, 52) unnormalised region vectors."""
        batch, n = stacks.shape[:2]
        hidden = torch.einsum("brd,rdh->brh", stacks.flatten(2), self.w1) + self.b1
        hidden = F.relu(self.norm(hidden.reshape(batch, -1)).reshape(batch, n, -1))
        return torch.einsum("brh,rhd->brd", self.dropout(hidden), self.w2) + self.b2


def attribute_classifier(hidden: int = CLASSIFIER_HIDDEN) -> nn.Sequential:
    """Backbone features (96 x 7 x 6, each at its place on the face) -> the 40 CelebA attribute
    logits, through `hidden` units (an ensemble of K heads merged by `merge_heads` is one head
    of K x CLASSIFIER_HIDDEN units)."""
    return nn.Sequential(
        nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(BACKBONE_CHANNELS * FEATURE_GRID[0] * FEATURE_GRID[1], hidden),
        nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(0.3),
        nn.Linear(hidden, len(CELEBA_ATTRIBUTES)))


def merge_heads(heads: list[nn.Sequential]) -> nn.Sequential:
    """K attribute classifiers -> one of K x their hidden units whose logits (in eval mode) are
    the mean of theirs: the hidden layers side by side, the output layer's weights / K and its
    biases averaged. Describing runs one matrix product instead of K."""
    merged = attribute_classifier(sum(head[2].out_features for head in heads))
    with torch.no_grad():
        for index in (2, 3):  # the hidden Linear and its BatchNorm: concatenated unit by unit
            for name, tensor in merged[index].state_dict().items():
                parts = [head[index].state_dict()[name] for head in heads]
                tensor.copy_(torch.cat(parts) if tensor.dim() else sum(parts))
        merged[6].weight.copy_(torch.cat([head[6].weight for head in heads], dim=1) / len(heads))
        merged[6].bias.copy_(torch.stack([head[6].bias for head in heads]).mean(0))
    return merged


def vector_classifier() -> nn.Sequential:
    """Master vector (364) -> every class's logit and the age (gender, age and ethnicity are read
    from these; in training all of them make the 364 numbers carry the classes)."""
    return nn.Sequential(
        nn.Linear(len(REGIONS) * REGION_DIM, CLASSIFIER_HIDDEN), nn.BatchNorm1d(CLASSIFIER_HIDDEN),
        nn.ReLU(inplace=True), nn.Linear(CLASSIFIER_HIDDEN, N_LOGITS))


class DescriptorNet(nn.Module):
    """Face crop + region masks -> master vector (364, 7 unit blocks) and class logits.

    The class logits come from two networks. `vector_classifier` reads the master vector: it
    gives gender, age group, ethnicity and age, and in training its logits of every class make
    the 364 numbers carry the classes. `classifier` gives the 40 CelebA attributes from the
    backbone's features, 1.2 points more accurate than from the 364-dim vector (0.4 from the 78
    maps); it does not train the features (they are detached), so the features and the master
    vector are shaped by the master vector's losses alone. Gender, age and ethnicity stay with
    the master vector: learnt from UTKFace photos alone, a network on the features put 38% of
    CelebA's "young" adults under 15 years (1.4% from the master vector).
    """

    def __init__(self):
        super().__init__()
        self.backbone = mobilenet_v2_stride16()
        self.maps = _conv_bn(BACKBONE_CHANNELS, FEATURE_MAPS, 1)
        self.regions = RegionNetworks()
        self.vector_classifier = vector_classifier()
        self.classifier = attribute_classifier()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        # each age group's mean training age (network_layout.AGE_GROUP_MEANS; set by training)
        self.register_buffer(AGE_GROUP_MEANS, torch.zeros(len(AGE_GROUPS)))
        # how far past the oldest group's mean the age head may carry it (AGE_TOP_SHARE)
        self.register_buffer(AGE_TOP_SHARE, torch.zeros(1))
        # the Young attribute's evidence on the age groups and its weight (AGE_YOUNG_EVIDENCE)
        self.register_buffer(AGE_YOUNG_EVIDENCE, torch.zeros(2, len(AGE_GROUPS)))
        self.register_buffer(AGE_YOUNG_WEIGHT, torch.zeros(1))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """nn.Module's, where weights saved before AGE_GROUP_MEANS get zeros for it (their age
        is read from the age head), and the attribute classifier takes the width it was saved
        with (one head of CLASSIFIER_HIDDEN units, or K merged ones: `merge_heads`)."""
        state = dict(state_dict)
        state.setdefault(AGE_GROUP_MEANS, torch.zeros(len(AGE_GROUPS)))
        state.setdefault(AGE_TOP_SHARE, torch.zeros(1))
        state.setdefault(AGE_YOUNG_EVIDENCE, torch.zeros(2, len(AGE_GROUPS)))
        state.setdefault(AGE_YOUNG_WEIGHT, torch.zeros(1))
        width = state["classifier.2.weight"].shape[0] if "classifier.2.weight" in state else None
        if width is not None and width != self.classifier[2].out_features:
            device = self.classifier[2].weight.device
            self.classifier = attribute_classifier(width).to(device)
        return super().load_state_dict(state, strict, assign)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, 112, 96) in [0, 1] -> the backbone's features (B, 96, 7, 6)."""
        return self.backbone((images - self.mean) / self.std)

    def master_vectors(self, maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Feature maps (B, 78, 7, 6) and region masks (B, 7, 7, 6) -> master vectors (B, 364)."""
        stacks = maps[:, None] * masks[:, :, None]                          # T_k: (B, 7, 78, 7, 6)
        blocks = F.normalize(self.regions(stacks), dim=-1)                  # f_k, unit norm
        return blocks.flatten(1)                                            # f = f_1 (+) ... (+) f_7

    def outputs(self, images: torch.Tensor, masks: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, 3, 112, 96) in [0, 1]; masks (B, 7, 7, 6) -> master vectors (B, 364), the
        master vector's logits of every class (B, 57) and the attribute logits from the
        backbone features (B, 40). Training reads all three; forward() keeps what describing uses."""
        features = self.features(images)
        vectors = self.master_vectors(self.maps(features), masks)
        return vectors, self.vector_classifier(vectors), self.classifier(features.detach())

    def forward(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, 112, 96) in [0, 1]; masks (B, 7, 7, 6) -> vectors (B, 364), logits: the
        40 attributes from the features, gender, age and ethnicity from the master vector."""
        vectors, vector_logits, attribute_logits = self.outputs(images, masks)
        return vectors, torch.cat([attribute_logits, vector_logits[:, HEADS["celeba"].stop:]], dim=1)


def to_images(crops: np.ndarray) -> torch.Tensor:
    """Aligned crops (N, 112, 96, 3) uint8 -> the network's input (N, 3, 112, 96) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255
