"""Indexing and querying through the Python API: SQL and FAISS agree, hits follow the contract,
re-runs are incremental, removals stick, and a crash between FAISS and SQL is repaired."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import INDEX_PHOTOS, BuiltIndex, copy_photos
from facesearch import FaceSearch, FaceSearchError, Hit, Hits
from facesearch.spec import (AGE_GROUPS, AGE_KEY, CELEBA_ATTRIBUTES, EMOTIONS, ETHNICITIES, GENDERS, PIXEL_ATTRIBUTES,
                             QUALITY_KEYS, REGION_DIM, REGIONS, VECTOR_DIM)
from facesearch.index.spaces import FAISS_FILENAME
from facesearch.index.spaces import VectorSpace

EXPECTED_ATTRIBUTES = (set(CELEBA_ATTRIBUTES) | set(GENDERS) | {name for name, _, _ in AGE_GROUPS}
                       | set(ETHNICITIES) | {AGE_KEY})
OTHER_KEYS = set(QUALITY_KEYS) | set(EMOTIONS) | set(PIXEL_ATTRIBUTES)


def _key(path: Path) -> str:
    """How the index stores a photo's path."""
    return str(Path(path).resolve())


def _check_hits(hits: Hits, k: int) -> None:
    assert isinstance(hits, Hits) and len(hits) == k
    assert [hit.rank for hit in hits] == list(range(1, k + 1))
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True), scores
    for hit in hits:
        assert isinstance(hit, Hit)
        assert set(hit.to_dict()) >= {"rank", "score", "path", "face_id", "bbox", "regions", "attributes"}
        assert Path(hit.path).is_absolute() and Path(hit.path).exists()
        assert isinstance(hit.face_id, int)
        assert len(hit.bbox) == 4 and hit.bbox[0] < hit.bbox[2] and hit.bbox[1] < hit.bbox[3]
        assert min(hit.bbox) >= 0
        assert list(hit.regions) == list(REGIONS)
        assert all(-1.0 - 1e-3 <= value <= 1.0 + 1e-3 for value in hit.regions.values())
        # the classes and age, and what else the pipeline measures (quality record, emotions,
        # pixel attributes: absent where the pixels cannot tell)
        assert EXPECTED_ATTRIBUTES <= set(hit.attributes) <= EXPECTED_ATTRIBUTES | OTHER_KEYS


def _sql_and_faiss_agree(fs: FaceSearch) -> tuple[int, int]:
    """(photos, faces), after checking that SQL's vector ids are exactly FAISS's."""
    photos, faces = fs.store.counts()
    assert len(fs.vectors) == faces
    assert sorted(fs.store.all_vector_ids()) == sorted(fs.vectors.ids().tolist())
    return photos, faces


# --- the shared index (read-only) --------------------------------------------------------------
def test_sql_and_faiss_round_trip(built_index: BuiltIndex) -> None:
    report = built_index.report
    assert (report.photos, report.indexed, report.unchanged, report.removed) == (len(INDEX_PHOTOS), len(INDEX_PHOTOS), 0, 0)
    assert report.failed == [] and report.no_face == []
    assert report.faces >= len(INDEX_PHOTOS) + 1  # 032591.jpg shows two people

    photos, faces = _sql_and_faiss_agree(built_index.fs)
    assert (photos, faces) == (len(INDEX_PHOTOS), report.faces)
    stored = {photo.path: photo for photo in built_index.fs.store.photos()}
    assert set(stored) == {_key(path) for path in built_index.photos}
    assert all(photo.status == "indexed" for photo in stored.values())

    # Reopened from disk by a fresh FaceSearch: the same index.
    reopened = FaceSearch(built_index.index_dir)
    try:
        info = reopened.info()
        assert (info["photos"], info["faces"], info["vectors"]) == (photos, faces, faces)
        assert info["failed"] == [] and info["dims"] == VECTOR_DIM  # a number (issue 17)
        assert info["model_version"] and info["size_bytes"] > 0
        stored_vectors = reopened.vectors.reconstruct(reopened.vectors.ids())
        norms = np.linalg.norm(stored_vectors.reshape(-1, len(REGIONS), REGION_DIM), axis=2)
        np.testing.assert_allclose(norms, 1.0, atol=1e-3)
    finally:
        reopened.close()


