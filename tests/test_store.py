"""The storage layer: SQL metadata (real SQLite files, Alembic migrations) and the FAISS index."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from conftest import upgrade_to
from facesearch import spec
from facesearch.index.spaces import (FAISS_FILENAME, MASTER, PQ_MIN_VECTORS, SPACES, SpaceSpec, Spaces,
                                     VectorSpace)
from facesearch.index.store import DB_FILENAME, MIGRATIONS_DIR, Base, FaceVector, PhotoStatus, Store
from facesearch.settings import ENV, Settings


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.delenv(ENV["db_url"], raising=False)
    with Store.for_index_dir(tmp_path / "index") as opened:
        yield opened


def _face(vector_id: int, age: float = 30.0) -> dict:
    return {
        "x0": 10.0, "y0": 20.0, "x1": 110.0, "y1": 140.0,
        "landmarks": [[40.0, 60.0], [80.0, 60.0], [60.0, 80.0], [45.0, 110.0], [75.0, 110.0]],
        "det_score": 0.99,
        "attributes": {"Smiling": 0.8, "male": 0.1, spec.AGE_KEY: age},
        "vector_id": vector_id,
    }


def _add(store: Store, path: Path, vector_ids: list[int]) -> None:
    path.write_bytes(b"jpeg")
    with store.session() as session:
        store.add_photo(
            session, path=path, content_hash="ab" * 32, size=4, mtime=1.5,
            status=PhotoStatus.INDEXED if vector_ids else PhotoStatus.NO_FACE,
            width=640, height=480, faces=[_face(i) for i in vector_ids],
        )


# --- SQL --------------------------------------------------------------------------------------
def test_schema_is_made_by_migrations_and_matches_models(store: Store) -> None:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with store.engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == head
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_sqlite_file_is_in_index_dir_in_wal_mode_with_foreign_keys(
    store: Store, tmp_path: Path
) -> None:
    assert (tmp_path / "index" / DB_FILENAME).is_file()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 30_000


def test_env_var_chooses_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere.sqlite"
    monkeypatch.setenv(ENV["db_url"], f"sqlite:///{elsewhere}")
    Store.for_index_dir(tmp_path / "index", Settings.from_env().db_url).close()
    assert elsewhere.is_file() and not (tmp_path / "index" / DB_FILENAME).exists()


def test_photo_and_faces_round_trip(store: Store, tmp_path: Path) -> None:
    assert store.next_vector_id() == 0
    _add(store, tmp_path / "a.jpg", [0, 1])
    _add(store, tmp_path / "b.jpg", [])

    photo = store.photo_by_path(tmp_path / "x" / ".." / "a.jpg")
    assert photo is not None and photo.path == str((tmp_path / "a.jpg").resolve())
    assert (photo.status, photo.width, photo.height, photo.size) == ("indexed", 640, 480, 4)
    assert photo.indexed_at is not None
    assert [face.face_index for face in photo.faces] == [0, 1]
    assert photo.faces[1].landmarks[4] == [75.0, 110.0]
    assert photo.faces[1].attributes[spec.AGE_KEY] == 30.0
    assert store.photo_by_path(tmp_path / "missing.jpg") is None

    assert [p.status for p in store.photos()] == ["indexed", "no_face"]
    assert store.counts() == (2, 2)
    assert store.all_vector_ids() == [0, 1]
    assert store.next_vector_id() == 2

    found = store.faces_by_vector_ids([1, 7])
    assert list(found) == [1]
    face, owner = found[1]
    assert (face.face_index, owner.path) == (1, photo.path)


def test_delete_cascades_to_faces_and_returns_vector_ids(store: Store, tmp_path: Path) -> None:
    _add(store, tmp_path / "a.jpg", [0, 1])
    _add(store, tmp_path / "b.jpg", [2])
    assert store.delete_photos([tmp_path / "a.jpg", tmp_path / "never.jpg"]) == {MASTER: [0, 1]}
    assert store.counts() == (1, 1)
    assert store.all_vector_ids() == [2]
    with store.session() as session:  # the face_vectors rows went with their faces
        assert session.scalars(sa.select(FaceVector.vector_id)).all() == [2]


def test_face_vectors_record_each_space(store: Store, tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    with store.session() as session:
        store.add_photo(session, path=tmp_path / "a.jpg", content_hash="ab" * 32, size=4, mtime=1.5,
                        faces=[{**_face(5), "vectors": {MASTER: 5, "other": 9}}, _face(6)])
    assert store.all_vector_ids() == [5, 6] and store.all_vector_ids("other") == [9]
    assert store.next_vector_id() == 10
    assert store.photos_of_vectors("other", [9, 100]) == [str((tmp_path / "a.jpg").resolve())]
    assert store.photos_of_vectors(MASTER, [9]) == []
    # an id names one face in its space
    with pytest.raises(sa.exc.IntegrityError), store.session() as session:
        store.add_photo(session, path=tmp_path / "b.jpg", content_hash="ab" * 32, size=4,
                        mtime=1.5, faces=[{**_face(7), "vectors": {MASTER: 7, "other": 9}}])
    with pytest.raises(ValueError, match="master vector id must be its vector_id"), \
            store.session() as session:
        store.add_photo(session, path=tmp_path / "c.jpg", content_hash="ab" * 32, size=4,
                        mtime=1.5, faces=[{**_face(8), "vectors": {"other": 8}}])
    assert store.delete_photos([tmp_path / "a.jpg"]) == {MASTER: [5, 6], "other": [9]}


def _old_index_rows(url: str, revision: str, vector_ids: dict[int, int]) -> None:
    """A database at an older schema `revision` holding one photo whose faces have these
    {face id: master vector id} (and their face_vectors rows from 0004 on)."""
    upgrade_to(url, revision)
    engine = sa.create_engine(url)
    tables = sa.MetaData()
    tables.reflect(engine)
    with engine.begin() as connection:
        connection.execute(tables.tables["photos"].insert(), [
            {"id": 1, "path": "/p/a.jpg", "content_hash": "ab", "size": 1, "mtime": 0.0,
             "status": "indexed", "indexed_at": datetime.now(UTC)}])
        connection.execute(tables.tables["faces"].insert(), [
            {"id": face_id, "photo_id": 1, "face_index": face_id, "x0": 0, "y0": 0, "x1": 1,
             "y1": 1, "landmarks": "[]", "det_score": 1.0, "attributes": "{}", "vector_id": vector_id}
            for face_id, vector_id in vector_ids.items()])
        if "face_vectors" in tables.tables:
            connection.execute(tables.tables["face_vectors"].insert(), [
                {"face_id": face_id, "space": MASTER, "vector_id": vector_id}
                for face_id, vector_id in vector_ids.items()])
    engine.dispose()


def test_migration_0004_backfills_master_vector_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / DB_FILENAME}"
    _old_index_rows(url, "0003", {1: 40, 2: 41})
    with Store(url) as store:
        assert store.all_vector_ids() == [40, 41] and store.all_vector_ids("other") == []
        assert store.delete_photos(["/p/a.jpg"]) == {MASTER: [40, 41]}


def test_migration_0005_keeps_old_rows_and_vectors_come_back_from_faiss(tmp_path: Path) -> None:
    """An index made under 0004: its rows survive the upgrade with no vector bytes, which the
    first open fills in from its FAISS file (index.repair.open_spaces)."""
    from facesearch.index.repair import open_spaces

    url = f"sqlite:///{tmp_path / DB_FILENAME}"
    _old_index_rows(url, "0004", {1: 40})
    vector = _master_vectors(1)
    old = VectorSpace.open(tmp_path / FAISS_FILENAME)
    old.add([40], vector)
    old.save()
    with Store(url) as store:
        assert store.vector_ids_without_vector(MASTER) == [40] and store.aliases() == {}
        notes: list[str] = []
        spaces = open_spaces(tmp_path, store, notice=notes.append)
        assert notes == [] and len(spaces.master) == 1
        ids, vectors = store.stored_vectors(MASTER, spec.VECTOR_DIM)
        assert ids.tolist() == [40]
        np.testing.assert_allclose(vectors, vector, atol=2e-3)
        (tmp_path / FAISS_FILENAME).unlink()
        rebuilt = open_spaces(tmp_path, store, notice=notes.append, save=lambda s: s.save())
        assert rebuilt.master.ids().tolist() == [40] and (tmp_path / FAISS_FILENAME).exists()
        assert notes == ["vectors.faiss was missing: rebuilt from the database (1 vectors)"]


def test_duplicate_path_or_vector_id_is_refused(store: Store, tmp_path: Path) -> None:
    _add(store, tmp_path / "a.jpg", [0])
    with pytest.raises(sa.exc.IntegrityError):
        _add(store, tmp_path / "a.jpg", [5])
    with pytest.raises(sa.exc.IntegrityError):
        _add(store, tmp_path / "b.jpg", [0])
    assert store.counts() == (1, 1)


def test_failed_photos(store: Store, tmp_path: Path) -> None:
    _add(store, tmp_path / "ok.jpg", [0])
    with store.session() as session:
        store.add_photo(
            session, path=tmp_path / "bad.jpg", content_hash="00" * 32, size=0, mtime=0.0,
            status=PhotoStatus.ERROR, error="cannot decode",
        )
    assert [(p.path, p.error) for p in store.failed_photos()] == [
        (str((tmp_path / "bad.jpg").resolve()), "cannot decode")
    ]


def test_meta_and_reopen_persist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV["db_url"], raising=False)
    with Store.for_index_dir(tmp_path) as store:
        assert store.get_meta("model_version") is None
        store.set_meta("model_version", "1")
        store.set_meta("model_version", "2")
        _add(store, tmp_path / "a.jpg", [0])
    with Store.for_index_dir(tmp_path) as store:
        assert store.get_meta("model_version") == "2"
        assert store.counts() == (1, 1)


def test_command_line_config_points_at_packaged_migrations() -> None:
    repo_root = Path(__file__).resolve().parents[1]
    cli_config = Config(str(repo_root / "alembic.ini"))
    location = repo_root / cli_config.get_main_option("script_location")
    assert location.resolve() == MIGRATIONS_DIR.resolve()


# --- FAISS ------------------------------------------------------------------------------------
def _master_vectors(n: int, seed: int = 0) -> np.ndarray:
    shape = (n, len(spec.REGIONS), spec.REGION_DIM)
    blocks = np.random.default_rng(seed).standard_normal(shape)
    blocks /= np.linalg.norm(blocks, axis=2, keepdims=True)
    return blocks.reshape(n, spec.VECTOR_DIM).astype(np.float32)


def test_vector_index_add_search_reconstruct_remove(tmp_path: Path) -> None:
    index = VectorSpace.open(tmp_path / FAISS_FILENAME)
    assert len(index) == 0 and index.index_type == "Flat/IP"
    assert index.search(_master_vectors(1), 5)[1].shape == (1, 0)

    vectors, ids = _master_vectors(50), np.arange(100, 150)
    index.add(ids, vectors)
    scores, found = index.search(vectors[:3], 5)
    assert found[:, 0].tolist() == [100, 101, 102]
    np.testing.assert_allclose(scores[:, 0], 7.0, atol=1e-4)
    assert scores.shape == (3, 5) and np.all(scores[:, 0] > scores[:, 1])
    assert index.search(vectors[:1], 500)[1].shape == (1, 50)
    np.testing.assert_allclose(index.reconstruct([120, 100]), vectors[[20, 0]])
    with pytest.raises(KeyError):
        index.reconstruct([7])
    with pytest.raises(ValueError):
        index.add([100], vectors[:1])

    assert index.remove([100, 101, 999]) == 2
    assert len(index) == 48 and 100 not in index.ids()
    assert index.search(vectors[:1], 1)[1][0, 0] != 100


def test_vector_index_save_is_atomic_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "index" / FAISS_FILENAME
    index = VectorSpace.open(path)
    vectors = _master_vectors(20)
    index.add(np.arange(20), vectors)
    index.save()
    index.remove([0])
    index.save()
    assert [p.name for p in path.parent.iterdir()] == [FAISS_FILENAME]

    reopened = VectorSpace.open(path)
    assert len(reopened) == 19 and sorted(reopened.ids().tolist()) == list(range(1, 20))
    np.testing.assert_allclose(reopened.reconstruct([5]), vectors[5:6])
    assert reopened.search(vectors[7:8], 1)[1][0, 0] == 7


def test_spaces_have_their_own_files_and_metadata(tmp_path: Path) -> None:
    specs = (SPACES[0], SpaceSpec("other", 8))  # master and a space of another dimension
    spaces = Spaces.open(tmp_path, ivf_threshold=64, specs=specs)
    assert list(spaces) == [MASTER, "other"] and spaces.master is spaces[MASTER]
    assert (spaces.master.dim, spaces["other"].dim) == (spec.VECTOR_DIM, 8)
    assert spaces.save() == 2 and spaces.save() == 0  # new files, then nothing changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.faiss", FAISS_FILENAME]
    other = np.random.default_rng(0).standard_normal((400, 8)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    spaces["other"].add(np.arange(400), other)  # past 64: an IVF index, built here
    spaces["other"].model_version = "other-model-1"
    spaces.master.add([7], _master_vectors(1))
    assert spaces.remove({MASTER: [7, 8], "unknown": [1]}) == 1
    assert spaces.save() == 2

    reopened = Spaces.open(tmp_path, specs=specs)
    assert reopened["other"].is_ivf and len(reopened["other"]) == 400 and len(reopened.master) == 0
    assert (reopened["other"].name, reopened["other"].model_version) == ("other", "other-model-1")
    assert reopened["other"].stats()["dim"] == 8
    assert reopened["other"].search(other[3:4], 1)[1][0, 0] == 3
    with pytest.raises(ValueError, match="holds the vector space 'other', not 'master'"):
        VectorSpace.open(tmp_path / "other.faiss", dim=8)
    with pytest.raises(ValueError, match="of 364 dimensions"):
        VectorSpace.open(tmp_path / "other.faiss", name="other")
    with pytest.raises(ValueError, match="dimension divisible by 4"):
        Spaces.open(tmp_path / "odd", "pq", 64, specs=(*SPACES, SpaceSpec("odd", 6)))[
            "odd"].add(np.arange(PQ_MIN_VECTORS), np.ones((PQ_MIN_VECTORS, 6), np.float32))


def test_a_vector_file_from_before_spaces_opens_as_master(tmp_path: Path) -> None:
    old = faiss.IndexIDMap2(faiss.IndexFlatIP(spec.VECTOR_DIM))  # no metadata trailer
    old.add_with_ids(_master_vectors(3), np.arange(3, dtype=np.int64))
    faiss.write_index(old, str(tmp_path / FAISS_FILENAME))
    master = Spaces.open(tmp_path).master
    assert (master.name, master.model_version, len(master)) == (MASTER, None, 3)


def test_vector_index_sync_ids(tmp_path: Path) -> None:
    index = VectorSpace.open(tmp_path / FAISS_FILENAME)
    index.add(np.arange(10), _master_vectors(10))
    assert index.sync_ids({1, 3, 5, 42}) == 7
    assert sorted(index.ids().tolist()) == [1, 3, 5]
    assert index.sync_ids(set()) == 3 and len(index) == 0


def test_alembic_command_line_migrates_the_configured_database(tmp_path: Path) -> None:
    """`alembic upgrade head` from the repository root (migrations/README.md) reaches head on the
    database that FACESEARCH_DB_URL names, through Settings."""
    import os
    import subprocess
    import sys

    repo_root = Path(__file__).resolve().parent.parent
    target = tmp_path / "cli.sqlite"
    environment = dict(os.environ, FACESEARCH_DB_URL=f"sqlite:///{target}")
    done = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=repo_root,
                          env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    head = ScriptDirectory.from_config(Config(str(repo_root / "alembic.ini"))).get_current_head()
    engine = sa.create_engine(f"sqlite:///{target}")
    with engine.connect() as connection:
        assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == head
    engine.dispose()
