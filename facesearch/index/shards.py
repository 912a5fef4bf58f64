"""Sharded search: one vector space split by vector id over several FAISS indexes, searched
together and merged, for collections larger than one machine's memory.

A face's shard is its vector id modulo the number of shards (`shard_of`): stable, needs no
lookup table, and spreads faces evenly whatever order they were added in. Every shard is a copy
of one trained index (the same Flat, or the same IVF centroids and codes), so an IVF shard set
probes the same lists as the single index and returns the same hits (each list's vectors are
only split between shards); a Flat shard set is exact like a single Flat index.

In one process `ShardedIndex` searches its shards with FAISS's `IndexShards` (one thread per
shard, ids kept as stored: `successive_ids=False`) and merges the k best; across machines each
shard is held by its own process (e.g. a Ray actor calling `ShardedIndex.search_shard` there)
and `merge_results` merges their answers the same way. Files: `<stem>.shard<i>of<n>.faiss` in a
folder, one per shard, each a plain FAISS file.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import faiss
import numpy as np

from facesearch.index.spaces import VectorSpace

#: Vectors handled per chunk when copying into shards.
_CHUNK = 65_536


def shard_of(ids: np.ndarray, count: int) -> np.ndarray:
    """The shard (0..count-1) of each vector id (int64 (n,)): id modulo count. ValueError for
    count < 1."""
    if count < 1:
        raise ValueError(f"a shard set needs at least one shard (got {count})")
    return np.asarray(ids, dtype=np.int64) % count


def merge_results(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard answers [(scores (n, k_i), ids (n, k_i)), ...] (inner products, larger is
    better; id -1 pads) into the k best (scores, ids), each (n, k), best first, -1 padded."""
    scores = np.concatenate([np.asarray(s, np.float32) for s, _ in parts], axis=1)
    ids = np.concatenate([np.asarray(i, np.int64) for _, i in parts], axis=1)
    scores = np.where(ids < 0, -np.inf, scores)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_ids = np.take_along_axis(ids, order, axis=1)
    top_ids[~np.isfinite(top_scores)] = -1
    return top_scores.astype(np.float32), top_ids


def _empty_copy(index: faiss.Index) -> faiss.Index:
    """A copy of a trained index (its centroids and codebooks) holding no vectors."""
    copy = faiss.clone_index(index)
    copy.reset()
    return copy