@pytest.mark.parametrize("name", ["000461.jpg", "002184.jpg", "032591.jpg"])
def test_a_photo_finds_its_own_face_first(built_index: BuiltIndex, name: str) -> None:
    photo = built_index.db / name
    hits = built_index.fs.query(image=photo, k=5)
    _check_hits(hits, 5)
    top = hits[0]
    assert top.path == _key(photo)
    assert top.score == pytest.approx(7.0, abs=1e-3)
    assert set(top.regions) == set(REGIONS)
    assert all(value == pytest.approx(1.0, abs=1e-3) for value in top.regions.values())
    assert hits[1].score < top.score
    assert hits.understood is None
    # The hit's box is the face's box in the original photo.
    face = built_index.fs.describe(photo)[0]
    np.testing.assert_allclose(top.bbox, face.bbox, atol=1.0)


def test_per_region_scores_add_up_to_the_score(built_index: BuiltIndex) -> None:
    hits = built_index.fs.query(image=built_index.db / "001367.jpg", k=8)
    _check_hits(hits, 8)
    for hit in hits:
        assert sum(hit.regions.values()) == pytest.approx(hit.score, abs=2e-3)


def test_second_face_of_a_photo(built_index: BuiltIndex) -> None:
    photo = built_index.db / "032591.jpg"
    first = built_index.fs.query(image=photo, k=1, face=0)[0]
    second = built_index.fs.query(image=photo, k=1, face=1)[0]
    assert first.path == second.path == _key(photo)
    assert first.face_id != second.face_id
    assert second.score == pytest.approx(7.0, abs=1e-3)
    with pytest.raises(FaceSearchError, match="out of range"):
        built_index.fs.query(image=photo, k=1, face=9)


def test_query_with_an_array_and_a_large_k(built_index: BuiltIndex) -> None:
    pixels = np.asarray(Image.open(built_index.db / "000711.jpg").convert("RGB"))
    hits = built_index.fs.query(image=pixels, k=1000)  # more than stored: every face once
    _check_hits(hits, built_index.report.faces)
    assert hits[0].path == _key(built_index.db / "000711.jpg")
    assert len({hit.face_id for hit in hits}) == len(hits)


def test_text_query(built_index: BuiltIndex) -> None:
    hits = built_index.fs.query(text="black hair, smiling", k=5)
    _check_hits(hits, 5)
    assert hits.understood is not None
    names = [term.name for term in hits.understood.terms]
    assert "Black_Hair" in names and "Smiling" in names
    assert all(not term.negated for term in hits.understood.terms)


@pytest.mark.parametrize("text", ["qwzx vrrbl plonk", "the quarterly tax report", "   "])
def test_text_that_says_nothing_about_faces_is_refused(built_index: BuiltIndex, text: str) -> None:
    with pytest.raises(FaceSearchError):
        built_index.fs.query(text=text, k=5)


def test_bad_queries_are_refused(built_index: BuiltIndex, tmp_path: Path) -> None:
    fs = built_index.fs
    with pytest.raises(FaceSearchError):
        fs.query(k=5)
    with pytest.raises(FaceSearchError, match="k must be"):
        fs.query(image=built_index.db / "000461.jpg", k=0)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 150), (90, 90, 90)).save(blank)
    with pytest.raises(FaceSearchError, match="no face"):
        fs.query(image=blank, k=5)
    with pytest.raises(FaceSearchError, match="k must be a whole number"):
        fs.query(text="smiling", k="5")
    with pytest.raises(FaceSearchError, match=r"must be \(height, width, 3\) uint8 RGB, not float64"):
        fs.query(image=np.zeros((100, 100, 3)), k=3)
    with pytest.raises(FaceSearchError, match="face_id must be a face id"):
        fs.remove_face("abc")
    cut = tmp_path / "cut.jpg"  # a JPEG cut short: read as far as it goes, and the error says so
    Image.new("RGB", (120, 150), (90, 90, 90)).save(cut, quality=90)
    cut.write_bytes(cut.read_bytes()[:-200])
    with pytest.raises(FaceSearchError, match=r"no face found in .*cut\.jpg \(the file is truncated"):
        fs.query(image=cut, k=5)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a photo\n")
    with pytest.raises(FaceSearchError):
        fs.query(image=not_an_image, k=5)
    with pytest.raises(FaceSearchError):
        fs.query(image=tmp_path / "missing.jpg", k=5)


