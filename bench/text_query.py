"""Warm text-query latency on 100,000 synthetic faces stored the way facesearch stores them.

    python bench/text_query.py [--faces 100000] [--repeats 5]

Builds a temporary index through the real storage (facesearch's VectorSpace, which turns IVF past
IVF_THRESHOLD faces, and its SQL store with one attributes dict per face), then times
`FaceSearch.query(text=..., k=10)` for QUERIES (the text model and the index loaded once per
process, before timing). The synthetic faces are shaped like ours: 7 unit-norm 52-dim blocks,
drawn around the shipped class centres for a random class profile, with class probabilities that
agree with that profile.

Printed beside it, in the same run:
- the stages of one query (parse, vector, FAISS pool search, SQL fetch of the pool's rows,
  re-rank), timed alone with the same inputs;
- baseline: brute-force numpy scoring of all faces (vectors @ q, top 10), no SQL;
- an alternative: the same re-ranking with the pool's probabilities read from an in-memory
  (faces x classes) matrix instead of SQL rows, and class fit computed over every face;
- how often the top 10 from the (IVF) index equals the top 10 from an exact search, both ranked
  by `search.planner.rank` (the query path `FaceSearch.query` runs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from facesearch import FaceSearch
from facesearch.search import text
from facesearch.search import ranking as queries
from facesearch.search.planner import Request, rank
from facesearch.search.terms import COLUMNS, class_fit
from facesearch.spec import (AGE_GROUPS, CELEBA_ATTRIBUTES, CLASSES, ETHNICITIES, GENDERS, REGION_DIM, REGIONS, VECTOR_DIM)
from facesearch.index.spaces import FAISS_FILENAME
from facesearch.models.descriptor import shipped_model
from facesearch.index.store import FaceRow, PhotoRow, Store
from facesearch.index.spaces import VectorSpace

QUERIES = (
    "black hair, smiling", "blond woman, no glasses", "a grinning blonde",
    "clean-shaven guy with specs", "a bearded man", "dark-haired woman", "silver-haired man",
    "a guy in a cap", "a woman with painted lips", "an old man", "a youthful woman with curls",
    "a dude in a suit and tie", "a girl with hoops in her ears", "a fair-haired person without a smile",
    "smiling man", "bald", "wearing necktie", "a woman in her thirties with bangs",
    "heavy makeup, wavy hair, earrings", "an unshaven guy",
)
#: Queries with words the parser has not seen yet (their spans go through the encoder once).
NOVEL_QUERIES = (
    "a cheerful gal with ginger hair", "a gloomy fellow with a pointy nose",
    "grumpy grandpa with thick eyebrows", "a freckled teen wearing a beanie",
    "an exhausted-looking man with stubble", "a lady with sparkly earrings and a choker",
)


def synthetic_faces(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 364) vectors with 7 unit-norm blocks and (n, len(CLASSES)+1) probabilities (+ age)."""
    rng = np.random.default_rng(seed)
    centres = shipped_model().centres.astype(np.float32)
    average = queries.average_face(centres)
    n_celeba = len(CELEBA_ATTRIBUTES)
    profile = np.zeros((n, len(CLASSES)), np.float32)
    profile[:, :n_celeba] = rng.random((n, n_celeba)) < 0.2
    for names in (GENDERS, [g for g, _, _ in AGE_GROUPS], ETHNICITIES):
        columns = np.array([CLASSES.index(name) for name in names])
        profile[np.arange(n), rng.choice(columns, n)] = 1
    vectors = np.empty((n, VECTOR_DIM), np.float32)
    for start in range(0, n, 10_000):
        part = profile[start:start + 10_000]
        clean = average + part @ (centres - average) / np.maximum(part.sum(1, keepdims=True), 1) * 4
        noisy = clean + rng.normal(0, 0.06, clean.shape).astype(np.float32)
        blocks = noisy.reshape(len(part), len(REGIONS), REGION_DIM)
        blocks /= np.linalg.norm(blocks, axis=2, keepdims=True)
        vectors[start:start + len(part)] = blocks.reshape(len(part), VECTOR_DIM)
    probabilities = np.where(profile > 0, rng.beta(8, 2, profile.shape), rng.beta(1.5, 8, profile.shape))
    ages = rng.uniform(5, 80, (n, 1))
    return vectors, np.concatenate([probabilities, ages], axis=1).astype(np.float32)


