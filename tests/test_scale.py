"""Search at scale: Flat -> IVF as the collection grows (same answers), compression, deletes that
stick in IVF, restricted (filtered) search, region weights, and the --where filter language.

Synthetic vectors (clustered, 7 unit-norm blocks) with a low IVF threshold keep this fast; the
last tests run the real pipeline on the shared index (weights, regions, filters through the API
and the command line)."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BuiltIndex, copy_photos, upgrade_to
from facesearch import FaceSearch, FaceSearchError
from facesearch.search import planner, ranking
from facesearch.settings import ENV, Settings
from facesearch.index import spaces as vi
from facesearch.spec import REGION_DIM, REGIONS, VECTOR_DIM
from facesearch.search.filters import FilterError, parse_filter
from facesearch.search.planner import search_filtered
from facesearch.index.store import PhotoStatus, Store
from facesearch.index.spaces import VectorSpace


def clustered(n: int, seed: int = 0, clusters: int = 40, noise: float = 0.6) -> np.ndarray:
    """n master vectors around `clusters` shared centres, every block unit-norm."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((clusters, len(REGIONS), REGION_DIM))
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, len(REGIONS), REGION_DIM))
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    return x.reshape(n, VECTOR_DIM).astype(np.float32)


def jitter(vectors: np.ndarray, seed: int = 1, amount: float = 0.3) -> np.ndarray:
    """New faces near stored ones (blocks re-normalised): realistic queries."""
    x = vectors.reshape(len(vectors), len(REGIONS), REGION_DIM).astype(np.float64)
    x = x + amount * np.random.default_rng(seed).standard_normal(x.shape) / np.sqrt(REGION_DIM)
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    return x.reshape(len(vectors), VECTOR_DIM).astype(np.float32)


def filled(path: Path, vectors: np.ndarray, ids: np.ndarray, batch: int = 500, **options) -> VectorSpace:
    index = VectorSpace.open(path, **options)
    for start in range(0, len(ids), batch):
        index.add(ids[start:start + batch], vectors[start:start + batch])
    return index


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return np.arange(3000, dtype=np.int64) * 3 + 7, clustered(3000)


# --- Flat -> IVF --------------------------------------------------------------------------------
def test_small_collections_stay_exact(tmp_path: Path, data) -> None:
    ids, vectors = data
    index = filled(tmp_path / "v.faiss", vectors[:900], ids[:900], ivf_threshold=1000)
    assert index.index_type == "Flat/IP" and not index.is_ivf
    assert index.stats()["recall_at_10"] == 1.0


def test_switch_to_ivf_keeps_results_consistent(tmp_path: Path, data) -> None:
    ids, vectors = data
    exact = filled(tmp_path / "exact.faiss", vectors, ids, ivf_threshold=10**9)
    grown = filled(tmp_path / "ivf.faiss", vectors, ids, ivf_threshold=1000)
    assert grown.is_ivf and grown.index_type.startswith("IVF") and grown.index_type.endswith(",Flat/IP")
    assert grown.meta["trained_on"] == 1000 and grown.meta["recall_at_10"] >= vi.TARGET_RECALL
    assert sorted(grown.ids().tolist()) == ids.tolist()

    queries = jitter(vectors[::25])
    exact_scores, exact_ids = exact.search(queries, 10)
    ivf_scores, ivf_ids = grown.search(queries, 10)
    assert (ivf_ids[:, 0] == exact_ids[:, 0]).mean() >= 0.95
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ivf_ids, exact_ids)])
    assert overlap >= 0.9, overlap
    same = ivf_ids[:, 0] == exact_ids[:, 0]
    np.testing.assert_allclose(ivf_scores[same, 0], exact_scores[same, 0], atol=1e-4)
    # vectors stay exact and reconstructable by id (per-region scores)
    np.testing.assert_array_equal(grown.reconstruct(ids[[5, 2999]]), vectors[[5, 2999]])

    grown.save()
    reopened = VectorSpace.open(tmp_path / "ivf.faiss")
    assert (reopened.index_type, reopened.nprobe, reopened.meta["recall_at_10"]) == (
        grown.index_type, grown.nprobe, grown.meta["recall_at_10"])
    np.testing.assert_array_equal(reopened.search(queries, 10)[1], ivf_ids)
    described = reopened.stats()
    assert described["nlist"] > 1 and described["memory_bytes"] > 3000 * VECTOR_DIM * 4


