"""The metadata in a real PostgreSQL server: Alembic migrations, the store, filters in SQL, and an
index / query / remove round trip through FaceSearch with --db-url.

The server: $FACESEARCH_TEST_PG_URL (.ci/run starts one and sets it), else a throwaway one that
these tests start themselves (tests/pg_cluster.py) when PostgreSQL is installed; otherwise they
are skipped, saying why. Each test gets a database of its own.
"""
from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import pg_cluster
from conftest import copy_photos
from facesearch import FaceSearch
from facesearch import spec
from facesearch.search.filters import parse_filter
from facesearch.index.store import MIGRATIONS_DIR, Base, PhotoStatus, Store

ENV_TEST_PG_URL = "FACESEARCH_TEST_PG_URL"


@pytest.fixture(scope="module")
def pg_server() -> Iterator[sa.URL]:
    """The URL of a PostgreSQL server's `postgres` database."""
    url = os.environ.get(ENV_TEST_PG_URL)
    if url:
        yield sa.make_url(url)
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg: pip install -e '.[postgres]'")
    directory = tempfile.mkdtemp(prefix="facesearch-pg-")
    try:
        url = pg_cluster.start(directory)
    except pg_cluster.ClusterError as error:
        pytest.skip(f"no PostgreSQL server to test against ({error}); set {ENV_TEST_PG_URL} to use one")
    try:
        yield sa.make_url(url)
    finally:
        try:
            pg_cluster.stop(directory)
        finally:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: sa.URL) -> Iterator[str]:
    """A fresh, empty database on the server (dropped afterwards)."""
    name = f"facesearch_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield pg_server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _face(vector_id: int, **attributes: float) -> dict:
    return {"x0": 1.0, "y0": 2.0, "x1": 30.0, "y1": 40.0, "det_score": 0.9,
            "landmarks": [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0], [11.0, 12.0], [13.0, 14.0]],
            "attributes": {"Smiling": 0.5, "male": 0.5, spec.AGE_KEY: 30.0, **attributes},
            "vector_id": vector_id}


def test_migrations_make_the_schema_on_postgresql(pg_url: str) -> None:
    with Store(pg_url) as store:
        assert store.dialect == "postgresql"
        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        with store.engine.connect() as connection:
            assert connection.scalar(sa.text("SELECT version_num FROM alembic_version")) == head
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    Store(pg_url).close()  # reopening an up-to-date database changes nothing


def test_store_round_trip_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    driverless = sa.make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with Store(driverless) as store:  # postgresql:// picks the installed driver
        assert store.next_vector_id() == 0
        with store.session() as session:
            store.add_photo(session, path=tmp_path / "a.jpg", content_hash="ab" * 32, size=10,
                            mtime=1.5, width=64, height=48,
                            faces=[_face(0, Smiling=0.9), _face(1, male=0.8)])
            store.add_photo(session, path=tmp_path / "b.jpg", content_hash="cd" * 32, size=5,
                            mtime=2.5, status=PhotoStatus.NO_FACE)
        photo = store.photo_by_path(tmp_path / "a.jpg")
        assert photo is not None and [f.face_index for f in photo.faces] == [0, 1]
        assert photo.faces[0].attributes["Smiling"] == 0.9 and photo.faces[1].landmarks[4] == [13.0, 14.0]
        assert photo.indexed_at.tzinfo is not None
        assert store.counts() == (2, 2) and store.next_vector_id() == 2
        assert list(store.faces_by_vector_ids([1, 5])) == [1]
        with pytest.raises(sa.exc.IntegrityError):
            with store.session() as session:
                store.add_photo(session, path=tmp_path / "c.jpg", content_hash="ef" * 32, size=1,
                                mtime=0.0, faces=[_face(0)])
        store.set_meta("model_version", "1")
        store.set_meta("model_version", "2")
        assert store.get_meta("model_version") == "2"
        assert store.delete_photos([tmp_path / "a.jpg"]) == {"master": [0, 1]}
        assert store.counts() == (1, 0) and store.all_vector_ids() == []


