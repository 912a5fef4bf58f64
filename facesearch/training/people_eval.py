"""How well faces are grouped into people (index.people), on the validation identities.

BCubed precision, recall and F (training.metrics.bcubed; a face in no person counts as a person
of its own) of the people found among the validation identities' faces of CelebA aligned crops
and in-the-wild photos together (identities the same-person calibration never saw; faces
described end to end with the shipped models, cached by identity_calibration.described), two
ways:

- `at_once`: every face indexed in one run (HDBSCAN over all of them, index.people.group);
- `incremental`: the photos indexed in two runs, half (every identity's first half of photos,
  by file name) and then the rest, which join the first run's people by the calibrated
  threshold or form new ones with the faces the first run left waiting, as `facesearch index`
  does (index.people.group with those faces marked tried).

    python -m facesearch.training.people_eval [--min-faces 3] [--min-samples 1]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facesearch.index.people import GROUPING_PROBABILITY, group, grouping_threshold
from facesearch.spec import unit_mean
from facesearch.settings import DEFAULTS
from facesearch.training.identity_calibration import CALIBRATION_SOURCES, described
from facesearch.training.metrics import bcubed


def validation_faces(cache_dir: Path = Path("cache"), root: Path | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identity vectors (n, 512), identity labels (n,), file names (n,)) of the validation
    identities' faces, every calibration source together."""
    vectors, labels, files = [], [], []
    for source in CALIBRATION_SOURCES:
        data = described(source, cache_dir, root=root, validation_only=True)
        keep = data["validation"]
        vectors.append(data["identity_vectors"][keep])
        labels.append(data["identity"][keep])
        files.append(np.char.add(f"{source}/", data["files"][keep].astype(str)))
    return np.concatenate(vectors), np.concatenate(labels), np.concatenate(files)


def _people(vectors: np.ndarray, centroids: np.ndarray, threshold: float, min_faces: int,
            min_samples: int, first_id: int, tried: np.ndarray | None = None) -> np.ndarray:
    """Person of each face (-1: none) after one index run over faces without a person."""
    joined, clusters = group(vectors, centroids, threshold, min_faces, min_samples, tried)
    return np.where(joined >= 0, joined, np.where(clusters >= 0, clusters + first_id, -1))


def singleton_faces(cache_dir: Path = Path("cache"), root: Path | None = None, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identity vectors, labels, names) of one face (chosen with `seed`) of every identity
    outside the validation split, from each calibration source: people seen once, as most of a
    real archive's are, among whom grouping must not form persons. Labels of the second source
    are offset so that the same identity in two sources stays two singletons. Needs every photo
    described (identity_calibration.described: long without its cache)."""
    rng = np.random.default_rng(seed)
    vectors, labels, names = [], [], []
    for offset, source in enumerate(CALIBRATION_SOURCES):
        data = described(source, cache_dir, root=root)
        outside = np.flatnonzero(~data["validation"])
        identities = data["identity"][outside]
        for identity in np.unique(identities):
            chosen = rng.choice(outside[identities == identity])
            vectors.append(data["identity_vectors"][chosen])
            labels.append(int(identity) + offset * 10**7)
            names.append(f"singletons/{source}/{data['files'][chosen]}")
    return np.stack(vectors), np.array(labels, np.int64), np.array(names)


def measure(cache_dir: Path = Path("cache"), min_faces: int = DEFAULTS.people_min_faces,
            min_samples: int = DEFAULTS.people_min_samples, root: Path | None = None,
            singletons: bool = False) -> dict:
    """{"at_once": bcubed, "incremental": bcubed, "faces", "identities", "settings"} (photos
    under `root`, default the data folder), grouping at index.people.grouping_threshold().
    `singletons`: the validation faces plus singleton_faces() (one face of every other
    identity) instead."""
    vectors, labels, files = validation_faces(cache_dir, root)
    if singletons:
        more = singleton_faces(cache_dir, root)
        vectors, labels, files = (np.concatenate([a, b]) for a, b in zip((vectors, labels, files), more))
    threshold = grouping_threshold()
    at_once = _people(vectors, np.empty((0, vectors.shape[1])), threshold, min_faces, min_samples, 0)
    first = np.zeros(len(labels), bool)
    for identity in np.unique(labels):
        mine = np.flatnonzero(labels == identity)
        mine = mine[np.argsort(files[mine])]
        first[mine[: (len(mine) + 1) // 2]] = True
    person = np.full(len(labels), -1, np.int64)
    person[first] = _people(vectors[first], np.empty((0, vectors.shape[1])), threshold,
                            min_faces, min_samples, 0)
    found = np.unique(person[person >= 0])
    centroids = (np.stack([unit_mean(vectors[person == p]) for p in found]) if len(found)
                 else np.empty((0, vectors.shape[1])))
    second = ~first | (person < 0)  # the new faces and those the first run left waiting
    later = _people(vectors[second], centroids, threshold, min_faces, min_samples, len(found),
                    tried=first[second])
    mapped = np.full(len(later), -1, np.int64)
    known = (later >= 0) & (later < len(found))
    mapped[known] = found[later[known]]
    new = later >= len(found)
    mapped[new] = later[new] - len(found) + int(person.max(initial=-1)) + 1
    person[second] = mapped
    return {"at_once": bcubed(at_once, labels), "incremental": bcubed(person, labels),
            "faces": len(labels), "identities": len(np.unique(labels)),
            "settings": {"algorithm": "sklearn.cluster.HDBSCAN", "min_cluster_size": min_faces,
                         "min_samples": min_samples, "metric": "euclidean (unit vectors)",
                         "cluster_selection_method": "eom", "join_threshold": round(threshold, 4),
                         "grouping_probability": GROUPING_PROBABILITY}}


def format_people(measured: dict) -> str:
    """The people rows of `facesearch eval` (measure()'s figures) as text lines, in the layout of
    identity_calibration.format_modes."""
    lines = []
    for key, how in (("at_once", "indexed in one run"), ("incremental", "indexed in two runs")):
        f = measured[key]
        lines.append(f"{'people: BCubed P / R / F, ' + how:<46} {f['f']:>11.3f}  "
                     f"P {f['precision']:.3f}, R {f['recall']:.3f}; target F >= 0.90 with P >= 0.95")
    lines.append(f"{'  faces (identities)':<46} {measured['faces']:>11}  ({measured['identities']} "
                 "validation identities, aligned and wild together)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("cache"))
    parser.add_argument("--min-faces", type=int, default=DEFAULTS.people_min_faces)
    parser.add_argument("--min-samples", type=int, default=DEFAULTS.people_min_samples)
    parser.add_argument("--singletons", action="store_true",
                        help="add one face of every other identity, as people seen once")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.cache, args.min_faces, args.min_samples,
                             singletons=args.singletons), indent=2))


if __name__ == "__main__":
    main()