def test_retrained_when_grown_four_times(tmp_path: Path, data) -> None:
    ids, vectors = data
    index = filled(tmp_path / "v.faiss", vectors[:600], ids[:600], batch=600, ivf_threshold=500)
    assert index.is_ivf and index.meta["trained_on"] == 600
    first_lists = index.stats()["nlist"]
    index.add(ids[600:2399], vectors[600:2399])
    assert index.meta["trained_on"] == 600  # 2399 < 4 x 600
    index.add(ids[2399:2400], vectors[2399:2400])
    assert index.meta["trained_on"] == 2400 and index.stats()["nlist"] > first_lists
    assert len(index) == 2400 and index.search(vectors[:1], 1)[1][0, 0] == ids[0]


def test_saved_file_is_one_faiss_file_with_trailing_meta(tmp_path: Path, data) -> None:
    import faiss

    ids, vectors = data
    index = filled(tmp_path / "v.faiss", vectors[:1200], ids[:1200], ivf_threshold=1000)
    index.save()
    assert [p.name for p in tmp_path.iterdir()] == ["v.faiss"]  # no temp file left
    plain = faiss.read_index(str(tmp_path / "v.faiss"))  # FAISS itself still reads it
    assert plain.ntotal == 1200
    meta = vi._read_meta(tmp_path / "v.faiss")
    assert meta["index_type"] == index.index_type and meta["ntotal"] == 1200


@pytest.mark.parametrize("compression", ["sq8", "pq"])
def test_compressed_ivf(tmp_path: Path, data, compression: str) -> None:
    ids, vectors = data
    exact = filled(tmp_path / "exact.faiss", vectors, ids, ivf_threshold=10**9)
    index = filled(tmp_path / "v.faiss", vectors, ids, ivf_threshold=1000, compression=compression)
    assert index.compression == compression
    assert index.index_type.endswith({"sq8": ",SQ8/IP", "pq": f",PQ{vi.PQ_SUBQUANTIZERS}/IP"}[compression])
    assert index.memory_bytes() < exact.memory_bytes() / 2
    assert 0.5 <= index.meta["recall_at_10"] <= 1.0
    queries = jitter(vectors[::50])
    agree = (index.search(queries, 1)[1][:, 0] == exact.search(queries, 1)[1][:, 0]).mean()
    assert agree >= (0.9 if compression == "sq8" else 0.6)
    # decoded vectors are close to the originals
    error = np.abs(index.reconstruct(ids[:20]) - vectors[:20]).max()
    assert error < (0.05 if compression == "sq8" else 0.6)


