"""Sharded search gives the same hits as one index, on real master vectors (CelebA faces
described by the shipped model); compressed codes re-ranked with exact vectors keep recall;
IVF with an HNSW quantizer (trained by two-level k-means) works like the flat one; retraining
waits for the end of an indexing run.

The real collection is small (a few hundred faces) so the test stays fast; bench/search_scale.py
measures the same at 1M faces."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from conftest import sample
from facesearch.index import spaces as vi
from facesearch.index.repair import exact_vectors_from
from facesearch.index.shards import RayShards, ShardedIndex, merge_results, shard_of
from facesearch.index.spaces import VectorSpace

#: Photos described for the real collection (CelebA aligned crops, one face each).
REAL_PHOTOS = 160


@pytest.fixture
def one_faiss_thread() -> Iterator[None]:
    """FAISS on one thread for the block: PQ training runs 91 small k-means, each split over
    OpenMP threads, which costs far more than it gains on a small, busy machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def real(describer, data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors (n, 364), queries): master vectors of real faces under scattered ids, and
    queries of other real faces (not stored)."""
    photos = sample(data_dir / "celeba" / "aligned_small", REAL_PHOTOS + 40)
    vectors = [faces[0].vector for faces in describer.describe_many(photos) if faces]
    vectors = np.stack(vectors).astype(np.float32)
    assert len(vectors) >= REAL_PHOTOS * 0.9
    stored, queries = vectors[:-30], vectors[-30:]
    ids = np.random.default_rng(5).choice(10**6, size=len(stored), replace=False).astype(np.int64)
    return ids, stored, queries


def filled(path: Path, ids: np.ndarray, vectors: np.ndarray, **options) -> VectorSpace:
    space = VectorSpace.open(path, **options)
    space.add(ids, vectors)
    return space


def test_shard_of_spreads_ids_and_merge_keeps_the_best() -> None:
    ids = np.arange(1000, dtype=np.int64)
    counts = np.bincount(shard_of(ids, 4), minlength=4)
    assert counts.tolist() == [250] * 4
    with pytest.raises(ValueError):
        shard_of(ids, 0)
    parts = [(np.array([[0.9, 0.1]]), np.array([[4, 8]])), (np.array([[0.5, -1.0]]), np.array([[3, -1]]))]
    scores, found = merge_results(parts, 3)
    assert found.tolist() == [[4, 3, 8]] and np.allclose(scores, [[0.9, 0.5, 0.1]])
    assert merge_results(parts, 5)[1].tolist() == [[4, 3, 8, -1, -1]]


@pytest.mark.parametrize("count", [2, 3])
def test_flat_shards_equal_one_flat_index(tmp_path: Path, real, count: int) -> None:
    ids, vectors, queries = real
    one = filled(tmp_path / "one.faiss", ids, vectors)
    sharded = ShardedIndex.from_space(one, count)
    assert sum(sharded.sizes()) == len(one) and max(sharded.sizes()) - min(sharded.sizes()) < len(ids) // 4
    for number, shard in enumerate(sharded.shards):  # each shard holds only its own ids
        held = np.array([shard.id_map.at(i) for i in range(shard.ntotal)])
        assert (shard_of(held, count) == number).all()
    expected = one.search(queries, 10)
    got = sharded.search(queries, 10)
    assert np.array_equal(got[1], expected[1])
    assert np.allclose(got[0], expected[0], atol=1e-5)
    # per-shard answers merged (what processes each holding one shard return) are the same
    merged = merge_results([sharded.search_shard(i, queries, 10) for i in range(count)], 10)
    assert np.array_equal(merged[1], expected[1])
    # saved and opened again, added to and removed from, it still agrees with the single index
    assert len(sharded.save(tmp_path, "s")) == count
    reopened = ShardedIndex.open(tmp_path, count, stem="s")
    assert np.array_equal(reopened.search(queries, 10)[1], expected[1])
    gone = expected[1][:, 0]
    assert reopened.remove(gone) == len(np.unique(gone))
    one.remove(gone)
    assert np.array_equal(reopened.search(queries, 10)[1], one.search(queries, 10)[1])
    with pytest.raises(FileNotFoundError):
        ShardedIndex.open(tmp_path, count + 5, stem="s")


def test_ivf_shards_give_the_same_hits_as_one_ivf_index(tmp_path: Path, real) -> None:
    ids, vectors, queries = real
    one = filled(tmp_path / "ivf.faiss", ids, vectors, ivf_threshold=64)
    assert one.is_ivf and one.faiss_index.nlist >= 2
    sharded = ShardedIndex.from_space(one, 3)
    assert len(sharded) == len(one)
    expected = one.search(queries, 10)
    got = sharded.search(queries, 10)
    # same lists probed, each list's vectors split between shards: the same hits
    assert np.array_equal(got[1], expected[1])
    assert np.allclose(got[0], expected[0], atol=1e-5)


def test_ray_actors_holding_shards_give_the_same_hits(tmp_path: Path, real, ray_address: str) -> None:
    import ray

    ids, vectors, queries = real
    one = filled(tmp_path / "ivf.faiss", ids, vectors, ivf_threshold=64)
    paths = ShardedIndex.from_space(one, 2).save(tmp_path / "shards")
    ray.init(address=ray_address, log_to_driver=False)
    try:
        held = RayShards(paths)
        assert sum(held.sizes()) == len(one)
        scores, found = held.search(queries, 10)
        expected = one.search(queries, 10)
        assert np.array_equal(found, expected[1]) and np.allclose(scores, expected[0], atol=1e-5)
        held.close()
    finally:
        ray.shutdown()


def test_compressed_codes_reranked_with_exact_vectors_keep_recall(tmp_path: Path, one_faiss_thread) -> None:
    from test_scale import clustered, jitter

    vectors = clustered(2500, seed=3)
    ids = np.arange(len(vectors), dtype=np.int64) * 5 + 1
    queries = jitter(vectors[::25], seed=4)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    truth = ids[exact]

    def recall(found: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))

    lookup = dict(zip(ids.tolist(), range(len(ids))))

    def from_store(wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        known = np.sort(np.array([i for i in wanted if i in lookup], np.int64))
        return known, vectors[[lookup[i] for i in known]].astype(np.float16).astype(np.float32)

    plain = filled(tmp_path / "pq.faiss", ids, vectors, ivf_threshold=1000, compression="pq")
    plain_recall = recall(plain.search(queries, 10)[1])
    reranked = VectorSpace.open(tmp_path / "pq2.faiss", ivf_threshold=1000, compression="pq")
    reranked.exact = from_store
    reranked.add(ids, vectors)
    assert reranked.reranks and reranked.meta["rerank"] == vi.RERANK_FACTOR
    assert reranked.meta["recall_at_10"] >= vi.TARGET_RECALL
    scores, found = reranked.search(queries, 10)
    assert recall(found) >= 0.95 > plain_recall
    # scores are the exact inner products (float16 copies), best first
    assert np.allclose(scores[:, 0], np.einsum("nd,nd->n", queries, vectors[(found[:, 0] - 1) // 5]), atol=3e-2)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    # codes only in memory: under 200 bytes a face besides the shared centroids and codebooks
    per_face = reranked.faiss_index.code_size + 8 + vi._HASH_ENTRY_BYTES
    assert per_face <= 200
    # reconstruct gives the exact vectors; filtered searches re-rank too
    assert np.abs(reranked.reconstruct(ids[:5]) - vectors[:5]).max() < 2e-3
    allowed = ids[::2]
    restricted = reranked.search(queries, 10, restrict=allowed)[1]
    assert np.isin(restricted, allowed).all() and restricted.shape == (len(queries), 10)


def test_sql_vectors_are_the_exact_vectors(built_index, tmp_path: Path) -> None:
    store = built_index.fs.store
    ids, vectors = store.stored_vectors("master", 364)
    space = filled(tmp_path / "sq8.faiss", ids, vectors, ivf_threshold=4, compression="sq8")
    space.exact = exact_vectors_from(store, space)
    assert space.reranks
    assert np.array_equal(space.reconstruct(ids[::-1]), vectors[::-1])
    scores, found = space.search(vectors[:3], 1)
    assert found[:, 0].tolist() == ids[:3].tolist()
    assert np.allclose(scores[:, 0], np.einsum("nd,nd->n", vectors[:3], vectors[:3]), atol=1e-4)


def test_hnsw_quantizer_with_two_level_training(tmp_path: Path, monkeypatch) -> None:
    from test_scale import clustered, jitter

    monkeypatch.setattr(vi, "HNSW_QUANTIZER_LISTS", 8)
    vectors = clustered(3000, seed=6)
    ids = np.arange(len(vectors), dtype=np.int64) + 100
    space = filled(tmp_path / "h.faiss", ids, vectors, ivf_threshold=1000)
    assert "_HNSW32," in space.index_type and space.meta["recall_at_10"] >= vi.TARGET_RECALL
    queries = jitter(vectors[::60], seed=7)
    exact = ids[np.argmax(queries @ vectors.T, axis=1)]
    assert (space.search(queries, 1)[1][:, 0] == exact).mean() >= 0.9
    assert space.remove(ids[:10]) == 10 and not np.isin(space.search(vectors[:10], 5)[1], ids[:10]).any()
    space.save()
    again = VectorSpace.open(tmp_path / "h.faiss")
    assert again.index_type == space.index_type and again.nprobe == space.nprobe
    assert np.array_equal(again.search(queries, 10)[1], space.search(queries, 10)[1])


def test_retraining_waits_for_the_end_of_a_run(tmp_path: Path) -> None:
    from test_scale import clustered

    vectors = clustered(1200, seed=8)
    ids = np.arange(len(vectors), dtype=np.int64)
    space = VectorSpace.open(tmp_path / "d.faiss", ivf_threshold=300)
    space.defer_rebuild = True
    for start in range(0, 1200, 100):
        space.add(ids[start:start + 100], vectors[start:start + 100])
    assert not space.is_ivf and len(space) == 1200  # still Flat: exact, nothing stalled
    assert space.rebuild_if_due() and space.is_ivf and space.meta["trained_on"] == 1200
    assert not space.rebuild_if_due()
