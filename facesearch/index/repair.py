"""SQL is the source of truth for vectors; the FAISS files are a cache derived from it.

Every face's vector in every space is stored in SQL (store.FaceVector.vector, float16 bytes).
`open_spaces` opens the FAISS files of an index and makes them agree with SQL: a file that is
missing or cannot be read (truncated, overwritten) is rebuilt from SQL, and vectors SQL holds
but a file lacks (a file restored from an older copy) are put back, each said in one line to
`notice`. Vectors a file holds without a row (a run killed between its FAISS and SQL writes)
are left to `reconcile`, under the index lock; queries skip them. Rows made before vectors
were kept in SQL (migration 0005) are filled in from the FAISS file first (`backfill_vectors`).

`check` looks at everything (SQLite integrity, each FAISS file against SQL, photo files on disk)
and, with repair=True, fixes what can be fixed; `salvage_sqlite` copies what can still be read
out of a damaged SQLite file into a new one.
"""
from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError, first_line
from facesearch.index.spaces import SPACES, Spaces, SpaceSpec, VectorSpace
from facesearch.index.store import Store

Notice = Callable[[str], None]
#: Meta key prefix ("vectors_backfilled:<space>"): every row of the space holds its vector.
BACKFILLED = "vectors_backfilled"


def _ignore(_line: str) -> None:
    return None


def _open_file(folder: Path, spec: SpaceSpec, compression: str | None,
               ivf_threshold: int | None) -> tuple[VectorSpace | None, str | None]:
    """(the space as saved, None) or (None, why it cannot be read); (None, None) if no file."""
    path = folder / spec.filename
    if not path.exists():
        return None, None
    try:
        return VectorSpace.open(path, compression, ivf_threshold, name=spec.name, dim=spec.dim), None
    except RuntimeError:  # FAISS's C++ assertion text says nothing a user can act on
        return None, "truncated or damaged: FAISS cannot read it"
    except (ValueError, OSError, EOFError) as error:
        return None, first_line(error)[:200]


def backfill_vectors(store: Store, space: VectorSpace) -> int:
    """Store in SQL the vectors of `space` whose rows lack them (indexes made before vectors
    were kept in SQL); returns how many were filled in. Ids the file lacks stay NULL."""
    done_key = f"{BACKFILLED}:{space.name}"
    if store.get_meta(done_key) == "1":  # the scan below reads the whole table: once is enough
        return 0
    wanted = np.asarray(store.vector_ids_without_vector(space.name), dtype=np.int64)
    present = wanted[np.isin(wanted, space.ids())]
    for start in range(0, len(present), 65_536):
        chunk = present[start:start + 65_536]
        store.set_vectors(space.name, chunk, space.reconstruct(chunk))
    if len(present) == len(wanted):
        store.set_meta(done_key, "1")
    return len(present)


def rebuild_space(store: Store, folder: Path, spec: SpaceSpec, compression: str | None,
                  ivf_threshold: int | None) -> VectorSpace:
    """A new space holding exactly the vectors SQL has for `spec` (not saved)."""
    space = VectorSpace.empty(folder / spec.filename, compression, ivf_threshold,
                              name=spec.name, dim=spec.dim)
    space.exact = exact_vectors_from(store, space)
    ids, vectors = store.stored_vectors(spec.name, spec.dim)
    if len(ids):
        space.add(ids, vectors)
    space.unsaved = True
    return space


def restore_from_sql(store: Store, space: VectorSpace, stored: np.ndarray | None = None
                     ) -> tuple[int, np.ndarray]:
    """Put back into `space` the vectors SQL holds for faces whose vector the space lacks.
    `stored`: the space's vector ids in SQL, if the caller has them already. Returns (how many
    were put back, the lacking vector ids SQL has no bytes for either)."""
    if stored is None:
        stored = store.all_vector_ids(space.name)
    stored = np.asarray(stored, dtype=np.int64)
    lacking = stored[~np.isin(stored, space.ids())]
    ids, vectors = store.stored_vectors(space.name, space.dim, lacking.tolist())
    if len(ids):
        space.add(ids, vectors)
    return len(ids), lacking[~np.isin(lacking, ids)]