def test_missing_or_empty_index_is_an_error(tmp_path: Path, data_dir: Path) -> None:
    photo = data_dir / "celeba" / "wild" / "000461.jpg"
    with pytest.raises(FaceSearchError, match="no index"):
        FaceSearch(tmp_path / "nowhere").query(image=photo, k=3)
    with pytest.raises(FaceSearchError, match="no index"):
        FaceSearch(tmp_path / "nowhere").info()
    (tmp_path / "empty_db").mkdir()
    fs = FaceSearch(tmp_path / "empty")
    report = fs.index([tmp_path / "empty_db"])
    assert (report.photos, report.indexed) == (0, 0)
    with pytest.raises(FaceSearchError, match="empty"):
        fs.query(image=photo, k=3)
    fs.close()


# --- small indexes of our own (changed by the tests) --------------------------------------------
SMALL = ("000461.jpg", "000711.jpg", "000987.jpg")


@dataclass
class SmallIndex:
    index_dir: Path
    db: Path
    photos: list[Path]

    def open(self) -> FaceSearch:
        return FaceSearch(self.index_dir)


@pytest.fixture
def small_index(data_dir: Path, tmp_path: Path) -> SmallIndex:
    photos = copy_photos(data_dir, SMALL, tmp_path / "db")
    fs = FaceSearch(tmp_path / "index")
    report = fs.index([tmp_path / "db"])
    assert (report.indexed, report.faces) == (3, 3)
    fs.close()
    return SmallIndex(tmp_path / "index", tmp_path / "db", photos)


def _run(small: SmallIndex):
    fs = small.open()
    try:
        report = fs.index([small.db])
        return report, _sql_and_faiss_agree(fs), sorted(fs.vectors.ids().tolist())
    finally:
        fs.close()


def test_second_run_indexes_nothing(small_index: SmallIndex) -> None:
    first_ids = _run(small_index)[2]
    report, counts, ids = _run(small_index)
    assert (report.photos, report.indexed, report.unchanged, report.removed, report.faces) == (3, 0, 3, 0, 0)
    assert counts == (3, 3) and ids == first_ids


def test_touched_photo_stays_unchanged(small_index: SmallIndex) -> None:
    before = _run(small_index)[2]
    photo = small_index.photos[1]
    stat = photo.stat()
    os.utime(photo, (stat.st_atime + 1000, stat.st_mtime + 1000))
    report, counts, ids = _run(small_index)
    assert (report.indexed, report.unchanged) == (0, 3)
    assert counts == (3, 3) and ids == before
    report, _, ids = _run(small_index)  # the new mtime was recorded: still nothing to do
    assert (report.indexed, report.unchanged) == (0, 3) and ids == before


