"""Vector search at scale on synthetic master vectors (prints its figures).

    python bench/search_scale.py [--sizes 100000,1000000] [--compressions none,sq8,pq]
        [--today none,sq8,pq] [--shards 4] [--queries 200] [--cache DIR] [--sweep 16,24,32,48,64]

For each size: builds facesearch's index the way indexing does (VectorSpace.add past the IVF
threshold: training, adding, tuning nprobe for recall) for each compression, and reports build
time, memory (resident growth when a fresh process loads the saved file, and the file size, and
the index's own estimate per face), single-query latency (median over the queries, one call
each, with FAISS on 1 thread and on 2; p95 with 2), batched latency (all the queries in one
call, per query), and recall@10 against exact search on *new* faces (queries drawn from the
same population, not stored). Baselines from the same run: exact FAISS (Flat), brute force with
numpy over the same float32 vectors, and "today's" layout (`--today`: ~2 sqrt(n) lists, flat
quantizer, no re-ranking: the index types of the first release, IVF2048 at 1M).

Rows of the current layout (~16 sqrt(n) lists, HNSW quantizer from 4096 lists): compressed codes
are re-ranked with the exact vectors, read from a real SQL store (`face_vectors`, float16 rows,
as facesearch keeps them: the codes alone in memory) and, for comparison, from a float16 array
in memory. Then the uncompressed index split into `--shards` shards by vector id (IndexShards,
one process): whether it returns the same hits as the single index, and its latency. Last, the
checkpoint of an indexing run while the index is due for retraining: with retraining deferred
to the end of the run (what the indexer does) it takes milliseconds; the rebuild at the end
takes the build time shown (today's layout: a checkpoint stalled that long, mid-run).

`--cache DIR` keeps the built indexes (and the SQL store) there and reuses them: a second run
only measures (build times are those measured when built, kept in each file's metadata).

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
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
import sqlalchemy as sa

from facesearch.spec import MASTER, REGION_DIM, REGIONS, VECTOR_DIM
from facesearch.index import spaces as vi
from facesearch.index.shards import ShardedIndex
from facesearch.index.spaces import VectorSpace
from facesearch.index.store import Store, encode_vector

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


def latencies(search, queries: np.ndarray) -> tuple[float, float, float, float, float]:
    """Of one-query calls: the median CPU time with 1 FAISS thread (what the call costs a core
    of its own, whatever else the machine runs), the median wall time with 1 thread and with 2,
    p95 wall with 2 (ms); and ms per query of one batched call (2 threads)."""
    medians, cpu = [], []
    for threads in (1, 2):
        faiss.omp_set_num_threads(threads)
        single = []
        for q in queries:
            start, start_cpu = time.perf_counter(), time.process_time()
            search(q[None])
            single.append((time.perf_counter() - start) * 1000)
            cpu.append((time.process_time() - start_cpu) * 1000)
        medians.append(statistics.median(single))
    start = time.perf_counter()
    search(queries)
    batched = (time.perf_counter() - start) * 1000 / len(queries)
    return (statistics.median(cpu[:len(queries)]), medians[0], medians[1],
            float(np.percentile(single, 95)), batched)


@contextmanager
def todays_layout():
    """IVF indexes as the first release built them: ~2 sqrt(n) lists, a flat quantizer."""
    saved = vi.IVF_LISTS_PER_SQRT, vi.HNSW_QUANTIZER_LISTS
    vi.IVF_LISTS_PER_SQRT, vi.HNSW_QUANTIZER_LISTS = 2.0, 1 << 40
    try:
        yield
    finally:
        vi.IVF_LISTS_PER_SQRT, vi.HNSW_QUANTIZER_LISTS = saved


def sql_store(folder: Path, vectors: np.ndarray) -> Store:
    """A facesearch SQL store (SQLite) whose face_vectors rows hold these vectors (ids 0..n-1)
    as float16, the way indexing stores them; filled once, reused from `folder`."""
    store = Store.for_index_dir(folder)
    with store.session() as session:
        have = session.execute(sa.text("SELECT count(*) FROM face_vectors")).scalar()
    if have != len(vectors):
        connection = sqlite3.connect(store.sqlite_file)  # foreign keys off: no photo/face rows
        connection.execute("DELETE FROM face_vectors")
        for start in range(0, len(vectors), 65_536):
            chunk = vectors[start:start + 65_536]
            connection.executemany(
                "INSERT INTO face_vectors (face_id, space, vector_id, vector) VALUES (?, ?, ?, ?)",
                ((start + i, MASTER, start + i, encode_vector(v)) for i, v in enumerate(chunk)))
        connection.commit()
        connection.close()
    return store


def in_memory(vectors16: np.ndarray):
    """Exact vectors from a float16 array in memory (ids 0..n-1), as VectorSpace.exact wants."""
    def exact(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.unique(ids)
        return ids, vectors16[ids].astype(np.float32)
    return exact


def built(path: Path, ids: np.ndarray, vectors: np.ndarray, compression: str, threshold: int,
          exact=None) -> tuple[VectorSpace, float]:
    """The space at `path` (built and saved if the file is missing): (space, build seconds)."""
    if path.exists():
        space = VectorSpace.open(path, compression=compression, ivf_threshold=threshold)
        space.exact = exact
        return space, float(space.meta["build_seconds"])
    space = VectorSpace.open(path, compression=compression, ivf_threshold=threshold)
    space.exact = exact
    start = time.perf_counter()
    space.add(ids, vectors)
    seconds = time.perf_counter() - start
    space.meta["build_seconds"] = round(seconds, 1)
    space.save()
    return space, seconds


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact)]))


def numpy_search(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Brute force: every inner product, then the k best."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def row(name: str, build: str, memory: str, per_face: str, times: tuple, recall: str, note: str = "") -> None:
    print(f"  {name:34s} {build:>8s} {memory:>12s} {per_face:>7s} {times[0]:7.2f} {times[1]:7.2f} "
          f"{times[2]:7.2f} {times[3]:7.2f} {times[4]:8.3f} {recall:>6s}  {note}", flush=True)


def bench_size(n: int, compressions: list[str], today: list[str], shards: int, n_queries: int,
               brute_queries: int, tmp: Path, sweep: list[int] = ()) -> None:
    started = time.perf_counter()
    cached = tmp / f"data_{n}.npz"
    if cached.exists():
        data = np.load(cached)
        vectors, queries, exact = data["vectors"], data["queries"], data["exact"]
        queries, exact = queries[:n_queries], exact[:n_queries]
    else:
        vectors = synthetic_faces(n, seed=1)
        queries = synthetic_faces(n_queries, seed=2)
        _, exact = faiss.knn(queries, vectors, K, metric=faiss.METRIC_INNER_PRODUCT)
        np.savez(cached, vectors=vectors, queries=queries, exact=exact)
    ids = np.arange(n, dtype=np.int64)
    threshold = min(n, 50_000)
    load = os.getloadavg()[0]
    print(f"\n{n:,} faces ({n * VECTOR_DIM * 4 / 2**20:.0f} MiB of float32); {n_queries} new-face queries; "
          f"data + exact answers in {time.perf_counter() - started:.0f} s; {os.cpu_count()} CPU cores, "
          f"load average {load:.1f} at the start; FAISS {faiss.__version__}")
    print(f"  {'index':34s} {'build s':>8s} {'MiB (file)':>12s} {'B/face':>7s} {'1q CPU':>7s} {'1q 1thr':>7s} "
          f"{'1q 2thr':>7s} {'p95 2thr':>7s} {'batch/q':>8s} {'rec@10':>6s}")

    brute = latencies(lambda q: numpy_search(vectors, q), queries[:brute_queries])
    row("numpy brute force", "-", f"{vectors.nbytes / 2**20:.0f}", f"{VECTOR_DIM * 4}", brute, "1.000",
        "baseline")

    flat = faiss.IndexFlatIP(VECTOR_DIM)
    start = time.perf_counter()
    flat.add(vectors)
    flat_build = time.perf_counter() - start
    exact_faiss = latencies(lambda q, index=flat: index.search(q, K), queries[:brute_queries])
    row("FAISS Flat (exact)", f"{flat_build:.1f}", f"{vectors.nbytes / 2**20:.0f}", f"{VECTOR_DIM * 4}",
        exact_faiss, "1.000", "what facesearch uses below the IVF threshold")
    del flat
    gc.collect()

    def measure(space: VectorSpace, build: float, path: Path, label: str, note: str = "",
                memory: str | None = None) -> np.ndarray:
        found = space.search(queries, K)[1]
        times = latencies(lambda q: space.search(q, K), queries)
        if memory is None:
            memory = f"{loaded_rss_mib(path):.0f} ({path.stat().st_size / 2**20:.0f})"
        recall = recall_at_k(found, exact)
        row(label, f"{build:.0f}", memory, f"{space.memory_bytes() / n:.0f}", times, f"{recall:.3f}",
            f"nprobe {space.nprobe}, at build {space.meta['recall_at_10']:.3f}; "
            f"{brute[0] / times[0]:.0f}x brute force (CPU){note}")
        if sweep and space.is_ivf:  # recall and CPU a query at other nprobe: compare at equal recall
            tuned = space.nprobe
            for nprobe in sweep:
                vi._set_nprobe(space.faiss_index, nprobe)
                times = latencies(lambda q: space.search(q, K), queries)
                print(f"    nprobe {nprobe:4d}: recall@10 {recall_at_k(space.search(queries, K)[1], exact):.3f}, "
                      f"1 query {times[0]:.2f} ms CPU", flush=True)
            vi._set_nprobe(space.faiss_index, tuned)
        return found

    for compression in today:
        path = tmp / f"{n}_today_{compression}.faiss"
        with todays_layout():
            space, build = built(path, ids, vectors, compression, threshold)
            measure(space, build, path, f"{space.index_type} (today)")
        del space
        gc.collect()

    one = None
    for compression in compressions:
        path = tmp / f"{n}_{compression}.faiss"
        if compression == "none":
            space, build = built(path, ids, vectors, compression, threshold)
            measure(space, build, path, space.index_type)
            one = space
            continue
        store = sql_store(tmp / f"sql_{n}", vectors)
        sql_mib = store.sqlite_file.stat().st_size / 2**20
        space, build = built(path, ids, vectors, compression, threshold,
                             exact=lambda wanted: store.stored_vectors(MASTER, VECTOR_DIM, wanted))
        measure(space, build, path, f"{space.index_type} +rerank SQL",
                f"; {vi.RERANK_FACTOR}x k re-ranked, exact float16 from SQLite ({sql_mib:.0f} MiB on disk)")
        vectors16 = vectors.astype(np.float16)
        space.exact = in_memory(vectors16)
        rss = loaded_rss_mib(path) + vectors16.nbytes / 2**20
        measure(space, build, path, f"{space.index_type} +rerank RAM",
                f"; float16 copies in memory (+{VECTOR_DIM * 2} B/face, counted)",
                memory=f"{rss:.0f} ({path.stat().st_size / 2**20:.0f})")
        space.exact = None
        measure(space, build, path, f"{space.index_type} codes alone", "; no re-ranking")
        del space, vectors16
        store.close()
        gc.collect()

    if one is not None and shards > 1:
        sharded = ShardedIndex.from_space(one, shards)
        single = one.search(queries, K)[1]
        got = sharded.search(queries, K)[1]
        same = float(np.mean([np.array_equal(a, b) for a, b in zip(got, single)]))
        same_sets = float(np.mean([set(a) == set(b) for a, b in zip(got, single)]))
        times = latencies(lambda q: sharded.search(q, K), queries)
        row(f"{shards} shards of {one.index_type.split(',')[0]}", "-", "-",
            f"{one.memory_bytes() / n:.0f}", times, f"{recall_at_k(got, exact):.3f}",
            f"IndexShards by id % {shards} (sizes {min(sharded.sizes()):,}-{max(sharded.sizes()):,}); "
            f"same hits as one index for {same:.1%} of queries ({same_sets:.1%} as sets)")
        del sharded
        # a checkpoint of an indexing run while the index is due for retraining
        one.meta["trained_on"] = n // 8
        one.defer_rebuild = True
        extra = synthetic_faces(4096, seed=3)
        start = time.perf_counter()
        one.add(np.arange(n, n + len(extra), dtype=np.int64), extra)
        deferred = time.perf_counter() - start
        print(f"  checkpoint adding 4,096 faces while due for retraining: {deferred * 1000:.0f} ms with "
              f"retraining deferred to the end of the run (then one rebuild, the build time above); "
              f"today a checkpoint rebuilt on the spot, stalling the run for the build time of today's row",
              flush=True)
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--compressions", default="none,pq", help="current layout (re-ranked when compressed)")
    parser.add_argument("--today", default="none,sq8,pq", help="today's layout, as a baseline ('' for none)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--brute-queries", type=int, default=20, help="queries timed for the baselines")
    parser.add_argument("--cache", type=Path, help="keep built indexes here and reuse them")
    parser.add_argument("--sweep", default="", help="also measure IVF rows at these nprobe (e.g. 16,24,32,48,64)")
    args = parser.parse_args()
    split = lambda text: [part for part in text.split(",") if part]  # noqa: E731
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.cache or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for n in (int(s) for s in args.sizes.split(",")):
            bench_size(n, split(args.compressions), split(args.today), args.shards, args.queries,
                       args.brute_queries, folder, [int(p) for p in split(args.sweep)])


if __name__ == "__main__":
    main()
