"""How well the pixel attributes (pipeline/pixel_attributes.py) read hair and eyes, on CelebA.

    python -m facesearch.training.pixel_eval [--per-class 150] [--json]
    python -m facesearch.training.pixel_eval --sheet top.png --attribute hair_red [--top 24]

1. Hair colour against CelebA's labels. Faces labelled with exactly one of Black_Hair,
   Blond_Hair, Brown_Hair, Gray_Hair (not Bald, not Wearing_Hat; aligned and in-the-wild photos,
   the largest face) have their hair's median CIELAB colour measured from the pixels. A
   nearest-centroid rule over (L*, a*, b*) is fitted on half the identities and scored on the
   other half, then the other way round: the accuracy says whether the measured colour is the
   hair's (chance: the largest class's share). The same faces give each class's median hue and
   chroma, which place RED_HUE / RED_CHROMA (red hair is redder than every labelled class), and
   the share of each class that hair_red calls red (> 0.5): the false-alarm rate on labelled
   non-red hair (auburn hair is labelled Brown_Hair in CelebA, so some of it is right).
2. Red hair, hair length and eye colour have no labels: `--sheet` draws the faces of the sample
   ranked by one attribute (most likely first), each with its values, to be checked by eye; the
   counts judged right are recorded in the docstring below with how they were judged.

Figures (`--per-class 120`: 464 faces found of 480 picked, aligned + wild; scrfd faces, the hair
read under the learned parser's hair class; 2 CPU cores beside a training job, 3 min; session 10):
    hair colour, nearest centroid in CIELAB, 2-fold by identity: accuracy 0.763 (chance 0.259;
    the mesh parser's hair region less skin-coloured pixels, session 8: 0.702)
    label / measured   Black  Blond  Brown  Gray
    Black_Hair (120)     115      0      5     0
    Blond_Hair (120)       0     91      9    20
    Brown_Hair (120)      24     11     82     3
    Gray_Hair  (104)      12     20      6    66
    median hue / chroma / L*: black 39 / 2.4 / 7, brown 53 / 15.1 / 19, grey 65 / 8.1 / 54,
    blond 71 / 23.8 / 55; hair_red > 0.5 (before the light's and the network's factors): black 0%,
    blond 0.8%, brown 7.5% (auburn is labelled Brown_Hair), grey 1.0%.
    Dark brown reads as black and pale blond as grey most often: the label itself is a judgement
    of lightness, and lighting moves L*.
Checked by eye (the `--sheet` pictures, head crops for hair, both eyes zoomed for eyes): the
counts are in training/text_eval.py (PIXEL_QUERIES, judged hits in pixel_judgements.csv).
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.pipeline.pixel_attributes import (RED_HUE_MAX, RED_HUE_MIN, PixelMeasurer, hue_chroma,
                                                  red_probability)
from facesearch.spec import CELEBA_ATTRIBUTES

HAIR_CLASSES = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
FOLDERS = ("celeba/aligned", "celeba/wild")


@dataclass
class Measured:
    """One labelled face's measurement."""

    path: Path
    identity: int
    label: str | None           # its one hair-colour class, None if not exactly one
    colour: np.ndarray | None   # median CIELAB of the hair
    values: dict[str, float]    # the pixel attributes as described faces carry them