def exact_vectors_from(store: Store, space: VectorSpace
                       ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The exact vectors of `space` for re-ranking its compressed codes (VectorSpace.exact):
    the float16 copies SQL holds (Store.stored_vectors), read for the candidates of each query
    (about RERANK_FACTOR x k rows by primary key)."""
    def exact(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return store.stored_vectors(space.name, space.dim, ids)
    return exact


def open_spaces(folder: Path, store: Store, compression: str | None = None,
                ivf_threshold: int | None = None, notice: Notice = _ignore,
                save: Callable[[Spaces], bool] | None = None,
                specs: tuple[SpaceSpec, ...] = SPACES) -> Spaces:
    """Open every space of an index folder so that it holds every vector SQL has: missing or
    unreadable files are rebuilt from SQL, vectors a file lacks are added from SQL, each said
    in one `notice` line. `save(spaces)` is called when something was rebuilt (it saves them
    when it may: under the index lock); returns the spaces."""
    folder = Path(folder)
    opened: list[VectorSpace] = []
    changed = False
    for spec in specs:
        space, problem = _open_file(folder, spec, compression, ivf_threshold)
        if space is not None:
            space.exact = exact_vectors_from(store, space)
            backfill_vectors(store, space)
            restored, _ = restore_from_sql(store, space)
            if restored:
                notice(f"{spec.filename} lacked {restored} vector(s) the database holds: "
                       "put back from the database")
                changed = True
        else:
            rebuilt = rebuild_space(store, folder, spec, compression, ivf_threshold)
            if problem is not None:
                notice(f"{spec.filename} could not be read ({problem}): rebuilt from the database "
                       f"({len(rebuilt)} vectors)")
                changed = True
            elif len(rebuilt):
                notice(f"{spec.filename} was missing: rebuilt from the database ({len(rebuilt)} vectors)")
                changed = True
            else:
                rebuilt.unsaved = False  # a new, empty index: nothing to say, nothing to write yet
            space = rebuilt
        opened.append(space)
    spaces = Spaces(folder, opened)
    if changed and save is not None:
        save(spaces)
    return spaces


@dataclass
class CheckReport:
    """What `check` found (and, with repair, did). Paths are as stored."""

    database: list[str] = field(default_factory=list)          # integrity problems
    photos: int = 0
    faces: int = 0
    spaces: dict[str, str] = field(default_factory=dict)       # space -> "ok" or the problem
    vectors_without_sql: int = 0                                # faces whose vector SQL lacks
    missing_files: list[str] = field(default_factory=list)     # photos gone from disk
    missing_aliases: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)           # one line per fix made

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong (after the repairs made)."""
        return not (self.database or self.vectors_without_sql or self.missing_files
                    or self.missing_aliases or any(v != "ok" for v in self.spaces.values()))

    def lines(self) -> list[str]:
        """A short human report, one finding a line."""
        out = [f"database: {'ok' if not self.database else '; '.join(self.database)}",
               f"photos: {self.photos}, faces: {self.faces}"]
        out += [f"space {name}: {state}" for name, state in self.spaces.items()]
        if self.vectors_without_sql:
            out.append(f"{self.vectors_without_sql} face(s) have no vector in the database or "
                       "the vector files: `facesearch index` their folders again")
        if self.missing_files:
            out.append(f"{len(self.missing_files)} photo(s) missing from disk, e.g. {self.missing_files[0]} "
                       "(`facesearch check --repair` or `facesearch index --prune` drops them; "
                       "`facesearch relocate OLD NEW` if their folder moved)")
        if self.missing_aliases:
            out.append(f"{len(self.missing_aliases)} other path(s) of photos missing from disk")
        out += [f"repaired: {line}" for line in self.repaired]
        return out


def check(folder: Path, store: Store, compression: str | None = None,
          ivf_threshold: int | None = None, repair: bool = False,
          specs: tuple[SpaceSpec, ...] = SPACES) -> CheckReport:
    """Check an index (the caller holds its lock when `repair`): SQLite integrity, every FAISS
    file against SQL (unreadable, vectors missing or extra), photo files on disk. With repair:
    vector files are rebuilt from SQL, rows from before 0005 filled in, and photos (and other
    paths) whose files are gone are dropped."""
    report = CheckReport(database=store.integrity_problems())
    report.photos, report.faces = store.counts()
    for spec in specs:
        space, problem = _open_file(folder, spec, compression, ivf_threshold)
        if space is not None:
            space.exact = exact_vectors_from(store, space)
            filled = backfill_vectors(store, space) if repair else 0
            if filled:
                report.repaired.append(f"{filled} vector(s) copied from {spec.filename} into the database")
        stored = np.asarray(store.all_vector_ids(spec.name), dtype=np.int64)
        sql_ids, _ = store.stored_vectors(spec.name, spec.dim)
        report.vectors_without_sql += int(len(stored) - len(sql_ids)) if space is None else int(
            np.count_nonzero(~np.isin(np.setdiff1d(stored, sql_ids), space.ids())))
        if space is None:
            state = f"unreadable ({problem})" if problem else ("missing" if len(stored) else "ok")
        else:
            held = space.ids()
            lacking = int(np.count_nonzero(~np.isin(stored, held)))
            extra = int(np.count_nonzero(~np.isin(held, stored)))
            state = "ok" if not (lacking or extra) else (
                f"{spec.filename} lacks {lacking} vector(s) and holds {extra} without a face")
        report.spaces[spec.name] = state
        if repair and state != "ok":
            rebuilt = rebuild_space(store, folder, spec, compression, ivf_threshold)
            rebuilt.save()
            report.repaired.append(f"{spec.filename} rebuilt from the database ({len(rebuilt)} vectors)")
            report.spaces[spec.name] = "ok"
    paths = [photo.path for photo in store.photos()]
    report.missing_files = [path for path in paths if not os.path.lexists(path)]
    report.missing_aliases = [path for path in store.aliases() if not os.path.lexists(path)]
    if repair and (report.missing_files or report.missing_aliases):
        spaces = Spaces.open(folder, compression, ivf_threshold, specs)
        with store.erasing() as session:
            spaces.remove(store.delete_photos(report.missing_files, session))
            spaces.save()
        store.delete_aliases(report.missing_aliases)
        report.repaired.append(f"dropped {len(report.missing_files)} photo(s) and "
                               f"{len(report.missing_aliases)} other path(s) missing from disk")
        report.photos, report.faces = store.counts()
        report.missing_files, report.missing_aliases = [], []
    return report


#: Tables copied by salvage_sqlite, parents first (alembic_version is made by the new file).
_SALVAGED_TABLES = ("index_meta", "photos", "persons", "faces", "face_classes", "face_vectors",
                    "photo_aliases")
_SALVAGE_CHUNK = 64
#: After the copy, in order: a photo that lost a face row, or a face that lost its classes,
#: goes whole (the next `index` describes it again, as a new photo); rows whose parent was lost
#: go; a face whose person was lost is in none (the next `index` groups it again); a face that
#: lost its vector row in a space gets one without bytes (the vector id of every space is the
#: face's vector_id), filled in from that space's FAISS file on the next open
#: (repair.backfill_vectors, told to look again); in a space other than master only when the
#: index holds vectors of that space at all (an index made before it gains them by `index`).
_SALVAGE_FIXES = (
    "DELETE FROM photos WHERE status = 'indexed' AND id NOT IN (SELECT photo_id FROM faces)",
    "DELETE FROM photos WHERE id IN (SELECT photo_id FROM faces WHERE id NOT IN "
    "(SELECT face_id FROM face_classes))",
    "DELETE FROM faces WHERE photo_id NOT IN (SELECT id FROM photos)",
    "DELETE FROM face_classes WHERE face_id NOT IN (SELECT id FROM faces)",
    "DELETE FROM face_vectors WHERE face_id NOT IN (SELECT id FROM faces)",
    "DELETE FROM photo_aliases WHERE photo_id NOT IN (SELECT id FROM photos)",
    "UPDATE faces SET person_id = NULL WHERE person_id NOT IN (SELECT id FROM persons)",
    *(f"INSERT INTO face_vectors (face_id, space, vector_id, vector) SELECT id, '{spec.name}', "
      f"vector_id, NULL FROM faces WHERE id NOT IN (SELECT face_id FROM face_vectors WHERE "
      f"space = '{spec.name}')" + ("" if spec is SPACES[0] else
                                   f" AND EXISTS (SELECT 1 FROM face_vectors WHERE space = '{spec.name}')")
      for spec in SPACES),
    f"DELETE FROM index_meta WHERE key LIKE '{BACKFILLED}:%'",
)


def salvage_sqlite(path: Path) -> tuple[Path, dict[str, int]]:
    """Copy every row that can still be read out of the damaged SQLite file `path` into a new
    database at `path` (schema at head); the damaged file is kept beside it as
    `<name>.damaged-<time>`. Rows are read by rowid ranges, so a bad page loses only the rows
    in it; then the rows are made consistent (_SALVAGE_FIXES: what lost part of itself goes,
    to be described again). Returns (the damaged copy, rows read by table, and under
    "photos_dropped" how many of the photos read were dropped by those fixes)."""
    path = Path(path)
    kept_aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, kept_aside)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{kept_aside}{suffix}"))
    Store(f"sqlite:///{path}").close()  # a new, empty database at head
    kept: dict[str, int] = {}
    source = sqlite3.connect(f"file:{kept_aside}?mode=ro", uri=True)
    target = sqlite3.connect(path)
    try:
        target.execute("PRAGMA foreign_keys=OFF")
        for table in _SALVAGED_TABLES:
            kept[table] = _copy_rows(source, target, table)
        for statement in _SALVAGE_FIXES:
            target.execute(statement)
        kept["photos_dropped"] = kept["photos"] - target.execute("SELECT count(*) FROM photos").fetchone()[0]
        target.commit()
    finally:
        source.close()
        target.close()
    return kept_aside, kept