class ShardedIndex:
    """Vectors of one space split by vector id over `len(shards)` FAISS indexes of the same
    kind and training (see the module's docstring); searched together with IndexShards."""

    def __init__(self, shards: Sequence[faiss.Index]) -> None:
        """`shards`: FAISS indexes with ids (IndexIDMap2 Flat, or IVF), all of one dimension;
        shard i must hold only ids with shard_of(id, len(shards)) == i."""
        if not shards:
            raise ValueError("a shard set needs at least one shard")
        dims = {int(shard.d) for shard in shards}
        if len(dims) != 1:
            raise ValueError(f"shards of different dimensions: {sorted(dims)}")
        self.shards = list(shards)
        self.dim = dims.pop()
        self._searcher = faiss.IndexShards(self.dim, True, False)  # threaded, ids kept
        for shard in self.shards:
            self._searcher.add_shard(shard)

    @classmethod
    def from_space(cls, space: VectorSpace, count: int) -> ShardedIndex:
        """Split a vector space into `count` shards by vector id. Flat: each shard a Flat index
        of its vectors; IVF: each a copy of the trained index (same centroids, codebooks and
        nprobe) given its vectors' stored codes, so nothing is re-encoded."""
        index = space.faiss_index
        empty = [_empty_copy(index) for _ in range(count)]
        if isinstance(index, faiss.IndexIVF):
            lists = index.invlists
            for shard in empty:
                shard.nprobe = index.nprobe
                shard.set_direct_map_type(faiss.DirectMap.NoMap)
            for number in range(lists.nlist):
                size = lists.list_size(number)
                if not size:
                    continue
                ids = faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
                codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size).copy()
                codes = codes.reshape(size, lists.code_size)
                where = shard_of(ids, count)
                for target in range(count):
                    chosen = np.flatnonzero(where == target)
                    if len(chosen):  # both arrays named: swig_ptr does not keep a temporary alive
                        part_ids = np.ascontiguousarray(ids[chosen])
                        part = np.ascontiguousarray(codes[chosen])
                        empty[target].invlists.add_entries(
                            number, len(chosen), faiss.swig_ptr(part_ids), faiss.swig_ptr(part))
            for shard in empty:
                shard.ntotal = sum(shard.invlists.list_size(i) for i in range(shard.nlist))
            return cls(empty)
        ids = space.ids()
        sharded = cls(empty)
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            sharded.add(chunk, space.reconstruct(chunk))
        return sharded

    def __len__(self) -> int:
        return int(sum(shard.ntotal for shard in self.shards))

    def sizes(self) -> list[int]:
        """Vectors in each shard."""
        return [int(shard.ntotal) for shard in self.shards]

    def add(self, ids: Iterable[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (n, dim) float32 under int64 ids (n,), each to its shard."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise ValueError(f"expected vectors of shape ({len(ids)}, {self.dim}), got {vectors.shape}")
        where = shard_of(ids, len(self.shards))
        for number, shard in enumerate(self.shards):
            chosen = np.flatnonzero(where == number)
            if len(chosen):
                shard.add_with_ids(vectors[chosen], ids[chosen])

    def remove(self, ids: Iterable[int] | np.ndarray) -> int:
        """Remove these ids from their shards (unknown ones are ignored); returns how many."""
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        where = shard_of(ids, len(self.shards))
        return int(sum(shard.remove_ids(faiss.IDSelectorBatch(ids[where == number]))
                       for number, shard in enumerate(self.shards) if (where == number).any()))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, ids) over all shards, each (n, k), best first; -1 pads when
        fewer than k vectors are stored."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        return self._searcher.search(queries, k)

    def search_shard(self, number: int, queries: np.ndarray, k: int
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Shard `number`'s own k best (scores, ids): what a process holding only that shard
        answers; merge_results merges such answers into `search`'s."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        return self.shards[number].search(queries, k)

    def memory_bytes(self) -> list[int]:
        """Bytes each shard's vectors or codes and ids take (without centroids and tables)."""
        sizes = []
        for shard in self.shards:
            code = shard.code_size if isinstance(shard, faiss.IndexIVF) else self.dim * 4
            sizes.append(int(shard.ntotal) * (code + 8))
        return sizes

    def save(self, folder: Path, stem: str = "vectors") -> list[Path]:
        """Write each shard to `folder`/<stem>.shard<i>of<n>.faiss; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{stem}.shard{i}of{len(self.shards)}.faiss" for i in range(len(self.shards))]
        for shard, path in zip(self.shards, paths):
            faiss.write_index(shard, str(path))
        return paths

    @classmethod
    def open(cls, folder: Path, count: int, stem: str = "vectors") -> ShardedIndex:
        """Read the `count` shards saved by `save` (FileNotFoundError if one is missing)."""
        paths = [Path(folder) / f"{stem}.shard{i}of{count}.faiss" for i in range(count)]
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"missing shard file {path}")
        return cls([faiss.read_index(str(path)) for path in paths])


class _ShardHolder:
    """One shard inside a Ray actor: read from its file where the actor runs (a machine's own
    disk), searched there; only queries and (scores, ids) cross the network."""

    def __init__(self, path: str) -> None:
        self.index = faiss.read_index(path)

    def size(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


class RayShards:
    """Shards held by Ray actors, one per shard file, placed anywhere in the cluster that
    `ray.init` joined (Ray must be installed: the `ray` extra); a search sends the queries to
    every actor and merges their answers (merge_results): the same hits as ShardedIndex.search
    over the same files. Each actor reads its file by path on the machine it runs on."""

    def __init__(self, paths: Sequence[Path], num_cpus: float = 0.0) -> None:
        """Start one actor per shard file (`paths`, e.g. ShardedIndex.save's); `num_cpus`: the
        CPUs Ray reserves for each actor (0: placed whatever the other work)."""
        import ray  # optional dependency: only this class needs it

        holder = ray.remote(_ShardHolder)
        self._ray = ray
        self.actors = [holder.options(num_cpus=num_cpus).remote(str(path)) for path in paths]

    def sizes(self) -> list[int]:
        """Vectors each actor's shard holds."""
        return [int(size) for size in self._ray.get([actor.size.remote() for actor in self.actors])]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, ids) over all shards, each (n, k), best first, -1 padded."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        parts = self._ray.get([actor.search.remote(queries, k) for actor in self.actors])
        return merge_results(parts, k)

    def close(self) -> None:
        """Stop the actors."""
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
