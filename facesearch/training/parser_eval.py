"""How the "learned" parser's 7 region masks compare with the "mesh" parser's and the teacher's,
on the aligned crops (112 x 96) of the validation faces of training/parser_labels.py.

For each validation face (identities never trained on): the photo is detected again (mediapipe,
for the mesh), aligned, and parsed by both backends; the teacher's head-crop labels (128 x 128)
are warped into the aligned crop (nearest) and merged into regions the same way
(parser_train.TEACHER_TO_CLASS, then models/parser.REGION_OF_CLASS). IoU per region over all
pixels, for each pair: learned vs teacher, mesh vs teacher, learned vs mesh.

    python -m facesearch.training.parser_eval                      # the shipped weights
    python -m facesearch.training.parser_eval --run runs/parser/v1 # a run's model.pt
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facesearch.models.parser import REGION_INDEX, NumpyParserNet
from facesearch.pipeline import alignment
from facesearch.pipeline.parse.learned import LearnedParser, head_transform
from facesearch.spec import INPUT_SIZE, REGIONS
from facesearch.training.parser_labels import STUDENT_SIDE, load_labels
from facesearch.training.parser_train import TEACHER_TO_CLASS, iou_table


def compare(labels_dir: Path, run: Path | None = None, limit: int | None = None) -> dict:
    """IoU per region (and mean) of learned vs teacher, mesh vs teacher and learned vs mesh on
    the validation faces' aligned crops; also the faces compared and the seconds each took."""
    import time

    from facesearch.pipeline.detect import detector as make_detector
    from facesearch.pipeline.images import load_image
    from facesearch.pipeline.parse.mesh import MeshParser
    from facesearch.settings import DEFAULTS

    val = load_labels(labels_dir / "val")
    learned = LearnedParser()
    if run is not None:
        import torch

        state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
        learned.network = NumpyParserNet({k: v.numpy() for k, v in state.items()})
    mesh = MeshParser()
    detector = make_detector("mediapipe", DEFAULTS)
    height, width = INPUT_SIZE
    maps = {"learned": [], "mesh": [], "teacher": []}
    seconds = {"learned": 0.0, "mesh": 0.0}
    sources = []
    count = len(val["files"]) if limit is None else min(limit, len(val["files"]))
    for i in range(count):
        pixels = load_image(val["files"][i]).pixels
        faces = detector.detect(pixels)
        if not faces:
            continue
        face = min(faces, key=lambda f: np.abs(f.landmarks - val["landmarks"][i]).sum())
        matrix = alignment.template_transform(face.landmarks)
        crop = alignment.warp(pixels, matrix)
        start = time.perf_counter()
        maps["learned"].append(learned.masks_in_photo(pixels, face, matrix, crop).argmax(0))
        seconds["learned"] += time.perf_counter() - start
        start = time.perf_counter()
        maps["mesh"].append(mesh.masks(crop, face.transformed(matrix)).argmax(0))
        seconds["mesh"] += time.perf_counter() - start
        head = np.vstack([head_transform(val["landmarks"][i], STUDENT_SIDE), [0, 0, 1]])
        warp = (np.vstack([matrix, [0, 0, 1]]) @ np.linalg.inv(head))[:2]
        teacher = REGION_INDEX[TEACHER_TO_CLASS[val["labels"][i]]].astype(np.uint8)
        maps["teacher"].append(cv2.warpAffine(teacher, warp, (width, height), flags=cv2.INTER_NEAREST,
                                              borderMode=cv2.BORDER_REPLICATE))
        sources.append(str(val["sources"][i]))
    arrays = {name: np.stack(value) for name, value in maps.items()}
    celeba = np.char.startswith(np.array(sources), "celeba")
    report = {"faces": len(arrays["teacher"]), "celeba_faces": int(celeba.sum())}
    for subset, keep in (("all", slice(None)), ("celeba", celeba)):
        for a, b in (("learned", "teacher"), ("mesh", "teacher"), ("learned", "mesh")):
            table = iou_table(arrays[a][keep], arrays[b][keep], REGIONS)
            report[f"{subset}: {a} vs {b}"] = table
            report[f"{subset}: {a} vs {b} mIoU"] = round(float(np.mean(list(table.values()))), 4)
    report["ms_per_face"] = {name: round(1000 * s / max(report["faces"], 1), 1)
                             for name, s in seconds.items()}
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: print the comparison as JSON (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=Path, default=Path("cache/parser_labels"))
    parser.add_argument("--run", type=Path, default=None, help="a run folder (its model.pt)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    report = compare(args.labels, args.run, args.limit)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