def test_modified_photo_is_reindexed_alone(small_index: SmallIndex, data_dir: Path) -> None:
    fs = small_index.open()
    before = {photo.path: photo for photo in fs.store.photos()}
    fs.close()
    photo = small_index.photos[0]
    with Image.open(photo) as image:
        ImageOps.mirror(image.convert("RGB")).save(photo, quality=95)
    stat = photo.stat()
    os.utime(photo, (stat.st_atime, stat.st_mtime + 10))  # a different mtime, whatever the clock

    report, counts, _ = _run(small_index)
    assert (report.indexed, report.unchanged, report.removed, report.faces) == (1, 2, 0, 1)
    assert counts == (3, 3)
    fs = small_index.open()
    try:
        after = {p.path: p for p in fs.store.photos()}
        assert set(after) == set(before)
        assert after[_key(photo)].content_hash != before[_key(photo)].content_hash
        for other in small_index.photos[1:]:
            assert after[_key(other)].id == before[_key(other)].id  # untouched rows
        top = fs.query(image=photo, k=1)[0]  # the stored face is now the mirrored one
        assert top.path == _key(photo) and top.score == pytest.approx(7.0, abs=1e-3)
        original = fs.query(image=data_dir / "celeba" / "wild" / SMALL[0], k=3)
        assert all(hit.score < 7.0 - 1e-3 for hit in original)
    finally:
        fs.close()


def test_deleted_photo_is_dropped_on_the_next_run(small_index: SmallIndex, data_dir: Path) -> None:
    gone = small_index.photos[2]
    gone.unlink()
    report, counts, _ = _run(small_index)
    assert (report.photos, report.indexed, report.unchanged, report.removed) == (2, 0, 2, 1)
    assert counts == (2, 2)
    fs = small_index.open()
    try:
        hits = fs.query(image=data_dir / "celeba" / "wild" / SMALL[2], k=10)
        assert len(hits) == 2 and _key(gone) not in {hit.path for hit in hits}
    finally:
        fs.close()


def test_remove_takes_a_photo_out_for_good(small_index: SmallIndex) -> None:
    target = small_index.photos[0]
    fs = small_index.open()
    assert fs.remove([target]) == 1
    assert fs.remove([small_index.db / "never-indexed.jpg"]) == 0
    fs.close()
    fs = small_index.open()  # reopened from disk
    try:
        assert _sql_and_faiss_agree(fs) == (2, 2)
        assert fs.store.photo_by_path(target) is None
        hits = fs.query(image=target, k=10)
        assert len(hits) == 2 and _key(target) not in {hit.path for hit in hits}
    finally:
        fs.close()


def _random_master_vectors(n: int) -> np.ndarray:
    blocks = np.random.default_rng(0).standard_normal((n, len(REGIONS), REGION_DIM))
    blocks /= np.linalg.norm(blocks, axis=2, keepdims=True)
    return blocks.reshape(n, VECTOR_DIM).astype(np.float32)


def test_vectors_without_rows_are_dropped_after_a_crash(small_index: SmallIndex) -> None:
    # A run killed after writing FAISS but before committing SQL leaves vectors without rows.
    vectors = VectorSpace.open(small_index.index_dir / FAISS_FILENAME)
    known = sorted(vectors.ids().tolist())
    vectors.add([1000, 1001], _random_master_vectors(2))
    vectors.save()
    assert len(VectorSpace.open(small_index.index_dir / FAISS_FILENAME)) == 5

    report, counts, ids = _run(small_index)
    assert (report.indexed, report.unchanged) == (0, 3)
    assert counts == (3, 3) and ids == known
    assert sorted(VectorSpace.open(small_index.index_dir / FAISS_FILENAME).ids().tolist()) == known


def test_a_vector_missing_from_faiss_is_put_back_from_sql(small_index: SmallIndex) -> None:
    """SQL holds every vector: one lost from the FAISS file comes back from SQL, nothing is
    described again."""
    fs = small_index.open()
    victim = fs.store.photo_by_path(small_index.photos[1])
    lost = victim.faces[0].vector_id
    fs.close()
    vectors = VectorSpace.open(small_index.index_dir / FAISS_FILENAME)
    assert vectors.remove([lost]) == 1
    vectors.save()

    report, counts, ids = _run(small_index)
    assert (report.indexed, report.unchanged, report.faces) == (0, 3, 0)
    assert counts == (3, 3) and lost in ids
    assert lost in VectorSpace.open(small_index.index_dir / FAISS_FILENAME).ids()
    fs = small_index.open()
    try:
        top = fs.query(image=small_index.photos[1], k=1)[0]
        assert top.path == _key(small_index.photos[1]) and top.score == pytest.approx(7.0, abs=1e-2)
    finally:
        fs.close()