def build_index(folder: Path, vectors: np.ndarray, probabilities: np.ndarray) -> None:
    """Write the faces into a FaceSearch index folder (SQL rows in bulk, then the vectors)."""
    n = len(vectors)
    store = Store.for_index_dir(folder)
    now = time.time()
    model = shipped_model().version  # the model that "described" them: queries compare only one model's vectors
    with store.session() as session:
        for start in range(0, n, 20_000):
            stop = min(start + 20_000, n)
            session.execute(sa.insert(PhotoRow), [
                {"id": i + 1, "path": f"/photos/{i:06d}.jpg", "content_hash": f"{i:064x}",
                 "size": 100_000, "mtime": now, "status": "indexed", "width": 640, "height": 480,
                 "model_version": model}
                for i in range(start, stop)])
            session.execute(sa.insert(FaceRow), [
                {"id": i + 1, "photo_id": i + 1, "face_index": 0, "x0": 100.0, "y0": 80.0,
                 "x1": 300.0, "y1": 320.0, "landmarks": [[0.0, 0.0]] * 5, "det_score": 0.99,
                 "attributes": dict(zip(COLUMNS, np.round(probabilities[i], 4).tolist())),
                 "vector_id": i}
                for i in range(start, stop)])
    store.set_meta("model_version", model)
    store.close()
    index = VectorSpace.open(folder / FAISS_FILENAME)
    index.add(np.arange(n), vectors)
    index.save()


def clock(function, *args):
    """(milliseconds, result) of one call."""
    start = time.perf_counter()
    result = function(*args)
    return (time.perf_counter() - start) * 1000, result


def line(name: str, times: list[float]) -> str:
    return (f"  {name:60} median {statistics.median(times):7.2f} ms   "
            f"min {min(times):7.2f}   max {max(times):7.2f}")


def stage_times(fs: FaceSearch, probabilities: np.ndarray, repeats: int) -> dict[str, list[float]]:
    """Each stage of a text query alone, today's path and the proposed lighter reads."""
    centres, pool = fs._model.centres, queries.pool_size(10)

    def attributes_of(ids: list[int]) -> dict:
        query = sa.select(FaceRow.vector_id, FaceRow.attributes).where(FaceRow.vector_id.in_(ids))
        with fs.store.session() as session:
            return dict(session.execute(query).all())

    stages: dict[str, list[float]] = {}
    for q in QUERIES:
        for _ in range(repeats):
            timings = {}
            timings["parse (spans cached)"], understood = clock(text.parse, q)
            terms = understood.terms
            timings["query vector"], vector = clock(queries.text_vector, terms, centres)
            timings[f"index search, pool {pool}"], (scores, ids) = clock(
                fs.vectors.search, vector[None], pool)
            ids = ids[0].tolist()
            candidates = list(zip(scores[0].tolist(), ids))
            timings["store.counts() (orphan check)"], _ = clock(fs.store.counts)
            timings[f"SQL: face + photo rows of the pool ({pool})"], rows = clock(
                fs.store.faces_by_vector_ids, ids)
            timings["re-rank the pool (attribute dicts)"], ranked = clock(
                queries.rerank, terms, candidates, [rows[i][0].attributes for i in ids])
            timings["per-region scores of the 10 hits"], _ = clock(
                fs.vectors.reconstruct, [i for _, i in ranked[:10]])
            timings[f"proposed: SQL (vector_id, attributes) of the pool ({pool})"], _ = clock(
                attributes_of, ids)
            timings["proposed: SQL face + photo rows of the 10 hits"], _ = clock(
                fs.store.faces_by_vector_ids, ids[:10])
            timings["proposed: re-rank from an in-memory probability matrix"], _ = clock(
                queries.rerank, terms, candidates, probabilities[ids])
            for name, ms in timings.items():
                stages.setdefault(name, []).append(ms)
    return stages


