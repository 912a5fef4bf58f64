"""Train our face parser (models/parser.py) on the teacher's labels (training/parser_labels.py).

    python -m facesearch.training.parser_train --run-dir runs/parser/v1 --minutes 28
    python -m facesearch.training.parser_train --export runs/parser/v1     # -> weights/parser.safetensors

The student sees the 128 x 128 head crop and learns the teacher's 19 classes merged into 12
(TEACHER_TO_CLASS) with class-weighted cross-entropy on its scores upsampled to 128 x 128
(weights: pixel share ^ -0.25, normalised; small parts such as eyes and brows count more).
Augmentation: mirror (every class is symmetric once left and right are merged), a random
similarity (scale 0.9-1.1, rotation +-10 degrees, shift +-6 px: landmarks are never exact),
brightness, contrast, saturation, grey in 1 of 10, and a low-resolution copy (down to 40-80 px
and back) in 1 of 4. AdamW, learning rate 3e-3 on a cosine over the time budget (--minutes),
batch 32. The run folder gets settings.json, log.txt, model.pt and metrics.json (IoU per class
and per region against the teacher on the validation faces, ms a face); --export writes float16
safetensors from a finished run only (one with metrics.json).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facesearch.models.parser import (CONTEXT, DECODER, ENCODER, HEAD, INPUT_MEAN, INPUT_STD,
                                      OUTPUT_STRIDE, PARSER_CLASSES, PARSER_FILE, PARSER_SIDE,
                                      REGION_INDEX)
from facesearch.spec import REGIONS
from facesearch.training.parser_labels import load_labels
from facesearch.training.parser_teacher import TEACHER_CLASSES

#: The parser class (PARSER_CLASSES) of each teacher class (parser_teacher.TEACHER_CLASSES).
TEACHER_TO_CLASS_NAMES: dict[str, str] = {
    "background": "background", "skin": "skin", "l_brow": "eyebrows", "r_brow": "eyebrows",
    "l_eye": "eyes", "r_eye": "eyes", "eyeglasses": "glasses", "l_ear": "ears", "r_ear": "ears",
    "earring": "ears", "nose": "nose", "mouth": "lips", "u_lip": "lips", "l_lip": "lips",
    "neck": "neck", "necklace": "neck", "cloth": "cloth", "hair": "hair", "hat": "hat"}
TEACHER_TO_CLASS = np.array([PARSER_CLASSES.index(TEACHER_TO_CLASS_NAMES[name])
                             for name in TEACHER_CLASSES], dtype=np.uint8)


@dataclass
class ParserTrainSettings:
    """What a run was trained with (written to its settings.json)."""

    labels: str = "cache/parser_labels"
    minutes: float = 28.0
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    class_weight_power: float = 0.25
    threads: int = 2
    seed: int = 0


def _conv_bn(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class ParserNet(nn.Module):
    """The student (models/parser.py's layout) in torch: (B, 3, 128, 128) normalised images ->
    class scores (B, 12, 64, 64)."""

    def __init__(self):
        super().__init__()
        convs = {name: _conv_bn(in_ch, out_ch, 3, stride) for name, in_ch, out_ch, stride in ENCODER}
        width = {name: out_ch for name, _, out_ch, _ in ENCODER}
        bottom = ENCODER[-1][2]
        convs[CONTEXT] = _conv_bn(bottom, bottom, 1)
        previous = bottom
        for name, skip, out_ch in DECODER:
            convs[f"{name}_reduce"] = _conv_bn(previous, width[skip], 1)
            convs[name] = _conv_bn(width[skip], out_ch)
            previous = out_ch
        self.convs = nn.ModuleDict(convs)
        setattr(self, HEAD, nn.Conv2d(previous, len(PARSER_CLASSES), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = {}
        for name, *_ in ENCODER:
            x = self.convs[name](x)
            outputs[name] = x
        x = x + self.convs[CONTEXT](x.mean((2, 3), keepdim=True))
        for name, skip, _ in DECODER:
            x = F.interpolate(self.convs[f"{name}_reduce"](x), scale_factor=2, mode="nearest")
            x = self.convs[name](x + outputs[skip])
        return getattr(self, HEAD)(x)


def to_input(crops: np.ndarray) -> torch.Tensor:
    """(B, 128, 128, 3) uint8 RGB -> the network's (B, 3, 128, 128) float32 input."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).float().permute(0, 3, 1, 2)
    return (x / 255.0 - INPUT_MEAN) / INPUT_STD


def upsampled(scores: torch.Tensor) -> torch.Tensor:
    """Class scores at the crop's side (bilinear, half-pixel centres)."""
    return F.interpolate(scores, scale_factor=OUTPUT_STRIDE, mode="bilinear", align_corners=False)


def augment(crops: np.ndarray, labels: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Randomly changed copies of (B, S, S, 3) uint8 crops and their (B, S, S) labels."""
    side = crops.shape[1]
    crops_out, labels_out = np.empty_like(crops), np.empty_like(labels)
    for i, (crop, label) in enumerate(zip(crops, labels)):
        if rng.random() < 0.5:
            crop, label = crop[:, ::-1], label[:, ::-1]
        matrix = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(-10, 10),
                                         rng.uniform(0.9, 1.1))
        matrix[:, 2] += rng.uniform(-6, 6, 2)
        crop = cv2.warpAffine(np.ascontiguousarray(crop), matrix, (side, side),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        label = cv2.warpAffine(np.ascontiguousarray(label), matrix, (side, side),
                               flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        if rng.random() < 0.25:
            small = int(rng.integers(40, 81))
            crop = cv2.resize(cv2.resize(crop, (small, small), interpolation=cv2.INTER_AREA),
                              (side, side), interpolation=cv2.INTER_LINEAR)
        pixels = crop.astype(np.float32)
        grey = pixels.mean(axis=2, keepdims=True)
        saturation = 0.0 if rng.random() < 0.1 else rng.uniform(0.7, 1.3)
        pixels = grey + (pixels - grey) * saturation
        mean = pixels.mean()
        pixels = (pixels - mean) * rng.uniform(0.7, 1.3) + mean + rng.uniform(-30, 30)
        crops_out[i] = np.clip(pixels, 0, 255).astype(np.uint8)
        labels_out[i] = label
    return crops_out, labels_out


def iou_table(predicted: np.ndarray, truth: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """IoU of each class over all pixels of (N, H, W) label maps (intersection and union summed
    over the faces); NaN-free: a class absent from both is left out."""
    table = {}
    for index, name in enumerate(names):
        p, t = predicted == index, truth == index
        union = np.logical_or(p, t).sum()
        if union:
            table[name] = round(float(np.logical_and(p, t).sum() / union), 4)
    return table


def evaluate(model: ParserNet, crops: np.ndarray, labels: np.ndarray) -> dict:
    """IoU per parser class and per region (spec.REGIONS, through REGION_INDEX) of the model
    against the teacher's labels (12-class, (N, 128, 128)) on head crops; mean IoU of each."""
    model.eval()
    predicted = []
    with torch.inference_mode():
        for start in range(0, len(crops), 64):
            predicted.append(upsampled(model(to_input(crops[start:start + 64]))).argmax(1).numpy())
    predicted = np.concatenate(predicted).astype(np.uint8)
    classes = iou_table(predicted, labels, PARSER_CLASSES)
    regions = iou_table(REGION_INDEX[predicted], REGION_INDEX[labels], REGIONS)
    return {"class_iou": classes, "class_miou": round(float(np.mean(list(classes.values()))), 4),
            "region_iou": regions, "region_miou": round(float(np.mean(list(regions.values()))), 4),
            "pixel_accuracy": round(float((predicted == labels).mean()), 4)}


def torch_ms_per_face(model: ParserNet, crops: np.ndarray, repeats: int = 3) -> float:
    """Median milliseconds a face of the torch forward, batches of 4."""
    model.eval()
    x = to_input(crops[:4])
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000 / len(x))
    return round(float(np.median(times)), 2)


def numpy_ms_per_face(crops: np.ndarray, state: dict[str, torch.Tensor], repeats: int = 3) -> float:
    """Median milliseconds a face of models/parser.py's numpy forward, batches of 4."""
    from facesearch.models.parser import NumpyParserNet

    net = NumpyParserNet({key: value.numpy() for key, value in state.items()})
    net(crops[:4])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(crops[:4])
        times.append((time.perf_counter() - start) * 1000 / 4)
    return round(float(np.median(times)), 2)


def train(run_dir: Path, settings: ParserTrainSettings) -> dict:
    """Train a parser into run_dir (model.pt, settings.json, log.txt, metrics.json); returns the
    metrics."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "settings.json").write_text(json.dumps(asdict(settings), indent=2))
    log = open(run_dir / "log.txt", "a")

    def say(line: str) -> None:
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    root = Path(settings.labels)
    train_set, val_set = load_labels(root / "train"), load_labels(root / "val")
    overlap = set(train_set["identity"][train_set["identity"] >= 0]) & set(val_set["identity"])
    if overlap:
        raise ValueError(f"{len(overlap)} validation identities among the training faces")
    crops, labels = train_set["crops"], TEACHER_TO_CLASS[train_set["labels"]]
    val_crops, val_labels = val_set["crops"], TEACHER_TO_CLASS[val_set["labels"]]
    share = np.bincount(labels.ravel(), minlength=len(PARSER_CLASSES)) / labels.size
    weights = np.maximum(share, 1e-4) ** -settings.class_weight_power
    weights = torch.tensor(weights / (weights * share).sum(), dtype=torch.float32)
    say(f"{len(crops)} training faces, {len(val_crops)} validation faces; class weights "
        + ", ".join(f"{n} {w:.2f}" for n, w in zip(PARSER_CLASSES, weights.tolist())))
    model = ParserNet().to(memory_format=torch.channels_last)  # ~2x faster on the CPU
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    budget = settings.minutes * 60
    start, step, epoch = time.time(), 0, 0
    while time.time() - start < budget:
        model.train()
        order = rng.permutation(len(crops))
        losses = []
        for first in range(0, len(order) - settings.batch + 1, settings.batch):
            elapsed = time.time() - start
            if elapsed >= budget:
                break
            for group in optimiser.param_groups:
                group["lr"] = settings.lr * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
            batch = order[first:first + settings.batch]
            x, y = augment(crops[batch], labels[batch], rng)
            images = to_input(x).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(upsampled(model(images)), torch.from_numpy(y).long(),
                                   weight=weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            step += 1
        epoch += 1
        metrics = evaluate(model, val_crops, val_labels)
        say(f"epoch {epoch} step {step} {time.time() - start:.0f}s loss {np.mean(losses):.4f} "
            f"val class mIoU {metrics['class_miou']:.4f} region mIoU {metrics['region_miou']:.4f}")
        torch.save(model.state_dict(), run_dir / "model.pt")
    metrics = evaluate(model, val_crops, val_labels)
    celeba = np.char.startswith(val_set["sources"].astype(str), "celeba")
    metrics["celeba_only"] = evaluate(model, val_crops[celeba], val_labels[celeba])
    metrics["celeba_only"]["faces"] = int(celeba.sum())
    metrics.update({
        "train_faces": int(len(crops)), "val_faces": int(len(val_crops)),
        "train_sources": {s: int(n) for s, n in zip(*np.unique(train_set["sources"], return_counts=True))},
        "val_sources": {s: int(n) for s, n in zip(*np.unique(val_set["sources"], return_counts=True))},
        "epochs": epoch, "steps": step, "train_minutes": round((time.time() - start) / 60, 1),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "torch_ms_per_face": torch_ms_per_face(model, val_crops),
        "numpy_ms_per_face": numpy_ms_per_face(val_crops, model.state_dict()),
    })
    torch.save(model.state_dict(), run_dir / "model.pt")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    say(json.dumps(metrics))
    return metrics


def export(run_dir: Path, out: Path = PARSER_FILE) -> Path:
    """Write a finished run's model (model.pt, with metrics.json beside it) as float16
    safetensors to `out`; ValueError for a run that was not evaluated."""
    from safetensors.torch import save_file

    metrics_file = run_dir / "metrics.json"
    if not metrics_file.is_file():
        raise ValueError(f"{run_dir} has no metrics.json: only a finished, evaluated run is exported")
    metrics = json.loads(metrics_file.read_text())
    state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    tensors = {key: value.half().contiguous() for key, value in state.items()
               if not key.endswith("num_batches_tracked")}
    metadata = {"run": run_dir.name, "classes": ",".join(PARSER_CLASSES), "side": str(PARSER_SIDE),
                "class_miou_vs_teacher": str(metrics["class_miou"]),
                "region_miou_vs_teacher": str(metrics["region_miou"])}
    save_file(tensors, str(out), metadata=metadata)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: train a run, or export one (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/parser/latest"))
    parser.add_argument("--export", type=Path, default=None, metavar="RUN_DIR",
                        help="write this finished run's weights to the package, then stop")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="NAME=VALUE", help="any ParserTrainSettings field")
    parser.add_argument("--minutes", type=float, default=None)
    args = parser.parse_args(argv)
    if args.export is not None:
        print(f"exported {export(args.export)}")
        return
    from facesearch.errors import FaceSearchError
    from facesearch.training.train import override

    try:
        settings = override(ParserTrainSettings(), args.assignments)
    except FaceSearchError as error:
        raise SystemExit(f"error: {error}") from None
    if args.minutes is not None:
        settings.minutes = args.minutes
    train(args.run_dir, settings)


if __name__ == "__main__":
    main()