def test_migration_0004_backfills_face_vectors_on_postgresql(pg_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", pg_url.replace("%", "%%"))
    command.upgrade(cfg, "0003")  # an index made before vector spaces
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO photos (id, path, content_hash, size, mtime, status, indexed_at) "
            "VALUES (1, '/p/a.jpg', 'x', 1, 1.0, 'indexed', now())")
        for face_id in (1, 2):
            connection.exec_driver_sql(
                "INSERT INTO faces (id, photo_id, face_index, x0, y0, x1, y1, landmarks, det_score, "
                f"attributes, vector_id) VALUES ({face_id}, 1, {face_id}, 0, 0, 1, 1, '[]', 1, '{{}}', "
                f"{face_id + 10})")
    engine.dispose()
    with Store(pg_url) as store:
        assert store.all_vector_ids("master") == [11, 12] and store.next_vector_id() == 13
        assert store.delete_photos(["/p/a.jpg"]) == {"master": [11, 12]}


def test_filters_run_in_postgresql(pg_url: str, tmp_path: Path) -> None:
    with Store(pg_url) as store:
        with store.session() as session:
            for i in range(40):
                store.add_photo(session, path=tmp_path / str(2019 + i % 2) / f"{i}.jpg",
                                content_hash=f"{i:064d}", size=1,
                                mtime=time.mktime((2019 + i % 2, 6, 1, 0, 0, 0, 0, 0, -1)),
                                faces=[_face(i, Smiling=i / 40, male=1 - i / 40, age=float(i))])
        ids = np.arange(40)

        def where(text: str) -> list[int]:
            return store.vector_ids_where(parse_filter(text).clause(store.dialect)).tolist()

        assert where("smiling > 0.5 and male < 0.45") == ids[(ids / 40 > 0.5) & (1 - ids / 40 < 0.45)].tolist()
        assert where("10 <= age < 13") == [10, 11, 12]
        assert where("path ~ '*/2019/*'") == ids[ids % 2 == 0].tolist()
        assert where("path !~ '*/2019/*' and age < 6") == [1, 3, 5]
        assert where("path ~ '*/20?9/1_.jpg'") == []  # _ is a literal underscore, not a wildcard
        assert where("date = 2020-06-01") == ids[ids % 2 == 1].tolist()
        assert where("date < 2020-01-01") == ids[ids % 2 == 0].tolist()
        assert where("indexed > 2000-01-01") == ids.tolist() and where("indexed < 2000-01-01") == []
        assert where("5_o_clock_shadow > 0.5") == []  # not stored: no match, no error
        assert store.vector_ids_where(parse_filter("age < 20").clause("postgresql"), among=[3, 25, 99]).tolist() == [3]
        assert store.estimate_share(parse_filter("age < 10").clause("postgresql")) == pytest.approx(0.25)


def test_index_query_remove_round_trip_on_postgresql(pg_url: str, data_dir: Path, tmp_path: Path) -> None:
    photos = copy_photos(data_dir, ["000461.jpg", "000711.jpg", "001367.jpg"], tmp_path / "db")
    fs = FaceSearch(tmp_path / "index", db_url=pg_url)
    try:
        report = fs.index([tmp_path / "db"])
        assert report.indexed == 3 and report.failed == []
        assert [p.name for p in (tmp_path / "index").iterdir() if p.suffix == ".sqlite"] == []
        info = fs.info()
        assert info["database"].startswith("postgresql") and (info["photos"], info["faces"]) == (3, report.faces)
        hits = fs.query(image=photos[1], k=2, where="age > 0")
        assert hits[0].path == str(photos[1].resolve()) and hits[0].score == pytest.approx(7.0, abs=1e-3)
        assert fs.remove([photos[1]]) == 1
    finally:
        fs.close()
    reopened = FaceSearch(tmp_path / "index", db_url=pg_url)
    try:
        assert reopened.info()["photos"] == 2
        assert str(photos[1].resolve()) not in {h.path for h in reopened.query(image=photos[1], k=5)}
        assert reopened.index([tmp_path / "db"]).unchanged == 2  # incremental with PostgreSQL too
    finally:
        reopened.close()