def labelled_rows(root: Path) -> list[tuple[Path, int, dict[str, int]]]:
    """(photo path, identity, labels) of every CelebA photo with labels, aligned then wild."""
    rows = []
    for folder in FOLDERS:
        with open(root / folder / "labels.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                labels = {name: int(row[name]) for name in CELEBA_ATTRIBUTES}
                rows.append((root / folder / row["file"], int(row["identity"]), labels))
    return rows


def hair_label(labels: dict[str, int]) -> str | None:
    """The face's one hair-colour class, or None (none or several, bald, a hat)."""
    named = [name for name in HAIR_CLASSES if labels[name] == 1]
    if len(named) != 1 or labels["Bald"] or labels["Wearing_Hat"]:
        return None
    return named[0]


def measure_sample(root: Path, per_class: int, extra: int = 0) -> list[Measured]:
    """Up to `per_class` faces of each hair colour class (spread over the file list) and
    `extra` faces of any kind, measured."""
    from PIL import Image

    rows = labelled_rows(root)
    chosen: list[tuple[Path, int, str | None]] = []
    for name in HAIR_CLASSES:
        of_class = [(p, i, name) for p, i, labels in rows if hair_label(labels) == name]
        step = max(len(of_class) // max(per_class, 1), 1)
        chosen += of_class[::step][:per_class]
    if extra:
        step = max(len(rows) // extra, 1)
        taken = {p for p, _, _ in chosen}
        chosen += [(p, i, hair_label(labels)) for p, i, labels in rows[::step][:extra] if p not in taken]
    measurer = index_measurer()
    measured = []
    for path, identity, label in chosen:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        face = main_face(pixels, measurer)
        if face is None:
            continue
        hair = measurer.measure_hair(pixels, face)
        measured.append(Measured(path, identity, label, None if hair is None else hair.colour,
                                 measurer.measure(pixels, face)))
    return measured


def main_face(pixels: np.ndarray, measurer: PixelMeasurer):
    """The largest face of an (H, W, 3) uint8 RGB photo as the index finds it (the default
    detector, Settings.detector; a face mesh fitted where the detector gives none:
    PixelMeasurer.with_mesh), or None when there is none."""
    faces = _index_preparer().detector.detect(pixels)
    return measurer.with_mesh(pixels, faces[0]) if faces else None


def index_measurer() -> PixelMeasurer:
    """The PixelMeasurer of the index's own FacePreparer (the default parser: with the learned
    parser, its hair class gives the hair's pixels)."""
    return _index_preparer().measurer


@lru_cache(maxsize=1)
def _index_preparer():
    """A FacePreparer with the default detector and parser (Settings), made once."""
    from facesearch.pipeline.prepare import FacePreparer

    return FacePreparer()


def hair_colour_report(measured: list[Measured]) -> dict:
    """Two-fold (by identity) nearest-centroid accuracy of the measured colour against the
    labels, per-class medians of hue/chroma/L*, and hair_red's share per class."""
    faces = [m for m in measured if m.label is not None and m.colour is not None]
    colours = np.stack([m.colour for m in faces])
    labels = np.array([HAIR_CLASSES.index(m.label) for m in faces])
    fold = np.array([m.identity % 2 for m in faces])
    correct = 0
    confusion = np.zeros((len(HAIR_CLASSES), len(HAIR_CLASSES)), int)
    for test in (0, 1):
        train = fold != test
        centroids = np.stack([colours[train & (labels == c)].mean(0) for c in range(len(HAIR_CLASSES))])
        spread = colours[train].std(0)
        guess = np.argmin((((colours[~train][:, None] - centroids[None]) / spread) ** 2).sum(-1), axis=1)
        correct += int((guess == labels[~train]).sum())
        for truth, g in zip(labels[~train], guess):
            confusion[truth, g] += 1
    classes = {}
    for c, name in enumerate(HAIR_CLASSES):
        of_class = colours[labels == c]
        hues, chromas = zip(*(hue_chroma(colour) for colour in of_class))
        reddish = (np.array(hues) > RED_HUE_MIN) & (np.array(hues) < RED_HUE_MAX)
        classes[name] = {"faces": int(len(of_class)), "median L*": float(np.median(of_class[:, 0])),
                         "median hue": float(np.median(hues)), "median chroma": float(np.median(chromas)),
                         "hue p10": float(np.percentile(hues, 10)),
                         "share in the red hue window": float(reddish.mean()),
                         "hair_red > 0.5": float(np.mean([red_probability(x) > 0.5 for x in of_class]))}
    counts = np.bincount(labels, minlength=len(HAIR_CLASSES))
    return {"faces": len(faces), "accuracy": correct / len(faces),
            "chance (largest class)": float(counts.max() / counts.sum()),
            "confusion (rows: label, columns: measured)": {
                name: dict(zip(HAIR_CLASSES, map(int, row))) for name, row in zip(HAIR_CLASSES, confusion)},
            "classes": classes}


def draw_sheet(measured: list[Measured], attribute: str, out: Path, top: int = 24) -> list[Path]:
    """A PNG of the `top` faces most likely to have `attribute` (head crops, values printed):
    for checking by eye. Returns the photos in the order drawn."""
    import cv2
    from PIL import Image

    ranked = sorted((m for m in measured if attribute in m.values),
                    key=lambda m: -m.values[attribute])[:top]
    measurer = index_measurer()
    tiles = []
    for number, m in enumerate(ranked, start=1):
        with Image.open(m.path) as image:
            pixels = np.asarray(image.convert("RGB"))
        face = main_face(pixels, measurer)
        if attribute.startswith("eyes_") and face.mesh is not None:  # both eyes, zoomed
            x0, y0 = face.landmarks[:2].min(0) - 0.45 * np.ptp(face.landmarks[:2, 0])
            x1, y1 = face.landmarks[:2].max(0) + 0.45 * np.ptp(face.landmarks[:2, 0])
            y0, y1 = y0 + 0.2 * (y1 - y0), y1 - 0.2 * (y1 - y0)
            crop = pixels[max(int(y0), 0):int(y1) + 1, max(int(x0), 0):int(x1) + 1]
            tile = np.ascontiguousarray(cv2.resize(crop, (330, max(int(330 * crop.shape[0] / max(crop.shape[1], 1)), 60)),
                                                   interpolation=cv2.INTER_CUBIC))
            tile = np.pad(tile, ((60, 0), (0, 0), (0, 0)))
        else:
            crop = measurer.head(pixels, face).crop
            tile = np.ascontiguousarray(cv2.resize(crop, (crop.shape[1] * 2, crop.shape[0] * 2)))
        for row, text in enumerate((f"{number} {m.path.name}", f"{attribute} {m.values[attribute]:.2f}",
                                    f"label {m.label or '-'}")):
            cv2.putText(tile, text, (4, 20 + 20 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 2)
        tiles.append(tile)
    columns = 6
    height = max(t.shape[0] for t in tiles)
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, height - t.shape[0]), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
    Image.fromarray(sheet).save(out)
    return [m.path for m in ranked]


def main() -> None:
    from facesearch.training.data import data_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--extra", type=int, default=0, help="faces of any kind added to the sample")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sheet", type=Path, help="draw the top faces by --attribute to this PNG")
    parser.add_argument("--attribute", default="hair_red", help="one or more, comma-separated")
    parser.add_argument("--top", type=int, default=24)
    options = parser.parse_args()
    measured = measure_sample(data_dir(), options.per_class, options.extra)
    if options.sheet:  # one sheet per attribute: PATH with the attribute before the suffix
        for attribute in options.attribute.split(","):
            out = options.sheet.with_name(f"{options.sheet.stem}_{attribute}{options.sheet.suffix}")
            for number, path in enumerate(draw_sheet(measured, attribute, out, options.top), 1):
                print(attribute, number, path)
        return
    report = hair_colour_report(measured)
    print(json.dumps(report, indent=2) if options.json else
          "\n".join(f"{key}: {value}" for key, value in report.items()))


if __name__ == "__main__":
    main()