def test_photo_whose_vector_is_nowhere_is_reindexed(small_index: SmallIndex) -> None:
    """A row without its vector in SQL (made before 0005) whose vector the FAISS file lost too
    is described again."""
    import sqlalchemy as sa
    from facesearch.index.store import FaceVector

    fs = small_index.open()
    victim = fs.store.photo_by_path(small_index.photos[1])
    lost = victim.faces[0].vector_id
    with fs.store.session() as session:
        session.execute(sa.update(FaceVector).where(FaceVector.vector_id == lost).values(vector=None))
    fs.close()
    vectors = VectorSpace.open(small_index.index_dir / FAISS_FILENAME)
    assert vectors.remove([lost]) == 1
    vectors.save()

    report, counts, ids = _run(small_index)
    assert (report.indexed, report.unchanged, report.faces) == (1, 2, 1)
    assert counts == (3, 3) and lost not in ids
    fs = small_index.open()
    try:
        top = fs.query(image=small_index.photos[1], k=1)[0]
        assert top.path == _key(small_index.photos[1]) and top.score == pytest.approx(7.0, abs=1e-2)
    finally:
        fs.close()


def test_photos_of_an_older_model_are_described_again(small_index: SmallIndex) -> None:
    """After a model upgrade the stored vectors are another model's: a query refuses to compare
    them with the new model's, and the next index run describes those photos again."""
    import sqlalchemy as sa
    from facesearch.index.store import PhotoRow

    fs = small_index.open()
    old_ids = sorted(fs.vectors.ids().tolist())
    with fs.store.session() as session:
        session.execute(sa.update(PhotoRow).values(model_version="fs-old-model"))
    fs.store.set_meta("model_version", "fs-old-model")
    try:
        with pytest.raises(FaceSearchError, match="3 indexed photo.*described by model fs-old-model.*facesearch index"):
            fs.query(image=small_index.photos[0], k=1)
    finally:
        fs.close()

    report, counts, ids = _run(small_index)
    assert (report.indexed, report.unchanged) == (3, 0)
    assert counts == (3, 3) and not set(ids) & set(old_ids)
    fs = small_index.open()
    try:
        assert fs.info()["model_version"] == fs._model.version
        assert fs.query(image=small_index.photos[0], k=1)[0].path == _key(small_index.photos[0])
    finally:
        fs.close()


def test_query_after_a_crash_still_gives_k_hits(small_index: SmallIndex, data_dir: Path) -> None:
    # The crashed batch held another photo: its vector reached FAISS, its rows never reached SQL.
    newcomer = data_dir / "celeba" / "wild" / "001004.jpg"
    fs = small_index.open()
    vector = fs.describe(newcomer)[0].vector
    fs.close()
    vectors = VectorSpace.open(small_index.index_dir / FAISS_FILENAME)
    vectors.add([1000], vector[None])
    vectors.save()
    fs = small_index.open()
    try:
        assert len(fs.query(image=newcomer, k=3)) == 3  # 3 faces are indexed
    finally:
        fs.close()


def test_indexing_a_missing_folder_creates_no_index(tmp_path: Path) -> None:
    fs = FaceSearch(tmp_path / "idx")
    with pytest.raises(FaceSearchError, match="no such file or folder"):
        fs.index([tmp_path / "no-such-folder"])
    fs.close()
    assert not (tmp_path / "idx").exists()


def test_info_counts_the_photos_without_a_face(data_dir: Path, tmp_path: Path) -> None:
    """A photo in which no face was found is neither failed nor a face: `info` says how many."""
    folder = tmp_path / "photos"
    copy_photos(data_dir, INDEX_PHOTOS[:1], folder)
    Image.new("RGB", (160, 120), (90, 110, 95)).save(folder / "wall.png")
    with FaceSearch(tmp_path / "index") as fs:
        fs.index([folder], progress=False)
        info = fs.info()
    assert (info["photos"], info["without_faces"], info["failed"]) == (2, 1, [])
