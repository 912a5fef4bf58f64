"""SQL metadata of an index: photos, their faces, the faces' vector ids in each vector space, and
key/value facts, through SQLAlchemy 2.x.

Which face has which vector in which space is recorded in `face_vectors` (FaceVector, one row a
face and space); `faces.vector_id` repeats the face's master id, which queries join on.

The schema is created and upgraded by the Alembic migrations in facesearch/migrations, which
ship with the package. SQLite (the default, one file per index folder) and PostgreSQL work.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    contains_eager,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

from facesearch import spec
from facesearch.errors import FaceSearchError, first_line
from facesearch.index.spaces import MASTER

#: The Alembic scripts, shipped inside the package (alembic.ini points here too).
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: The SQLite file of an index, in its folder (unless a database URL says otherwise).
DB_FILENAME = "facesearch.sqlite"
_SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Most values bound in one IN (...) clause (old SQLite builds accept at most 999).
_IN_CHUNK = 500


class PhotoStatus(StrEnum):
    """Outcome of indexing one photo, stored in `PhotoRow.status`."""

    INDEXED = "indexed"
    NO_FACE = "no_face"
    ERROR = "error"


class Base(DeclarativeBase):
    """Declarative base; named constraints keep migrations (and SQLite batch mode) stable."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PhotoRow(Base):
    """One image file, indexed or not (see `status`)."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(sa.String, unique=True)
    content_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    mtime: Mapped[float] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)
    width: Mapped[int | None] = mapped_column(sa.Integer)
    height: Mapped[int | None] = mapped_column(sa.Integer)
    #: The descriptor model that described the faces (vectors of two models do not compare).
    model_version: Mapped[str | None] = mapped_column(sa.String(64))
    #: A truncated file read as far as it goes (None: not known, rows from before 0005).
    partial: Mapped[bool | None] = mapped_column(sa.Boolean)
    #: "photo" or "video" (None: a photo, rows from before migration 0008).
    media: Mapped[str | None] = mapped_column(sa.String(8))
    #: A video's length in seconds (None for photos).
    duration: Mapped[float | None] = mapped_column(sa.Float)
    indexed_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=_utc_now)

    faces: Mapped[list[FaceRow]] = relationship(
        back_populates="photo",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="FaceRow.face_index",
    )
    #: Other paths with the same content (copies, hard links, second links): one photo.
    aliases: Mapped[list[PhotoAlias]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="PhotoAlias.path")


class PhotoAlias(Base):
    """Another path at which a photo's content (same SHA-256) lives, with that file's size and
    mtime (for telling it unchanged)."""

    __tablename__ = "photo_aliases"

    path: Mapped[str] = mapped_column(sa.String, primary_key=True)
    photo_id: Mapped[int] = mapped_column(
        sa.ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    mtime: Mapped[float] = mapped_column(sa.Float)


class FaceRow(Base):
    """One detected face: its box and landmarks in original pixels, attributes, FAISS id."""

    __tablename__ = "faces"
    __table_args__ = (sa.UniqueConstraint("photo_id", "face_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(
        sa.ForeignKey("photos.id", ondelete="CASCADE"), index=True
    )
    face_index: Mapped[int] = mapped_column(sa.Integer)
    x0: Mapped[float] = mapped_column(sa.Float)
    y0: Mapped[float] = mapped_column(sa.Float)
    x1: Mapped[float] = mapped_column(sa.Float)
    y1: Mapped[float] = mapped_column(sa.Float)
    landmarks: Mapped[list[list[float]]] = mapped_column(sa.JSON)
    det_score: Mapped[float] = mapped_column(sa.Float)
    attributes: Mapped[dict[str, float]] = mapped_column(sa.JSON)
    vector_id: Mapped[int] = mapped_column(sa.BigInteger, unique=True, index=True)
    #: The person this face belongs to (index.people; None: none yet). Migration 0006.
    person_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("persons.id", ondelete="SET NULL"), index=True)
    #: A user took the face out of its person: never assigned automatically again.
    person_locked: Mapped[bool | None] = mapped_column(sa.Boolean)
    #: A video face is a track (pipeline.tracking, migration 0008): its id within the video, first
    #: and last seen, the best frame's time (the box's), in seconds, and sampled frames seen in.
    #: None for photo faces.
    track_id: Mapped[int | None] = mapped_column(sa.Integer)
    track_start: Mapped[float | None] = mapped_column(sa.Float)
    track_end: Mapped[float | None] = mapped_column(sa.Float)
    frame_time: Mapped[float | None] = mapped_column(sa.Float)
    track_frames: Mapped[int | None] = mapped_column(sa.Integer)

    photo: Mapped[PhotoRow] = relationship(back_populates="faces")

    def media_fields(self, photo: PhotoRow) -> dict:
        """The face's media ("photo" or "video") and, for a video's face (a track), track_id,
        start, end and time (seconds): the video fields of hits, of `describe`d stored faces
        and of people's faces. `photo` is this face's photo row (passed, not loaded)."""
        return media_fields(photo.media, self.track_id, self.track_start, self.track_end, self.frame_time)

    classes: Mapped[FaceClasses | None] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, uselist=False)
    #: The face's vector id in each space (the master one equals `vector_id`).
    vectors: Mapped[list[FaceVector]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="FaceVector.space")


class PersonRow(Base):
    """A person: faces grouped by identity (index.people). `id` is kept for good, `name` is the
    user's (None until named), `centroid` the mean of its faces' identity vectors (unit norm,
    float16 bytes, see encode_vector), kept while its faces are described again."""

    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(sa.String, index=True)
    centroid: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), default=_utc_now)


class FaceVector(Base):
    """A face's vector id in one vector space (index.spaces), unique within the space, and the
    vector itself (`vector`: float16 bytes, see encode_vector; NULL only for rows made before
    migration 0005 until they are filled in from the FAISS file). SQL is the source of truth
    for vectors; the FAISS files are rebuilt from these."""

    __tablename__ = "face_vectors"
    __table_args__ = (sa.UniqueConstraint("space", "vector_id"),)

    face_id: Mapped[int] = mapped_column(
        sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True)
    space: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    vector_id: Mapped[int] = mapped_column(sa.BigInteger)
    vector: Mapped[bytes | None] = mapped_column(sa.LargeBinary)


#: How vectors are kept in SQL: little-endian float16 (half the bytes of float32; the
#: round trip changes a unit-norm block's cosines by under 1e-3).
VECTOR_DTYPE = np.dtype("<f2")


def media_fields(media: str | None, track_id: int | None, start: float | None, end: float | None,
                 time: float | None) -> dict:
    """{"media": "photo"}, or a video face's {"media": "video", "track_id", "start", "end",
    "time"} (seconds) from its photo's media and its track columns (FaceRow.media_fields)."""
    if media != "video":
        return {"media": "photo"}
    return {"media": "video", "track_id": track_id, "start": start, "end": end, "time": time}