def _copy_rows(source: sqlite3.Connection, target: sqlite3.Connection, table: str) -> int:
    """Copy the readable rows of `table` (its columns the new schema has); returns how many."""
    try:
        columns = [row[1] for row in source.execute(f"PRAGMA table_info({table})")]
        wanted = {row[1] for row in target.execute(f"PRAGMA table_info({table})")}
        columns = [c for c in columns if c in wanted]
        if not columns:
            return 0
        top = source.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
    except sqlite3.DatabaseError:
        return 0
    names = ", ".join(columns)
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
    copied = 0
    for low in range(0, top + 1, _SALVAGE_CHUNK):
        try:
            rows = source.execute(f"SELECT {names} FROM {table} WHERE rowid BETWEEN ? AND ?",
                                  (low, low + _SALVAGE_CHUNK - 1)).fetchall()
        except sqlite3.DatabaseError:
            rows = []
            for rowid in range(low, low + _SALVAGE_CHUNK):  # row by row around a bad page
                try:
                    rows += source.execute(f"SELECT {names} FROM {table} WHERE rowid = ?",
                                           (rowid,)).fetchall()
                except sqlite3.DatabaseError:
                    continue
        if rows:
            target.executemany(insert, rows)
            copied += len(rows)
    return copied


def require_sqlite_file(store_file: Path | None) -> Path:
    """The SQLite file to salvage; FaceSearchError for a server database (its own tools repair it)."""
    if store_file is None:
        raise FaceSearchError("only an SQLite index database can be salvaged here; repair a "
                              "PostgreSQL database with its own tools")
    return store_file
