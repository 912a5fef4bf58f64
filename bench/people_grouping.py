"""Time of grouping faces into people (index.people.update_people) as an index grows by runs.

    python bench/people_grouping.py [--faces 12000] [--runs 12] [--strangers 0.3]

SYNTHETIC identity vectors, stored the way facesearch stores them (a temporary SQLite index made
through Store.add_photo, identity vectors as float16 bytes): identities are unit vectors drawn
at random in 512 dimensions, each with a number of photos drawn from a geometric distribution
(mean 5), each face its identity's centre plus Gaussian noise scaled so that its cosine with the
centre is about 0.7 (two faces of one identity then score about 0.5, like ArcFace's same-person
pairs; two identities about 0); `--strangers` of the faces are people seen once (they never
make a person and stay unassigned, as passers-by in a real library do). The faces arrive in
`--runs` index runs of equal size, in random order; after each run `update_people` runs as
`facesearch index` calls it, and is timed. Printed: each run's time and what it did, the total,
and BCubed precision / recall / F of the people found against the synthetic identities (faces
in no person counted as their own), so a faster grouping is seen not to group worse.
Timings are of one process on a machine whose other work is not controlled: compare figures of
the same run (or runs made one after the other).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from facesearch.index.people import update_people
from facesearch.index.store import FaceRow, Store
from facesearch.models.arcface import calibration
from facesearch.settings import DEFAULTS
from facesearch.spec import IDENTITY, IDENTITY_DIM, MASTER
from facesearch.training.metrics import bcubed

#: Cosine of a synthetic face with its identity's centre.
CENTRE_COSINE = 0.7


def synthetic_identities(faces: int, strangers: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors (faces, 512) float32 unit, identity labels (faces,) int64), shuffled: see the
    module's docstring."""
    rng = np.random.default_rng(seed)
    alone = round(faces * strangers)
    counts: list[int] = []
    while sum(counts) < faces - alone:
        counts.append(int(rng.geometric(1 / 5)) + 1)
    counts[-1] -= sum(counts) - (faces - alone)
    counts = [c for c in counts if c > 0] + [1] * alone
    labels = np.repeat(np.arange(len(counts)), counts)
    centres = rng.standard_normal((len(counts), IDENTITY_DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = np.sqrt((1 / CENTRE_COSINE ** 2 - 1) / IDENTITY_DIM)
    vectors = centres[labels] + rng.standard_normal((len(labels), IDENTITY_DIM)).astype(np.float32) * sigma
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    order = rng.permutation(len(labels))
    return vectors[order].astype(np.float32), labels[order]


def add_faces(store: Store, vectors: np.ndarray, first: int) -> None:
    """One photo per face, its identity vector stored (vector ids first..)."""
    with store.session() as session:
        for n, vector in enumerate(vectors):
            vector_id = first + n
            store.add_photo(session, path=f"/synthetic/{vector_id}.jpg", content_hash=f"{vector_id:064x}",
                            size=1, mtime=0.0, faces=[{
                                "x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0, "landmarks": [],
                                "det_score": 1.0, "attributes": {}, "vector_id": vector_id,
                                "vectors": {MASTER: vector_id, IDENTITY: vector_id},
                                "embeddings": {IDENTITY: vector}}])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=12_000)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--strangers", type=float, default=0.3)
    args = parser.parse_args(argv)
    vectors, labels = synthetic_identities(args.faces, args.strangers)
    threshold = calibration().threshold
    with tempfile.TemporaryDirectory() as folder:
        store = Store.for_index_dir(Path(folder))
        total = 0.0
        for run, part in enumerate(np.array_split(np.arange(len(vectors)), args.runs), start=1):
            add_faces(store, vectors[part], int(part[0]))
            started = time.perf_counter()
            done = update_people(store, threshold, DEFAULTS.people_min_faces, DEFAULTS.people_min_samples)
            took = time.perf_counter() - started
            total += took
            print(f"run {run:2d}: {int(part[-1]) + 1:6d} faces, {took:6.2f} s  joined {done.assigned}, "
                  f"new people {done.created} ({done.clustered} faces), unassigned {done.unassigned}",
                  flush=True)
        with store.session() as session:
            found = dict(session.execute(sa.select(FaceRow.vector_id, FaceRow.person_id)).all())
        store.close()
    person = np.array([found[i] if found[i] is not None else -1 for i in range(len(labels))])
    scores = bcubed(person, labels)
    print(f"total {total:.1f} s over {args.runs} runs, {len(labels)} synthetic faces "
          f"({args.strangers:.0%} seen once); BCubed P {scores['precision']:.3f} "
          f"R {scores['recall']:.3f} F {scores['f']:.3f}")


if __name__ == "__main__":
    main()