def encode_vector(vector: np.ndarray) -> bytes:
    """A vector (dim,) as the bytes stored in face_vectors.vector (float16, 2 bytes a dim)."""
    return np.asarray(vector, dtype=np.float32).reshape(-1).astype(VECTOR_DTYPE).tobytes()


def decode_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Stored vector bytes -> (n, dim) float32; ValueError if one is not `dim` float16s."""
    if not blobs:
        return np.empty((0, dim), np.float32)
    joined = b"".join(blobs)
    if len(joined) != len(blobs) * dim * VECTOR_DTYPE.itemsize:
        raise ValueError(f"stored vectors are not all of {dim} dimensions")
    return np.frombuffer(joined, dtype=VECTOR_DTYPE).reshape(len(blobs), dim).astype(np.float32)


def class_column(name: str) -> str:
    """The face_classes column of a class ("Male" -> "celeba_male", "male" -> "p_male") or of
    the age estimate ("age"): unique even where SQL compares names case-insensitively."""
    if name == spec.AGE_KEY or name in spec.QUALITY_KEYS:
        return name
    return f"celeba_{name.lower()}" if name in spec.CELEBA_ATTRIBUTES else f"p_{name.lower()}"


#: Class, "age", emotion, pixel attribute and quality key (spec.STORED_KEYS) -> its face_classes column.
CLASS_COLUMNS: dict[str, str] = {name: class_column(name) for name in spec.STORED_KEYS}


class FaceClasses(Base):
    """A face's class probabilities and age as plain columns (a copy of `FaceRow.attributes`), so that
    --where filters are column comparisons in SQL rather than JSON parsing of every row."""

    __table__ = sa.Table(
        "face_classes",
        Base.metadata,
        sa.Column("face_id", sa.Integer, sa.ForeignKey("faces.id", ondelete="CASCADE"),
                  primary_key=True),
        *(sa.Column(column, sa.Float, nullable=True) for column in CLASS_COLUMNS.values()),
    )


def _class_row(attributes: Mapping[str, Any]) -> FaceClasses:
    return FaceClasses(**{column: float(attributes[name]) for name, column in CLASS_COLUMNS.items()
                          if isinstance(attributes.get(name), (int, float))})


def _face_row(face_index: int, face: Mapping[str, Any]) -> FaceRow:
    """The row of a face mapping (see Store.add_photo), with its classes and its vector ids;
    ValueError if its master id in `vectors` is not its vector_id."""
    columns = {key: value for key, value in face.items() if key not in ("vectors", "embeddings")}
    vectors = dict(face.get("vectors") or {MASTER: face["vector_id"]})
    if vectors.get(MASTER) != face["vector_id"]:
        raise ValueError(f"a face's {MASTER} vector id must be its vector_id ({face['vector_id']}), "
                         f"got {vectors.get(MASTER)}")
    embeddings = face.get("embeddings") or {}
    return FaceRow(face_index=face_index, classes=_class_row(face["attributes"]),
                   vectors=[FaceVector(space=space, vector_id=int(vector_id),
                                       vector=encode_vector(embeddings[space]) if space in embeddings else None)
                            for space, vector_id in vectors.items()], **columns)


class IndexMeta(Base):
    """Key/value facts about the index (model_version, dims, index_type, ...)."""

    __tablename__ = "index_meta"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)


def database_url(index_dir: Path, url: str | None = None) -> str | sa.URL:
    """`url` (Settings.db_url) if given, else the SQLite file DB_FILENAME in `index_dir`."""
    if url:
        return url
    return sa.URL.create("sqlite", database=str(Path(index_dir).resolve() / DB_FILENAME))


def database_exists(index_dir: Path, url: str | None = None) -> bool:
    """Whether the index's database is there: True for a server database (it cannot be told
    without connecting), else whether its SQLite file exists."""
    parsed = sa.make_url(database_url(index_dir, url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return True
    return Path(parsed.database).exists()


def redacted(url: str | sa.URL) -> str:
    """A database URL without its password, for showing."""
    return sa.make_url(url).render_as_string(hide_password=True)


def _with_driver(url: str | sa.URL) -> sa.URL:
    """A PostgreSQL URL without a driver ("postgresql://...") gets the one installed: psycopg
    (3, the `postgres` extra) unless psycopg2 is there; FaceSearchError if neither is."""
    url = sa.make_url(url)
    if url.drivername not in ("postgresql", "postgres"):
        return url
    import importlib.util

    for module, driver in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        if importlib.util.find_spec(module) is not None:
            return url.set(drivername=driver)
    raise FaceSearchError("PostgreSQL needs a driver: pip install 'facesearch[postgres]'")


def _photo_key(path: str | Path) -> str:
    """The stored form of a photo path: absolute and normalised, links kept as the user named
    them (pipeline.sources.photo_key)."""
    return os.path.abspath(path)


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


class DamagedDatabaseError(FaceSearchError):
    """The index's SQLite file is damaged (the message names it and what to do)."""