def test_compression_from_settings_rebuilds_at_next_add(tmp_path: Path, data,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ids, vectors = data
    filled(tmp_path / "v.faiss", vectors[:1500], ids[:1500], ivf_threshold=1000).save()
    monkeypatch.setenv(ENV["compression"], "SQ8")
    settings = Settings.from_env()
    index = VectorSpace.open(tmp_path / "v.faiss", settings.compression, ivf_threshold=1000)
    assert index.compression == "none"  # nothing changes until the index does
    index.add(ids[1500:1501], vectors[1500:1501])
    assert index.compression == "sq8" and len(index) == 1501
    monkeypatch.setenv(ENV["compression"], "zip")
    with pytest.raises(FaceSearchError, match="FACESEARCH_COMPRESSION='zip': use one of none, sq8, pq"):
        FaceSearch(tmp_path / "index")
    monkeypatch.delenv(ENV["compression"])
    monkeypatch.setenv(ENV["ivf_threshold"], "many")
    with pytest.raises(FaceSearchError, match="FACESEARCH_IVF_THRESHOLD='many' is not a whole number"):
        Settings.from_env()


@pytest.mark.parametrize("compression", ["none", "pq"])
def test_delete_is_permanent_in_ivf(tmp_path: Path, data, compression: str) -> None:
    ids, vectors = data
    index = filled(tmp_path / "v.faiss", vectors, ids, ivf_threshold=1000, compression=compression)
    gone = ids[100:400]
    assert index.remove(np.append(gone, 10**9)) == len(gone)
    index.save()
    for opened in (index, VectorSpace.open(tmp_path / "v.faiss")):
        assert len(opened) == 2700 and not np.isin(gone, opened.ids()).any()
        found = opened.search(vectors[100:400], 20)[1]
        assert not np.isin(found, gone).any()
        assert not np.isin(opened.search(vectors[:5], 50, restrict=gone[:50])[1], gone).any()
        with pytest.raises(KeyError):
            opened.reconstruct(gone[:1])
    index.rebuild()  # retraining from what is stored cannot bring them back
    assert len(index) == 2700 and not np.isin(index.search(vectors[100:400], 20)[1], gone).any()


@pytest.mark.parametrize("threshold", [10**9, 1000])
def test_restricted_search_returns_k_allowed_hits(tmp_path: Path, data, threshold: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ids, vectors = data
    index = filled(tmp_path / "v.faiss", vectors, ids, ivf_threshold=threshold)
    query = jitter(vectors[:1])
    for exact_limit in (vi._EXACT_RESTRICTED, 10):  # exact over few ids; FAISS IDSelector
        monkeypatch.setattr(vi, "_EXACT_RESTRICTED", exact_limit)
        for allowed in (ids[::97], ids[::3]):  # selective, common
            scores, found = index.search(query, 10, restrict=allowed)
            assert found.shape == (1, 10) and np.isin(found, allowed).all()
            truth = allowed[np.argsort(-(vectors[np.isin(ids, allowed)] @ query[0]))[:10]]
            assert len(set(found[0]) & set(truth)) >= 9
            assert np.all(np.diff(scores[0]) <= 1e-6)
    assert index.search(query, 10, restrict=[ids[3], 10**9])[1].tolist() == [[ids[3]]]


# --- region weights -----------------------------------------------------------------------------
def test_region_weights_scale_blocks_exactly() -> None:
    query, stored = clustered(1, seed=3)[0], clustered(5, seed=4)
    cosines = np.einsum("nrd,rd->nr", stored.reshape(5, 7, REGION_DIM), query.reshape(7, REGION_DIM))
    weights = ranking.region_weights({"hair": 2, "Background": 0, "face-skin": 0.5})
    expected = np.array([0, 2, 0.5, 1, 1, 1, 1])
    np.testing.assert_array_equal(weights, expected)
    np.testing.assert_allclose(stored @ ranking.weighted(query, weights), cosines @ expected, atol=1e-5)
    only_hair = ranking.region_weights(region="HAIR")
    np.testing.assert_allclose(stored @ ranking.weighted(query, only_hair), cosines[:, 1], atol=1e-5)
    assert ranking.region_weights() is None
    assert ranking.parse_weights("hair=2, eyes=1,background=0") == {"hair": 2, "eyes": 1, "background": 0}
    for bad, message in (({"har": 1}, "did you mean hair"), ({"hair": float("nan")}, "finite"),
                         ({r: 0 for r in REGIONS}, "every region weight is 0")):
        with pytest.raises(FaceSearchError, match=message):
            ranking.region_weights(bad)
    with pytest.raises(FaceSearchError, match="not both"):
        ranking.region_weights({"hair": 1}, "eyes")
    with pytest.raises(FaceSearchError, match="REGION=NUMBER"):
        ranking.parse_weights("hair:2")


def test_region_weights_change_the_ranking(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    query = clustered(1, seed=5)[0].reshape(7, REGION_DIM)
    same_hair = clustered(1, seed=6)[0].reshape(7, REGION_DIM).copy()
    same_hair[1] = query[1]  # identical hair, everything else unrelated
    same_rest = query + 0.4 * rng.standard_normal(query.shape)  # near everywhere...
    same_rest[1] = -query[1]  # ...but the opposite hair
    same_rest /= np.linalg.norm(same_rest, axis=1, keepdims=True)
    index = VectorSpace.open(tmp_path / "v.faiss")
    index.add([1, 2], np.stack([same_hair.reshape(-1), same_rest.reshape(-1)]))
    plain = query.reshape(-1)
    assert index.search(plain[None], 2)[1][0, 0] == 2
    assert index.search(ranking.weighted(plain, ranking.region_weights(region="hair"))[None], 2)[1][0, 0] == 1
    heavy = ranking.region_weights({"hair": 4})
    assert index.search(ranking.weighted(plain, heavy)[None], 2)[1][0, 0] == 1


# --- the filter language ------------------------------------------------------------------------
def test_filter_language_parses_names_case_insensitively() -> None:
    tree = parse_filter("male<0.5 and SMILING > .5").tree
    assert [(c.field.name, c.op, c.value) for c in tree.parts] == [("male", "<", 0.5), ("Smiling", ">", 0.5)]
    assert parse_filter("Male >= 0.9").tree.field.name == "Male"  # exact case picks CelebA's
    ranged = parse_filter("30 <= age < 40").tree
    assert [(c.field.kind, c.op, c.value) for c in ranged.parts] == [("age", ">=", 30.0), ("age", "<", 40.0)]
    assert parse_filter("0.5 < 5_o_clock_shadow").tree.op == ">"
    nested = parse_filter("not (black_hair > 0.8 or blond_hair > 0.8) and path !~ '*/tmp/*'").tree
    assert nested.op == "and" and nested.parts[0].op == "not" and nested.parts[1].op == "!~"
    day = parse_filter("date = 2019-06-01").tree.value
    assert (day[1] - day[0]).days == 1
    assert parse_filter("indexed > '2026-11-22 18:30'").tree.field.kind == "indexed"


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("MALE < 0.5", "ambiguous: write Male or male"),
    ("smilin > 0.5", "did you mean Smiling"),
    ("__import__('os')", "unknown name '__import__'"),
    ("__import__('os').system('true')", "unexpected '.'"),
    ("age ~ '3*'", "matches paths only"),
    ("path > 3", "path takes"),
    ("path ~ *.jpg", "unexpected"),
    ("smiling > 'yes'", "compared with a number"),
    ("date > 2019-13-01", "month must be in 1..12"),
    ("date > 12", "compared with a date"),
    ("male <", "ends too early"),
    ("(male < 0.5", "ends too early"),
    ("age < 3 )", "expected 'and', 'or' or the end"),
    ("1 < 2", "one name and one value"),
    ("age; drop table faces", "unexpected ';'"),
])
def test_filter_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=message) as raised:
        parse_filter(text)
    assert "\n" not in str(raised.value) and isinstance(raised.value, FaceSearchError)


