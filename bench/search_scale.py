"""Vector search at scale on synthetic master vectors (prints its figures).

    python bench/search_scale.py [--sizes 100000,1000000] [--compressions none,sq8,pq] [--queries 200]

For each size: builds facesearch's index the way indexing does (VectorSpace.add past the IVF
threshold: training, adding, tuning nprobe for recall) for each compression, and reports build
time, memory (resident growth when a fresh process loads the saved file, and the file size),
single-query latency (median and p95 over the queries, one call each), batched latency (all the
queries in one call, per query), and recall@10 against exact search on *new* faces (queries
drawn from the same population, not stored). Baselines from the same run: exact FAISS (Flat)
and brute force with numpy over the same float32 vectors.

The vectors are shaped like facesearch's: 7 blocks of 52 dims, each unit-norm, clustered rather
than uniform. Faces come from 4096 latent "looks" (24-dim) shared by all blocks plus a per-block
look, mapped to each block through a fixed random matrix with a decaying spectrum, around a
per-block mean, plus isotropic noise. On 4100 faces this matches the statistics of real vectors
(the shipped model over UTKFace and CelebA-wild crops) closely:

                         per block: |mean|  mean cos  sd cos  nearest   sum of 7: top-1  top-10  top-100
    real (4100 faces)               0.33    0.11      0.27    0.85                4.50   3.56    2.72
    synthetic (4100)                0.30    0.09      0.30    0.81                4.21   3.54    2.85
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from facesearch.spec import REGION_DIM, REGIONS, VECTOR_DIM
from facesearch.index.spaces import VectorSpace

K = 10


def synthetic_faces(n: int, seed: int, looks: int = 4096, latent: int = 24, spread: float = 0.6,
                    noise: float = 0.35, mean_norm: float = 1.0, own: float = 0.5) -> np.ndarray:
    """n master vectors (n, 364) float32 from a fixed population; `seed` picks the faces."""
    population = np.random.default_rng(1234)
    blocks, dims = len(REGIONS), REGION_DIM
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(latent))
    mixing = population.standard_normal((blocks, dims, latent)) * spectrum / np.sqrt(latent)
    means = population.standard_normal((blocks, dims))
    means *= mean_norm / np.linalg.norm(means, axis=1, keepdims=True)
    shared_looks = population.standard_normal((looks, latent))
    block_looks = population.standard_normal((looks, blocks, latent))
    rng = np.random.default_rng(seed)
    out = np.empty((n, VECTOR_DIM), np.float32)
    for start in range(0, n, 65_536):
        m = min(65_536, n - start)
        shared = shared_looks[rng.integers(0, looks, m)][:, None, :]
        own_look = block_looks[rng.integers(0, looks, (m, blocks)), np.arange(blocks)[None]]
        z = (np.sqrt(1 - own**2) * shared + own * own_look
             + spread * rng.standard_normal((m, blocks, latent)))
        x = (means[None] + np.einsum("rdl,nrl->nrd", mixing, z)
             + noise * rng.standard_normal((m, blocks, dims)) / np.sqrt(dims))
        x /= np.linalg.norm(x, axis=2, keepdims=True)
        out[start:start + m] = x.reshape(m, VECTOR_DIM)
    return out


def loaded_rss_mib(path: Path) -> float:
    """Resident memory a fresh process gains by loading a saved index."""
    code = (
        "import faiss, sys\n"
        "def rss():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])\n"
        "before = rss(); index = faiss.read_index(sys.argv[1]); print((rss() - before) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def latencies(search, queries: np.ndarray) -> tuple[float, float, float]:
    """(median, p95) ms of one-query calls, and ms per query of one batched call."""
    single = []
    for q in queries:
        start = time.perf_counter()
        search(q[None])
        single.append((time.perf_counter() - start) * 1000)
    start = time.perf_counter()
    search(queries)
    batched = (time.perf_counter() - start) * 1000 / len(queries)
    return statistics.median(single), float(np.percentile(single, 95)), batched


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact)]))


def numpy_search(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Brute force: every inner product, then the k best."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def row(name: str, build: str, memory: str, single: tuple, batched: float, recall: str, note: str = "") -> None:
    print(f"  {name:22s} {build:>9s} {memory:>17s} {single[0]:8.2f} {single[1]:8.2f} {batched:9.3f} {recall:>9s}  {note}",
          flush=True)


def bench_size(n: int, compressions: list[str], n_queries: int, brute_queries: int, tmp: Path) -> None:
    started = time.perf_counter()
    vectors = synthetic_faces(n, seed=1)
    queries = synthetic_faces(n_queries, seed=2)
    ids = np.arange(n, dtype=np.int64)
    _, exact = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
    print(f"\n{n:,} faces ({n * VECTOR_DIM * 4 / 2**20:.0f} MiB of float32); {n_queries} new-face queries; "
          f"data + exact answers in {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPU cores, "
          f"FAISS {faiss.__version__} with {faiss.omp_get_max_threads()} threads")
    print(f"  {'index':22s} {'build s':>9s} {'memory MiB (file)':>17s} {'1-q ms':>8s} {'p95 ms':>8s} "
          f"{'batch ms/q':>9s} {'recall@10':>9s}")

    brute = latencies(lambda q: numpy_search(vectors, q), queries[:brute_queries])
    row("numpy brute force", "-", f"{vectors.nbytes / 2**20:.0f}", brute[:2], brute[2], "1.000", "baseline")

    flat = faiss.IndexFlatIP(VECTOR_DIM)
    start = time.perf_counter()
    flat.add(vectors)
    flat_build = time.perf_counter() - start
    exact_faiss = latencies(lambda q: flat.search(q, K), queries[:brute_queries])
    row("FAISS Flat (exact)", f"{flat_build:.1f}", f"{vectors.nbytes / 2**20:.0f}", exact_faiss[:2],
        exact_faiss[2], "1.000", "what facesearch uses below the IVF threshold")
    del flat
    gc.collect()

    for compression in compressions:
        path = tmp / f"{n}_{compression}.faiss"
        index = VectorSpace.open(path, compression=compression, ivf_threshold=min(n, 50_000))
        start = time.perf_counter()
        index.add(ids, vectors)
        build = time.perf_counter() - start
        index.save()
        found = index.search(queries, K)[1]
        times = latencies(lambda q: index.search(q, K), queries)
        memory = f"{loaded_rss_mib(path):.0f} ({path.stat().st_size / 2**20:.0f})"
        row(index.index_type, f"{build:.1f}", memory, times[:2], times[2], f"{recall_at_k(found, exact):.3f}",
            f"nprobe {index.nprobe}, recall at build {index.meta['recall_at_10']:.3f}; "
            f"{brute[0] / times[0]:.0f}x brute force")
        del index, found
        path.unlink()
        gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--compressions", default="none,sq8,pq")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--brute-queries", type=int, default=20, help="queries timed for the baselines")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            bench_size(n, args.compressions.split(","), args.queries, args.brute_queries, Path(tmp))


if __name__ == "__main__":
    main()