def _is_damage(error: BaseException) -> bool:
    """Whether a database error means a damaged file rather than, say, a locked one."""
    text = str(getattr(error, "orig", error)).lower()
    return any(word in text for word in ("malformed", "not a database", "corrupt", "disk i/o"))


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """The SQL database of one index; its schema is brought to the newest revision on open."""

    def __init__(self, url: str | sa.URL) -> None:
        self.engine = sa.create_engine(_with_driver(url))
        self.dialect: str = self.engine.dialect.name  # "sqlite", "postgresql", ...
        self._sqlite = self.dialect == "sqlite"
        if self._sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_on_connect)
        try:
            self._upgrade_schema()
        except sa.exc.DatabaseError as error:
            self.engine.dispose()
            raise self.damaged(error) from None
        except BaseException:
            self.engine.dispose()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def for_index_dir(cls, index_dir: Path, url: str | None = None) -> Store:
        """Open the store of an index folder (created if missing); see `database_url`."""
        Path(index_dir).mkdir(parents=True, exist_ok=True)
        return cls(database_url(index_dir, url))

    def _upgrade_schema(self) -> None:
        """Run the Alembic migrations up to head on one of this engine's connections (Alembic is
        imported only when the database is not at head already: ~0.4 s of a cold query)."""
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        url = self.engine.url.render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        with self.engine.connect() as connection:
            if self._sqlite:  # SQLite batch migrations copy tables: dropping one must not cascade
                connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
            connection.commit()
            if self._sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")

    def _at_head(self) -> bool:
        """Whether the database's alembic_version names the newest migration (migration files
        are named after their revision: versions/0008_video.py is revision "0008"). False when
        it cannot be read (a new or damaged database: Alembic then says what is wrong)."""
        head = max(path.name.split("_", 1)[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))
        try:
            with self.engine.connect() as connection:
                versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        except sa.exc.DBAPIError:
            return False
        return versions == [head]

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block succeeds and rolls back when it raises; a
        damaged SQLite file raises DamagedDatabaseError (one line), not a raw DatabaseError."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except sa.exc.DatabaseError as error:
            if _is_damage(error):
                raise self.damaged(error) from None
            raise

    @contextmanager
    def connection(self) -> Iterator[sa.Connection]:
        """A plain (Core) connection for reads, about a third of a session's cost a call (the
        re-ranking of compressed codes reads ~100 vectors a query); damage raised as `session`."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except sa.exc.DatabaseError as error:
            if _is_damage(error):
                raise self.damaged(error) from None
            raise

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, None for a server database."""
        return Path(self.engine.url.database) if self._sqlite and self.engine.url.database else None

    def damaged(self, error: BaseException) -> FaceSearchError:
        """The one-line error for a database that cannot be read (`error`, the driver's)."""
        if not _is_damage(error):
            return FaceSearchError(f"the index database cannot be opened: {first_line(error)}")
        where = self.sqlite_file or redacted(self.engine.url)
        return DamagedDatabaseError(
            f"{where}: the index database is damaged ({first_line(error)}); run "
            f"`facesearch check --repair` to recover what can still be read (the damaged file is kept "
            f"beside it), or index the photos again into a new index")

    def integrity_problems(self) -> list[str]:
        """SQLite's own integrity check (PRAGMA integrity_check) and foreign key check: [] when
        the file is sound. Other databases: [] (they check themselves)."""
        if not self._sqlite:
            return []
        try:
            with self.engine.connect() as connection:
                found = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check")]
                keys = list(connection.exec_driver_sql("PRAGMA foreign_key_check"))
        except sa.exc.DatabaseError as error:
            return [first_line(error)]
        problems = [line for line in found if line != "ok"]
        if keys:
            problems.append(f"{len(keys)} row(s) point at rows that do not exist")
        return problems

    @contextmanager
    def erasing(self) -> Iterator[Session]:
        """A session for deleting biometric data for good: on SQLite the deleted rows' bytes are
        overwritten (secure_delete) and, after the commit, the write-ahead log is emptied, so no
        copy of them stays in the index folder. Other databases: a plain session."""
        with self.session() as session:
            if self._sqlite:
                session.execute(sa.text("PRAGMA secure_delete=ON"))
            yield session
        if self._sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- photos ---------------------------------------------------------------------------------
    def add_photo(
        self,
        session: Session,
        *,
        path: str | Path,
        content_hash: str,
        size: int,
        mtime: float,
        status: PhotoStatus = PhotoStatus.INDEXED,
        error: str | None = None,
        width: int | None = None,
        height: int | None = None,
        model_version: str | None = None,
        partial: bool = False,
        faces: Sequence[Mapping[str, Any]] = (),
        media: str = "photo",
        duration: float | None = None,
    ) -> PhotoRow:
        """Add a photo (or a video: `media` "video", `duration` seconds) and its faces to
        `session`; each face mapping holds x0, y0, x1, y1, landmarks, det_score, attributes and
        vector_id (its master id), optionally a video face's track_id, track_start, track_end,
        frame_time and track_frames, vectors ({space: vector id}, master included; default
        {MASTER: vector_id}) and embeddings ({space: vector (dim,)}, stored as float16 bytes);
        its list position is face_index."""
        photo = PhotoRow(
            path=_photo_key(path),
            content_hash=content_hash,
            size=size,
            mtime=mtime,
            status=str(status),
            error=error,
            width=width,
            height=height,
            model_version=model_version,
            partial=partial,
            media=media,
            duration=duration,
            faces=[_face_row(i, face) for i, face in enumerate(faces)],
        )
        session.add(photo)
        return photo

    def photo_by_path(self, path: str | Path) -> PhotoRow | None:
        """The photo stored at `path` with its faces loaded, or None."""
        query = sa.select(PhotoRow).where(PhotoRow.path == _photo_key(path))
        with self.session() as session:
            return session.scalars(query.options(selectinload(PhotoRow.faces))).one_or_none()

    def photos(self) -> list[PhotoRow]:
        """Every photo, by path, without its faces (for deciding what to (re)index)."""
        with self.session() as session:
            return list(session.scalars(sa.select(PhotoRow).order_by(PhotoRow.path)))

    def photos_of_other_models(self, model_version: str) -> tuple[int, PhotoRow | None]:
        """How many indexed photos another model described, and the first of them by path."""
        other = sa.and_(PhotoRow.status == PhotoStatus.INDEXED,
                        sa.or_(PhotoRow.model_version.is_(None), PhotoRow.model_version != model_version))
        with self.session() as session:
            count = session.scalar(sa.select(sa.func.count()).select_from(PhotoRow).where(other))
            first = session.scalars(sa.select(PhotoRow).where(other).order_by(PhotoRow.path).limit(1)).first()
            return count, first

    def photos_lacking_space(self, space: str) -> set[str]:
        """Paths of the indexed photos with a face that has no vector in `space` (an index made
        before that space existed: the next index run describes them again)."""
        has_vector = (sa.select(FaceVector.face_id)
                      .where(FaceVector.face_id == FaceRow.id, FaceVector.space == space).exists())
        query = (sa.select(PhotoRow.path).join(PhotoRow.faces)
                 .where(PhotoRow.status == PhotoStatus.INDEXED, ~has_vector).distinct())
        with self.session() as session:
            return set(session.scalars(query))

    def photos_lacking_keys(self, keys: Iterable[str]) -> set[str]:
        """Paths of the indexed photos with a face whose attributes lack one of `keys` (stored
        per-face numbers, spec.STORED_KEYS: faces described before such a number existed; the
        next index run describes them again to fill it in, index.indexer). The faces whose
        face_classes column of a key is empty are read first (a column scan), then their
        attributes; a face whose attributes hold the value but whose column is empty (an index
        taken down and up through migration 0007) gets its columns written from them here."""
        keys = [key for key in keys if key in CLASS_COLUMNS]
        if not keys:
            return set()
        empty = sa.or_(*(FaceClasses.__table__.c[CLASS_COLUMNS[key]].is_(None) for key in keys))
        query = (sa.select(FaceRow.id, FaceRow.attributes, PhotoRow.path).join(FaceRow.photo)
                 .outerjoin(FaceClasses, FaceClasses.face_id == FaceRow.id)
                 .where(PhotoRow.status == PhotoStatus.INDEXED, empty))
        lacking: set[str] = set()
        with self.session() as session:
            refill: dict[int, dict] = {}
            for face_id, attributes, path in session.execute(query):
                if all(isinstance((attributes or {}).get(key), (int, float)) for key in keys):
                    refill[face_id] = attributes
                else:
                    lacking.add(path)
            self.update_attributes(session, refill)
        return lacking

    def update_attributes(self, session: Session, attributes: Mapping[int, Mapping[str, Any]]) -> None:
        """Replace faces' attributes ({face id: attributes}) and their face_classes columns, in
        `session`; nothing else of the faces changes (vectors, ids, persons)."""
        for face_id, values in attributes.items():
            session.execute(sa.update(FaceRow).where(FaceRow.id == face_id).values(attributes=dict(values)))
            session.execute(sa.delete(FaceClasses).where(FaceClasses.face_id == face_id))
            row = _class_row(values)
            row.face_id = face_id
            session.add(row)

    def failed_photos(self) -> list[PhotoRow]:
        """The photos whose indexing raised an error, by path."""
        query = sa.select(PhotoRow).where(PhotoRow.status == PhotoStatus.ERROR).order_by(PhotoRow.path)
        with self.session() as session:
            return list(session.scalars(query))

    def delete_photos(self, paths: Iterable[str | Path],
                      session: Session | None = None) -> dict[str, list[int]]:
        """Delete these photos and their faces (in `session` if given, else in a transaction of
        its own); returns the removed faces' vector ids by space, {space: ascending ids}, for
        the spaces that had any."""
        if session is None:
            with self.session() as own:
                return self.delete_photos(paths, own)
        keys = sorted({_photo_key(path) for path in paths})
        vector_ids: dict[str, list[int]] = {}
        for chunk in _chunks(keys):
            found = session.execute(
                sa.select(FaceVector.space, FaceVector.vector_id).join(FaceRow)
                .join(FaceRow.photo).where(PhotoRow.path.in_(chunk)))
            for space, vector_id in found:
                vector_ids.setdefault(space, []).append(vector_id)
            session.execute(
                sa.delete(PhotoRow).where(PhotoRow.path.in_(chunk)),
                execution_options={"synchronize_session": False},
            )
        return {space: sorted(ids) for space, ids in sorted(vector_ids.items())}

    def aliases(self) -> dict[str, PhotoAlias]:
        """Every alias (another path of an indexed photo's content), by path."""
        with self.session() as session:
            return {alias.path: alias for alias in session.scalars(sa.select(PhotoAlias))}

    def aliases_of(self, photo_ids: Iterable[int]) -> dict[int, list[str]]:
        """{photo id: its other paths, ascending} for the photos that have any."""
        wanted = sorted({int(i) for i in photo_ids})
        found: dict[int, list[str]] = {}
        with self.session() as session:
            for chunk in _chunks(wanted):
                query = (sa.select(PhotoAlias.photo_id, PhotoAlias.path)
                         .where(PhotoAlias.photo_id.in_(chunk)).order_by(PhotoAlias.path))
                for photo_id, path in session.execute(query):
                    found.setdefault(photo_id, []).append(path)
        return found

    def add_alias(self, path: str | Path, photo_path: str, size: int, mtime: float) -> None:
        """Record `path` as another path of the photo stored at `photo_path` (replacing any
        alias record of `path`)."""
        with self.session() as session:
            photo_id = session.scalar(sa.select(PhotoRow.id).where(PhotoRow.path == photo_path))
            session.merge(PhotoAlias(path=_photo_key(path), photo_id=photo_id, size=size, mtime=mtime))

    def delete_aliases(self, paths: Iterable[str | Path]) -> int:
        """Forget these alias paths; returns how many there were."""
        keys = sorted({_photo_key(path) for path in paths})
        removed = 0
        with self.session() as session:
            for chunk in _chunks(keys):
                removed += session.execute(sa.delete(PhotoAlias).where(PhotoAlias.path.in_(chunk))).rowcount or 0
        return removed

    def photos_with_hash(self, digest: str) -> list[PhotoRow]:
        """The indexed photos (any status but error) whose content has this SHA-256."""
        query = (sa.select(PhotoRow).where(PhotoRow.content_hash == digest,
                                           PhotoRow.status != PhotoStatus.ERROR)
                 .order_by(PhotoRow.path))
        with self.session() as session:
            return list(session.scalars(query))

    def move_photo(self, old: str, new: str | Path, size: int, mtime: float) -> None:
        """A photo's file moved from `old` to `new` (same content): its row, faces and vectors
        stay, only the path (and size, mtime) change. An alias record of `new` goes."""
        with self.session() as session:
            session.execute(sa.delete(PhotoAlias).where(PhotoAlias.path == _photo_key(new)))
            session.execute(sa.update(PhotoRow).where(PhotoRow.path == old)
                            .values(path=_photo_key(new), size=size, mtime=mtime))

    def relocate(self, old_root: str | Path, new_root: str | Path) -> int:
        """Rewrite every stored path (photos and aliases) under the folder `old_root` to the same
        place under `new_root`; returns how many paths changed. FaceSearchError if a rewritten
        path is already stored."""
        old, new = _photo_key(old_root).rstrip(os.sep), _photo_key(new_root).rstrip(os.sep)
        changed = 0
        with self.session() as session:
            for table in (PhotoRow, PhotoAlias):
                rows = session.execute(sa.select(table.path).where(
                    sa.or_(table.path == old, table.path.startswith(old + os.sep, autoescape=True)))).scalars().all()
                for path in rows:
                    moved = new + path[len(old):]
                    if session.scalar(sa.select(sa.func.count()).select_from(table).where(table.path == moved)):
                        raise FaceSearchError(f"{moved} is already in the index: `facesearch remove` it "
                                              "first, or index the new folder instead of relocating")
                    session.execute(sa.update(table).where(table.path == path).values(path=moved))
                    changed += 1
        return changed

    def update_file_stat(self, session: Session, path: str | Path, size: int, mtime: float) -> None:
        """Record a new size and mtime for a photo whose content did not change."""
        session.execute(sa.update(PhotoRow).where(PhotoRow.path == _photo_key(path))
                        .values(size=size, mtime=mtime))

    # --- faces ----------------------------------------------------------------------------------
    def next_vector_id(self) -> int:
        """The smallest vector id above every stored one, in any space (0 for an empty store)."""
        with self.session() as session:
            highest = [session.scalar(sa.select(sa.func.max(column)))
                       for column in (FaceRow.vector_id, FaceVector.vector_id)]
        known = [value for value in highest if value is not None]
        return max(known) + 1 if known else 0

    def stored_vectors(self, space: str, dim: int, ids: Iterable[int] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), vectors float32 (n, dim)) of the vectors SQL holds in `space`
        (those in `ids` if given), by id; rows without vector bytes are left out."""
        query = (sa.select(FaceVector.vector_id, FaceVector.vector)
                 .where(FaceVector.space == space, FaceVector.vector.is_not(None))
                 .order_by(FaceVector.vector_id))
        found: list[tuple[int, bytes]] = []
        with self.connection() as connection:
            if ids is None:
                found = list(connection.execute(query))
            else:
                for chunk in _chunks(sorted({int(i) for i in ids})):
                    found += list(connection.execute(query.where(FaceVector.vector_id.in_(chunk))))
        found.sort()
        return (np.fromiter((i for i, _ in found), dtype=np.int64, count=len(found)),
                decode_vectors([blob for _, blob in found], dim))

    def vector_ids_without_vector(self, space: str) -> list[int]:
        """Vector ids of `space` whose vector SQL does not hold (rows from before migration
        0005), ascending."""
        query = (sa.select(FaceVector.vector_id)
                 .where(FaceVector.space == space, FaceVector.vector.is_(None))
                 .order_by(FaceVector.vector_id))
        with self.session() as session:
            return list(session.scalars(query))

    def set_vectors(self, space: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store the vectors (n, dim) of these vector ids (n,) of `space` in SQL."""
        table = FaceVector.__table__
        statement = (sa.update(table).where(table.c.space == space,
                                            table.c.vector_id == sa.bindparam("vid"))
                     .values(vector=sa.bindparam("blob")))
        with self.session() as session:
            connection = session.connection()
            for start in range(0, len(ids), _IN_CHUNK):
                connection.execute(statement, [
                    {"vid": int(i), "blob": encode_vector(v)}
                    for i, v in zip(ids[start:start + _IN_CHUNK], vectors[start:start + _IN_CHUNK])])

    def all_vector_ids(self, space: str = MASTER) -> list[int]:
        """Every stored face's vector id in `space`, ascending."""
        query = (sa.select(FaceVector.vector_id).where(FaceVector.space == space)
                 .order_by(FaceVector.vector_id))
        with self.session() as session:
            return list(session.scalars(query))

    def photos_of_vectors(self, space: str, ids: Iterable[int]) -> list[str]:
        """The stored paths, ascending and distinct, of the photos whose faces have these
        vector ids in `space` (unknown ids are left out)."""
        wanted = sorted({int(i) for i in ids})
        paths: set[str] = set()
        with self.session() as session:
            for chunk in _chunks(wanted):
                paths.update(session.scalars(
                    sa.select(PhotoRow.path).join(PhotoRow.faces).join(FaceRow.vectors)
                    .where(FaceVector.space == space, FaceVector.vector_id.in_(chunk))))
        return sorted(paths)

    def faces_by_vector_ids(self, ids: Iterable[int]) -> dict[int, tuple[FaceRow, PhotoRow]]:
        """The face and photo of each known vector id (unknown ids are left out)."""
        wanted = sorted({int(i) for i in ids})
        found: dict[int, tuple[FaceRow, PhotoRow]] = {}
        with self.session() as session:
            for chunk in _chunks(wanted):
                query = (
                    sa.select(FaceRow)
                    .join(FaceRow.photo)
                    .options(contains_eager(FaceRow.photo))
                    .where(FaceRow.vector_id.in_(chunk))
                )
                for face in session.scalars(query):
                    found[face.vector_id] = (face, face.photo)
        return found

    def vector_ids_where(self, clause: sa.ColumnElement[bool],
                         among: Iterable[int] | None = None) -> np.ndarray:
        """Vector ids (int64, ascending) of the faces that meet `clause`, a condition on faces
        joined with their photos (see filters.py); only those in `among` if given."""
        query = (sa.select(FaceRow.vector_id).join(FaceRow.photo)
                 .outerjoin(FaceClasses, FaceClasses.face_id == FaceRow.id).where(clause))
        with self.session() as session:
            if among is None:
                found = list(session.scalars(query))
            else:
                wanted = sorted({int(i) for i in among})
                found = [i for chunk in _chunks(wanted)
                         for i in session.scalars(query.where(FaceRow.vector_id.in_(chunk)))]
        return np.sort(np.fromiter(found, dtype=np.int64, count=len(found)))

    def vector_ids_by(self, key: str, n: int, clause: sa.ColumnElement[bool] | None = None,
                      descending: bool = True) -> np.ndarray:
        """Vector ids (int64) of the (at most) n faces with the highest stored value of `key` (a
        spec.STORED_KEYS name: its face_classes column), best first (the lowest first when not
        `descending`; ties by vector id); faces without a value are left out; only faces
        meeting `clause` (as in vector_ids_where) if given."""
        column = FaceClasses.__table__.c[CLASS_COLUMNS[key]]
        query = (sa.select(FaceRow.vector_id).join(FaceRow.photo)
                 .join(FaceClasses, FaceClasses.face_id == FaceRow.id)
                 .where(column.is_not(None))
                 .order_by(column.desc() if descending else column.asc(), FaceRow.vector_id).limit(n))
        if clause is not None:
            query = query.where(clause)
        with self.session() as session:
            found = list(session.scalars(query))
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def estimate_share(self, clause: sa.ColumnElement[bool], sample: int = 1000,
                       seed: int = 0) -> float | None:
        """Share of faces meeting `clause`, measured on about `sample` faces picked at random by
        primary key, or on all of them if there are no more (None if there are no faces)."""
        with self.session() as session:
            low, high = session.execute(sa.select(sa.func.min(FaceRow.id), sa.func.max(FaceRow.id))).one()
            if low is None:
                return None
            if high - low < sample:
                picked = np.arange(low, high + 1)
            else:
                picked = np.unique(np.random.default_rng(seed).integers(low, high + 1, size=sample))
            total = matched = 0
            for chunk in _chunks(picked.tolist()):
                total += session.scalar(sa.select(sa.func.count()).select_from(FaceRow)
                                        .where(FaceRow.id.in_(chunk))) or 0
                matched += session.scalar(
                    sa.select(sa.func.count()).select_from(FaceRow).join(FaceRow.photo)
                    .outerjoin(FaceClasses, FaceClasses.face_id == FaceRow.id)
                    .where(FaceRow.id.in_(chunk), clause)) or 0
        return matched / total if total else None

    def library_counts(self) -> dict[str, int]:
        """{"videos": video files, "without_faces": photos in which no face was found,
        "partial": truncated photos read as far as they go, "other_paths": aliases}."""
        with self.session() as session:
            videos = session.scalar(sa.select(sa.func.count()).select_from(PhotoRow)
                                    .where(PhotoRow.media == "video"))
            faceless = session.scalar(sa.select(sa.func.count()).select_from(PhotoRow)
                                      .where(PhotoRow.status == PhotoStatus.NO_FACE.value))
            partial = session.scalar(sa.select(sa.func.count()).select_from(PhotoRow)
                                     .where(PhotoRow.partial.is_(True)))
            aliases = session.scalar(sa.select(sa.func.count()).select_from(PhotoAlias))
        return {"videos": videos or 0, "without_faces": faceless or 0, "partial": partial or 0,
                "other_paths": aliases or 0}

    def counts(self) -> tuple[int, int]:
        """(number of photos, number of faces)."""
        with self.session() as session:
            n_photos = session.scalar(sa.select(sa.func.count()).select_from(PhotoRow))
            n_faces = session.scalar(sa.select(sa.func.count()).select_from(FaceRow))
        return n_photos or 0, n_faces or 0

    # --- meta -----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        """The value stored under `key`, or None."""
        with self.session() as session:
            row = session.get(IndexMeta, key)
            return None if row is None else row.value

    def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key`, replacing any previous value."""
        with self.session() as session:
            session.merge(IndexMeta(key=key, value=value))