# --- filtered search over SQL ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory, data):
    """3000 faces with random class probabilities in SQLite, their vectors in an IVF index."""
    ids, vectors = data
    root = tmp_path_factory.mktemp("filtered")
    rng = np.random.default_rng(7)
    probabilities = rng.random((len(ids), 3))
    ages = rng.uniform(1, 90, len(ids))
    store = Store(f"sqlite:///{root / 'meta.sqlite'}")
    folders = ["2018", "2019", "2020"]
    with store.session() as session:
        for i, vector_id in enumerate(ids.tolist()):
            attributes = {"male": probabilities[i, 0], "Smiling": probabilities[i, 1],
                          "Eyeglasses": probabilities[i, 2], "age": ages[i]}
            store.add_photo(session, path=root / folders[i % 3] / f"{i}.jpg", content_hash="0" * 64,
                            size=1, mtime=time.mktime((2018 + i % 3, 6, 1, 0, 0, 0, 0, 0, -1)),
                            status=PhotoStatus.INDEXED, faces=[{
                                "x0": 0.0, "y0": 0.0, "x1": 1.0, "y1": 1.0, "landmarks": [],
                                "det_score": 1.0, "attributes": attributes, "vector_id": vector_id}])
    index = filled(root / "v.faiss", vectors, ids, ivf_threshold=1000)
    yield store, index, ids, vectors, probabilities, ages
    store.close()