class _ExactSpace:
    """Exact inner products over every vector (numpy), as the planner's Space."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int, restrict=None) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self.vectors.T
        order = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(scores, order, axis=1), order


class _MatrixCatalog:
    """Class probabilities of every face in a (faces x COLUMNS) matrix, as the planner's Catalog."""

    def __init__(self, probabilities: np.ndarray):
        self.matrix = probabilities

    def count(self) -> int:
        return len(self.matrix)

    def probabilities(self, ids: np.ndarray, names) -> tuple[np.ndarray, np.ndarray]:
        return np.ones(len(ids), dtype=bool), self.matrix[ids]


def baselines(fs: FaceSearch, vectors: np.ndarray, probabilities: np.ndarray,
              repeats: int) -> tuple[dict[str, list[float]], float]:
    """Brute-force numpy scoring, class fit of every face, and how far the index's pool gives
    the same top 10 as an exact pool."""
    centres = fs._model.centres
    times: dict[str, list[float]] = {}
    agree = []
    for q in QUERIES:
        terms = text.parse(q).terms
        vector = queries.text_vector(terms, centres)
        for _ in range(repeats):
            ms, _ = clock(lambda v: np.argpartition(-(vectors @ v), 10)[:10], vector)
            times.setdefault(f"brute-force numpy: all {len(vectors)} vectors @ q, top 10", []).append(ms)
            ms, _ = clock(lambda t: np.argpartition(-class_fit(t, probabilities), 10)[:10],
                          terms)
            times.setdefault(f"class fit of all {len(vectors)} faces (matrix), top 10", []).append(ms)
        # the query path (search.planner.rank) over an exact in-memory space and over the index
        request = Request(k=10, terms=terms)
        catalog = _MatrixCatalog(probabilities)
        top_exact = rank(request, centres, _ExactSpace(vectors), catalog).candidates
        top_index = rank(request, centres, fs.vectors, catalog).candidates
        agree.append(len({i for _, i in top_exact} & {i for _, i in top_index}) / 10)
    return times, float(np.mean(agree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {args.faces} synthetic faces")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "index"
        ms, (vectors, probabilities) = clock(synthetic_faces, args.faces)
        ms += clock(build_index, folder, vectors, probabilities)[0]
        print(f"built in {ms / 1000:.1f} s")
        fs = FaceSearch(folder)
        ms, _ = clock(lambda: fs.query(text="a smiling person", k=10))
        print(f"first query (loads the text model, the index, the centres): {ms:.0f} ms")
        print(f"index: {fs.vectors.index_type}, {len(fs.vectors)} vectors")

        def query(q: str) -> float:
            return clock(lambda: fs.query(text=q, k=10))[0]

        print(f"\nwarm FaceSearch.query(text=..., k=10), {len(QUERIES)} queries:")
        print(line("each query once (parse cache as a fresh process has it)",
                   [query(q) for q in QUERIES]))
        print(line(f"repeated (x{args.repeats})",
                   [query(q) for _ in range(args.repeats) for q in QUERIES]))
        print(line(f"{len(NOVEL_QUERIES)} queries with words never seen (encoder runs)",
                   [query(q) for q in NOVEL_QUERIES]))

        print("\nstages of one query, alone:")
        stages = stage_times(fs, probabilities, args.repeats)
        for name, times in stages.items():
            print(line(name, times))
        today = sum(statistics.median(stages[name]) for name in stages
                    if not name.startswith("proposed"))
        proposed = sum(statistics.median(times) for name, times in stages.items()
                       if not name.startswith(("store.counts", "SQL", "re-rank", "proposed: SQL ("))
                       )
        print(f"  sum of medians: today's stages {today:.1f} ms; with the in-memory matrix, no "
              f"orphan count and rows for the hits only {proposed:.1f} ms")

        times, agree = baselines(fs, vectors, probabilities, args.repeats)
        print("\nbaseline and alternative (no SQL):")
        for name, values in times.items():
            print(line(name, values))
        print(f"\ntop 10 from the index's pool vs from an exact pool: {agree:.3f} overlap "
              f"({fs.vectors.index_type})")
        fs.close()


if __name__ == "__main__":
    main()