@pytest.mark.parametrize("where, truth", [
    ("male < 0.5 and smiling > 0.5", lambda p, a, i: (p[:, 0] < 0.5) & (p[:, 1] > 0.5)),
    ("age >= 85", lambda p, a, i: a >= 85),
    ("eyeglasses > 0.99 or age < 2", lambda p, a, i: (p[:, 2] > 0.99) | (a < 2)),
    ("not smiling > 0.1", lambda p, a, i: ~(p[:, 1] > 0.1)),
    ("path ~ '*/2019/*' and male > 0.5", lambda p, a, i: (i % 3 == 1) & (p[:, 0] > 0.5)),
    ("date >= 2020-01-01", lambda p, a, i: i % 3 == 2),
    ("date = 2019-06-01", lambda p, a, i: i % 3 == 1),
])
@pytest.mark.parametrize("small", [True, False])
def test_filtered_search_returns_k_matching_hits(synthetic_store, where: str, truth, small: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store, index, ids, vectors, probabilities, ages = synthetic_store
    if not small:  # as for a big collection: estimate the share on a sample, pick a strategy
        monkeypatch.setattr(planner, "SMALL_COLLECTION", 100)
    matching = ids[truth(probabilities, ages, np.arange(len(ids)))]
    assert len(matching) >= 10
    query = jitter(vectors[(matching[:1] - 7) // 3])[0]
    found = search_filtered(store, index, query, 10, parse_filter(where))
    assert len(found.ids) == 10 and np.isin(found.ids, matching).all()
    exact = matching[np.argsort(-(vectors[(matching - 7) // 3] @ query))[:10]]
    assert len(set(found.ids.tolist()) & set(exact.tolist())) >= 9
    assert found.ids[0] == exact[0]
    share = len(matching) / len(ids)
    if not small and not 0.15 <= share <= 0.3:  # clear cases either side of OVERFETCH_MIN_SHARE
        assert found.strategy == ("overfetch" if share > 0.3 else "restricted")


def test_filter_that_nothing_meets(synthetic_store) -> None:
    store, index, _, vectors, _, _ = synthetic_store
    found = search_filtered(store, index, vectors[0], 10, parse_filter("age > 200"))
    assert len(found.ids) == 0 and found.strategy == "restricted"


# --- through the API and the command line, on the real index --------------------------------------
def test_query_with_a_region_and_weights(built_index: BuiltIndex) -> None:
    photo = built_index.db / "001367.jpg"
    hair = built_index.fs.query(image=photo, k=6, region="hair")
    assert len(hair) == 6
    for hit in hair:
        assert hit.score == pytest.approx(hit.regions["hair"], abs=2e-3)
        assert list(hit.regions) == list(REGIONS)
    assert [h.regions["hair"] for h in hair] == sorted((h.regions["hair"] for h in hair), reverse=True)

    weights = {"hair": 2.0, "background": 0.0}
    weighted_hits = built_index.fs.query(image=photo, k=6, weights=weights)
    for hit in weighted_hits:
        expected = sum(weights.get(r, 1.0) * v for r, v in hit.regions.items())
        assert hit.score == pytest.approx(expected, abs=3e-3)
    assert weighted_hits[0].path == str(photo.resolve())  # itself still first
    with pytest.raises(FaceSearchError, match="unknown region 'har'"):
        built_index.fs.query(image=photo, region="har")


def test_query_with_a_filter(built_index: BuiltIndex) -> None:
    photo = built_index.db / "002184.jpg"
    everything = built_index.fs.query(image=photo, k=100)
    hits = built_index.fs.query(image=photo, k=3, where="age >= 0 and age <= 200")
    assert [h.face_id for h in hits] == [h.face_id for h in everything[:3]]
    young = built_index.fs.query(image=photo, k=100, where="age < 35")
    assert young and all(h.attributes["age"] < 35 for h in young)
    assert len(young) == sum(h.attributes["age"] < 35 for h in everything)
    only = built_index.fs.query(image=photo, k=5, where="path ~ '*/003049.jpg'")
    assert {h.path for h in only} == {str((built_index.db / "003049.jpg").resolve())}
    assert built_index.fs.query(image=photo, k=5, where="male > 2") == []
    with pytest.raises(FaceSearchError, match="unknown name"):
        built_index.fs.query(image=photo, where="beard > 0.5")


def test_command_line_weights_region_filter_and_info(built_index: BuiltIndex,
                                                    facesearch_command: list[str]) -> None:
    photo = str(built_index.db / "000461.jpg")
    index = ["--index", str(built_index.index_dir)]
    run = subprocess.run(facesearch_command + ["query", "--image", photo, "-k", "3", "--json",
                         "--weights", "hair=3,eyes=1,background=0", "--where", "age>0"] + index,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)
    assert len(hits) == 3 and hits[0]["path"] == str(Path(photo).resolve())
    assert hits[0]["score"] == pytest.approx(3 + 1 + 4, abs=3e-3)  # hair 3, eyes 1, 4 others 1

    for options, message in ((["--region", "hiar"], "error: unknown region 'hiar' (did you mean hair?)"),
                             (["--weights", "hair=lots"], "error: --weights: 'lots' is not a number"),
                             (["--where", "smiling >> 1"], "error: filter 'smiling >> 1', at column")):
        bad = subprocess.run(facesearch_command + ["query", "--image", photo] + options + index,
                             capture_output=True, text=True, timeout=300)
        assert bad.returncode == 1 and bad.stderr.startswith(message), bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr

    info = subprocess.run(facesearch_command + ["info", "--json"] + index,
                          capture_output=True, text=True, timeout=300)
    details = json.loads(info.stdout)
    assert details["index_type"] == "Flat/IP" and details["recall_at_10"] == 1.0
    assert details["index_memory_bytes"] > 0 and details["search_device"] == "cpu"


def test_ivf_index_through_the_api_and_permanent_removal(data_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV["ivf_threshold"], "3")
    photos = copy_photos(data_dir, ["000461.jpg", "000711.jpg", "000987.jpg", "001004.jpg",
                                    "001367.jpg"], tmp_path / "db")
    fs = FaceSearch(tmp_path / "index")
    try:
        fs.index([tmp_path / "db"])
        info = fs.info()
        assert info["index_type"].startswith("IVF") and info["recall_at_10"] is not None
        assert fs.query(image=photos[1], k=1)[0].path == str(photos[1].resolve())
        assert fs.remove([photos[1]]) == 1
    finally:
        fs.close()
    reopened = FaceSearch(tmp_path / "index")
    try:
        assert reopened.info()["index_type"].startswith("IVF")
        paths = {hit.path for hit in reopened.query(image=photos[1], k=10)}
        assert str(photos[1].resolve()) not in paths and len(paths) == 4
    finally:
        reopened.close()


def test_migration_copies_existing_faces_into_face_classes(tmp_path: Path) -> None:
    """An index made before face_classes existed: upgrading fills it, and filters see the faces."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    upgrade_to(url, "0001")
    with sa.create_engine(url).begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO photos (id, path, content_hash, size, mtime, status, indexed_at) "
            "VALUES (1, '/p/a.jpg', 'x', 1, 1.0, 'indexed', '2026-11-22 10:00:00')")
        for face_id, attributes in ((1, '{"Smiling": 0.9, "male": 0.2, "age": 31.5}'),
                                    (2, '{"Smiling": 0.1, "male": 0.7}')):
            connection.exec_driver_sql(
                "INSERT INTO faces (id, photo_id, face_index, x0, y0, x1, y1, landmarks, det_score, "
                f"attributes, vector_id) VALUES ({face_id}, 1, {face_id}, 0, 0, 1, 1, '[]', 1, "
                f"'{attributes}', {face_id + 10})")
    with Store(url) as store:
        def where(text: str) -> list[int]:
            return store.vector_ids_where(parse_filter(text).clause(store.dialect)).tolist()

        assert where("smiling > 0.5") == [11] and where("male > 0.5") == [12]
        assert where("age > 30") == [11]  # face 2 has no age: NULL matches nothing
        assert store.all_vector_ids("master") == [11, 12]  # backfilled by migration 0004
        assert store.delete_photos(["/p/a.jpg"]) == {"master": [11, 12]}
        with store.engine.connect() as connection:  # the copies go with their faces
            assert connection.exec_driver_sql("SELECT count(*) FROM face_classes").scalar() == 0
