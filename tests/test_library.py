"""A real photo library (issue 16), on copies of real photos: every format, moved, copied and
linked files, missing files, and an index whose files are damaged and repaired from SQL."""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from clitools import assert_one_line_error, run
from conftest import copy_photos
from PIL import Image

from facesearch import FaceSearch, FaceSearchError
from facesearch.index.indexer import IndexInterrupted
from facesearch.index.repair import BACKFILLED
from facesearch.index.spaces import FAISS_FILENAME, VectorSpace
from facesearch.index.store import DB_FILENAME, FaceVector, IndexMeta
from facesearch.settings import ENV, Settings

PHOTOS = ("000461.jpg", "000711.jpg", "000987.jpg")


def _notes() -> tuple[list[str], callable]:
    lines: list[str] = []
    return lines, lines.append


def _damage_first_leaf(db: Path, table: str) -> None:
    """Overwrite the first leaf page of `table` in the SQLite file `db` with 0xff bytes (after
    folding the WAL into the file), as a disk fault would."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = [row[0] for row in connection.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,))]
    assert pages, f"no leaf page of {table}"
    data = bytearray(db.read_bytes())
    start = (pages[0] - 1) * page_size
    data[start:start + page_size] = b"\xff" * page_size
    db.write_bytes(bytes(data))


def _index(index_dir: Path, *folders: Path, **kwargs):
    notes, note = _notes()
    with FaceSearch(index_dir, on_notice=note) as fs:
        report = fs.index(list(folders), **kwargs)
    return report, notes


def _top_paths(index_dir: Path, photo: Path, k: int = 5) -> list:
    with FaceSearch(index_dir, on_notice=lambda _: None) as fs:
        return fs.query(image=photo, k=k)


@pytest.fixture
def library(data_dir: Path, tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """Three photos in lib/, indexed into index/."""
    photos = copy_photos(data_dir, PHOTOS, tmp_path / "lib")
    report, _ = _index(tmp_path / "index", tmp_path / "lib")
    assert (report.indexed, report.faces) == (3, 3)
    return tmp_path / "index", tmp_path / "lib", photos


# --- formats ------------------------------------------------------------------------------------
def test_every_format_is_found_by_content(data_dir: Path, tmp_path: Path) -> None:
    """HEIC, AVIF, JFIF and a JPEG with no photo extension are indexed; a file that claims to
    be HEIC but is not is named with its reason; a JPEG missing its last 3% is read."""
    source = data_dir / "celeba" / "wild"
    lib = tmp_path / "phone"
    lib.mkdir()
    with Image.open(source / PHOTOS[0]) as image:
        image.save(lib / "IMG_0001.HEIC")
    with Image.open(source / "001367.jpg") as image:  # another photo: one photo twice is a copy
        image.save(lib / "IMG_0002.avif")
    shutil.copy(source / PHOTOS[1], lib / "scan.jfif")
    shutil.copy(source / PHOTOS[2], lib / "exported.dat")  # a JPEG by content
    whole = (source / "001004.jpg").read_bytes()
    (lib / "cut.jpg").write_bytes(whole[: int(len(whole) * 0.97)])
    # a phone's motion photo: a whole JPEG with a video appended: complete, not partial
    (lib / "motion.jpg").write_bytes(whole + (data_dir / "video" / "talking_d0.mp4").read_bytes()[:4096])
    (lib / "IMG_0003.heic").write_bytes(b"\x00\x00\x00\x1cftypheic" + b"\x00" * 200)
    (lib / "notes.txt").write_text("not a photo")
    report, _ = _index(tmp_path / "index", lib)
    assert report.photos == 7  # notes.txt is not media
    assert report.indexed == 6 and report.faces >= 6, report
    assert [path for path, _ in report.failed] == [str(lib / "IMG_0003.heic")]
    assert "HEIC" in report.failed[0][1]
    with FaceSearch(tmp_path / "index") as fs:
        stored = {Path(p.path).name: p for p in fs.store.photos()}
        assert {name for name, p in stored.items() if p.status == "indexed"} == {
            "IMG_0001.HEIC", "IMG_0002.avif", "scan.jfif", "exported.dat", "cut.jpg", "motion.jpg"}
        assert stored["cut.jpg"].partial is True and stored["scan.jfif"].partial is False
        assert stored["motion.jpg"].partial is False
        assert report.partial == [str(lib / "cut.jpg")] and fs.info()["partial"] == 1
        hits = fs.query(image=lib / "cut.jpg", k=1)
        assert Path(hits[0].path).name == "cut.jpg" and hits[0].score > 6.9


def test_a_folder_of_videos_is_indexed(data_dir: Path, tmp_path: Path, facesearch_command) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(data_dir / "video" / "talking_d0.mp4", videos / "clip.mp4")
    shutil.copy(data_dir / "video" / "talking_d0.mp4", videos / "copy.dat")  # by content: a copy
    done = run(facesearch_command, "index", videos, "--index", tmp_path / "index", "-q",
               "--video-fps", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 photos and 2 videos: 1 indexed (1 face," in done.stdout  # tests/test_video.py: more
    assert "1 copy of an indexed photo" in done.stdout


# --- SQL is the source of truth -----------------------------------------------------------------
def test_truncated_or_missing_vector_file_is_rebuilt_from_sql(library, facesearch_command) -> None:
    index_dir, lib, photos = library
    faiss_file = index_dir / FAISS_FILENAME
    data = faiss_file.read_bytes()
    faiss_file.write_bytes(data[: len(data) // 2])
    done = run(facesearch_command, "query", "--image", photos[1], "-k", "1", "--json",
               "--index", index_dir, cwd=lib)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "vectors.faiss could not be read" in done.stderr
    assert "rebuilt from the database (3 vectors)" in done.stderr
    assert len(VectorSpace.open(faiss_file)) == 3  # saved: the next command says nothing
    faiss_file.unlink()
    hits = _top_paths(index_dir, photos[2], k=3)
    assert hits[0].path == str(photos[2]) and hits[0].score == pytest.approx(7.0, abs=1e-2)
    assert len(VectorSpace.open(faiss_file)) == 3


def test_check_reports_and_repairs(library, facesearch_command) -> None:
    index_dir, lib, photos = library
    space = VectorSpace.open(index_dir / FAISS_FILENAME)
    space.remove(space.ids()[:1])
    space.add([10**6], np.ones((1, space.dim), np.float32))
    space.save()
    photos[0].unlink()
    done = run(facesearch_command, "check", "--index", index_dir, cwd=lib)
    assert done.returncode == 1
    assert "lacks 1 vector(s) and holds 1 without a face" in done.stdout
    assert "1 photo(s) missing from disk" in done.stdout
    done = run(facesearch_command, "check", "--repair", "--index", index_dir, cwd=lib)
    assert done.returncode == 0, done.stdout
    assert "repaired: vectors.faiss rebuilt from the database (3 vectors)" in done.stdout
    assert "repaired: dropped 1 photo(s)" in done.stdout
    done = run(facesearch_command, "check", "--index", index_dir, cwd=lib)
    assert done.returncode == 0 and "photos: 2, faces: 2" in done.stdout, done.stdout


def test_a_damaged_database_is_one_line_and_salvaged(library, facesearch_command) -> None:
    index_dir, lib, photos = library
    db = index_dir / DB_FILENAME
    with sqlite3.connect(db) as connection:  # fold the write-ahead log in, then damage a page
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(db.read_bytes())
    data[16:18] = b"\x00\x03"  # page size 3: not an SQLite file any more
    db.write_bytes(bytes(data))
    for command in (["info"], ["query", "--text", "smiling"], ["index", str(lib)]):
        line = assert_one_line_error(run(facesearch_command, *command, "--index", index_dir, cwd=lib))
        assert str(db) in line and "damaged" in line and "check --repair" in line
    done = run(facesearch_command, "check", "--repair", "--index", index_dir, cwd=lib)
    assert "database salvaged" in done.stdout and "Traceback" not in done.stderr, done
    assert list(index_dir.glob(f"{DB_FILENAME}.damaged-*")) and pages > 1 and page_size
    # nothing could be read from a file whose header is gone: indexing again restores it all
    report, _ = _index(index_dir, lib)
    assert report.indexed == 3 and _top_paths(index_dir, photos[1], 1)[0].path == str(photos[1])


def test_an_index_made_before_keeps_every_vector(library) -> None:
    """Rows from before vectors were kept in SQL (NULL) are filled in from the FAISS file on
    open; after that the FAISS file can go."""
    index_dir, _, photos = library
    with FaceSearch(index_dir) as fs, fs.store.session() as session:  # as migration 0005 finds it
        session.execute(sa.update(FaceVector).values(vector=None))
        session.execute(sa.delete(IndexMeta).where(IndexMeta.key.startswith(BACKFILLED)))
    notes, note = _notes()
    with FaceSearch(index_dir, on_notice=note) as fs:
        assert len(fs.vectors) == 3 and fs.store.vector_ids_without_vector("master") == []
    assert notes == []  # nothing was wrong: filled in silently
    (index_dir / FAISS_FILENAME).unlink()
    hits = _top_paths(index_dir, photos[0], 3)
    assert hits[0].path == str(photos[0]) and len(hits) == 3


# --- photos known by content --------------------------------------------------------------------
def test_a_moved_library_is_recognised(library, facesearch_command) -> None:
    index_dir, lib, _ = library
    moved = lib.parent / "disk2" / "photos"
    moved.parent.mkdir()
    shutil.move(lib, moved)
    line = assert_one_line_error(run(facesearch_command, "index", lib, "--index", index_dir, cwd=moved))
    assert "3 indexed photo(s) were there" in line and "relocate" in line
    report, _ = _index(index_dir, moved)
    assert (report.indexed, report.moved, report.faces) == (0, 3, 0)
    hits = _top_paths(index_dir, moved / PHOTOS[1], 5)
    assert [h.path for h in hits].count(str(moved / PHOTOS[1])) == 1
    assert all(h.path.startswith(str(moved)) and not h.missing for h in hits)


def test_relocate_rewrites_paths(library, facesearch_command) -> None:
    index_dir, lib, _ = library
    moved = lib.parent / "elsewhere"
    shutil.move(lib, moved)
    done = run(facesearch_command, "relocate", lib, moved, "--index", index_dir, cwd=moved)
    assert done.returncode == 0 and "relocated 3 path(s)" in done.stdout, done.stderr
    report, _ = _index(index_dir, moved)
    assert (report.unchanged, report.indexed, report.removed) == (3, 0, 0)
    assert run(facesearch_command, "remove", moved, "--index", index_dir, cwd=moved).stdout.startswith("removed 3")


def test_relocate_refuses_a_folder_that_holds_none_of_the_photos(library) -> None:
    index_dir, lib, _ = library
    empty = lib.parent / "empty"
    empty.mkdir()
    with FaceSearch(index_dir, on_notice=lambda _: None) as fs:
        with pytest.raises(FaceSearchError, match="none of the 3 indexed photo"):
            fs.relocate(lib, empty)
        with pytest.raises(FaceSearchError, match="the same folder"):
            fs.relocate(lib, lib)
        assert len(fs.query(text="a person", k=5)) == 3 and not any(
            hit.missing for hit in fs.query(text="a person", k=5))


def test_copies_and_hard_links_are_one_photo(library) -> None:
    index_dir, lib, photos = library
    shutil.copy2(photos[1], lib / "copy of 000711.jpg")
    os.link(photos[2], lib / "hardlink.jpg")
    report, _ = _index(index_dir, lib)
    assert (report.indexed, report.duplicates, report.unchanged) == (0, 2, 3)
    hits = _top_paths(index_dir, photos[1], 3)
    assert [h.path for h in hits].count(str(photos[1])) == 1 and len({h.path for h in hits}) == 3
    assert hits[0].other_paths == [str(lib / "copy of 000711.jpg")]
    # the original goes: the photo lives on at its copy
    photos[1].unlink()
    report, _ = _index(index_dir, lib)
    assert report.removed == 0
    assert _top_paths(index_dir, lib / "copy of 000711.jpg", 1)[0].path == str(lib / "copy of 000711.jpg")


def test_path_filters_see_a_photos_other_paths(library) -> None:
    """`path ~` and `path =` match a photo by any of its paths; `!~` only when none matches."""
    index_dir, lib, photos = library
    (lib / "album").mkdir()
    shutil.copy2(photos[1], lib / "album" / "kept.jpg")
    _index(index_dir, lib)
    with FaceSearch(index_dir, on_notice=lambda _: None) as fs:
        found = fs.query(where="path ~ '*/album/*'", k=5)
        assert [hit.path for hit in found] == [str(photos[1])]  # shown under its first path
        assert [h.path for h in fs.query(where=f"path = '{lib / 'album' / 'kept.jpg'}'", k=5)] \
            == [str(photos[1])]
        others = {hit.path for hit in fs.query(where="path !~ '*/album/*'", k=5)}
        assert others == {str(photos[0]), str(photos[2])}


def test_a_re_encoded_copy_is_the_same_photo(library, data_dir: Path) -> None:
    """A copy saved again (other bytes: recompressed, resized, another format) is recognised
    by its faces and recorded as another path of the photo, not a second photo."""
    index_dir, lib, photos = library
    with Image.open(photos[0]) as image:
        image.save(lib / "resaved.jpg", quality=60)
        image.resize((image.width * 3 // 4, image.height * 3 // 4)).save(lib / "smaller.png")
    copy_photos(data_dir, ("001004.jpg",), lib)  # a photo of its own
    report, _ = _index(index_dir, lib)
    assert (report.indexed, report.duplicates, report.unchanged) == (1, 2, 3), report
    hits = _top_paths(index_dir, photos[0], 4)
    assert len({h.path for h in hits}) == 4 and hits[0].path == str(photos[0])
    assert hits[0].other_paths == [str(lib / "resaved.jpg"), str(lib / "smaller.png")]
    with FaceSearch(index_dir) as fs:
        assert fs.info()["other_paths"] == 2


def test_links_are_recorded_under_the_users_path(data_dir: Path, tmp_path: Path) -> None:
    originals = copy_photos(data_dir, PHOTOS, tmp_path / "originals")
    album = tmp_path / "album"
    album.mkdir()
    for photo in originals:
        (album / photo.name).symlink_to(photo)
    report, _ = _index(tmp_path / "index", album)
    assert report.indexed == 3
    with FaceSearch(tmp_path / "index") as fs:
        hit = fs.query(image=originals[0], k=1, where="path ~ '*/album/*'")[0]
        assert hit.path == str(album / PHOTOS[0])
    (album / PHOTOS[2]).unlink()
    report, _ = _index(tmp_path / "index", album)
    assert report.removed == 1
    with FaceSearch(tmp_path / "index") as fs:
        assert fs.remove([album / PHOTOS[1]]) == 1
        assert [p.path for p in fs.store.photos()] == [str(album / PHOTOS[0])]


# --- missing files ------------------------------------------------------------------------------
def test_missing_files_are_marked_and_pruned(library, data_dir: Path) -> None:
    index_dir, lib, photos = library
    other = copy_photos(data_dir, ("001004.jpg",), lib.parent / "other")
    _index(index_dir, lib.parent / "other")
    photos[1].unlink()
    hits = _top_paths(index_dir, data_dir / "celeba" / "wild" / PHOTOS[1], 4)
    assert hits[0].path == str(photos[1]) and hits[0].missing
    assert not any(h.missing for h in hits[1:])
    report, _ = _index(index_dir, lib.parent / "other")
    assert report.missing == [str(photos[1])] and "missing from disk" in report.summary()
    report, _ = _index(index_dir, lib.parent / "other", prune=True)
    assert report.removed == 1 and report.missing == []
    assert str(photos[1]) not in {h.path for h in _top_paths(index_dir, other[0], 4)}


# --- settings that cannot apply yet, Ctrl-C ---------------------------------------------------
def test_pq_on_a_small_collection_falls_back(data_dir: Path, tmp_path: Path, facesearch_command) -> None:
    copy_photos(data_dir, PHOTOS + ("001004.jpg",), tmp_path / "lib")
    env = {ENV["compression"]: "pq", ENV["ivf_threshold"]: "2"}
    done = run(facesearch_command, "index", tmp_path / "lib", "--index", tmp_path / "index", "-q",
               cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "pq compression needs at least 1024 vectors" in done.stderr
    assert "WARNING" not in done.stderr and "clustering" not in done.stderr, done.stderr
    with FaceSearch(tmp_path / "index") as fs:
        assert fs.vectors.compression == "sq8"


def test_ctrl_c_says_what_was_saved(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    copy_photos(data_dir, PHOTOS, tmp_path / "lib")
    fs = FaceSearch(tmp_path / "index", settings=Settings().replace(commit_every=1))
    real = fs.describer.stream
    described = []

    def interrupted(paths):
        for result in real(paths):
            if described:
                raise KeyboardInterrupt
            described.append(result)
            yield result

    monkeypatch.setattr(fs.describer, "stream", interrupted)
    with pytest.raises(IndexInterrupted, match=r"interrupted: 1 photo\(s\) .* saved .* again to do the rest"):
        fs.index([tmp_path / "lib"])
    fs.close()
    report, _ = _index(tmp_path / "index", tmp_path / "lib")
    assert (report.unchanged, report.indexed) == (1, 2)


def test_remove_takes_out_a_folder_that_is_gone(library) -> None:
    index_dir, lib, _ = library
    shutil.rmtree(lib)
    with FaceSearch(index_dir) as fs:
        assert fs.remove([lib]) == 3
        assert fs.store.counts() == (0, 0) and len(fs.vectors) == 0


def test_ctrl_c_on_the_command_line_says_how_to_resume(data_dir: Path, tmp_path: Path,
                                                        facesearch_command) -> None:
    import signal
    import subprocess
    import time

    # 40 photos: with fewer, a loaded machine could finish them all between the first
    # checkpoint and the Ctrl-C (a run that ends normally exits 0)
    names = sorted(path.name for path in (data_dir / "celeba" / "wild").glob("*.jpg"))[:40]
    copy_photos(data_dir, names, tmp_path / "lib")
    environment = {k: v for k, v in os.environ.items() if k != "FACESEARCH_DEBUG"}
    environment |= {ENV["commit_every"]: "1", ENV["checkpoint_seconds"]: "0"}
    run_ = subprocess.Popen([*facesearch_command, "index", "lib", "--index", "idx", "-q"],
                            cwd=tmp_path, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while True:  # wait for the first checkpoint, then press Ctrl-C
            try:
                with sqlite3.connect(f"file:{tmp_path / 'idx' / DB_FILENAME}?mode=ro", uri=True) as db:
                    if db.execute("SELECT count(*) FROM photos").fetchone()[0] >= 1:
                        break
            except sqlite3.Error:
                pass
            assert run_.poll() is None and time.time() < deadline, run_.communicate()
            time.sleep(0.05)
        run_.send_signal(signal.SIGINT)
        _, err = run_.communicate(timeout=120)
    finally:
        if run_.poll() is None:
            run_.kill()
    assert run_.returncode == 130 and "Traceback" not in err, err
    assert "photo(s) described in this run are saved in the index; run the same `facesearch index` " \
           "again to do the rest" in err.splitlines()[-1]
    report, _ = _index(tmp_path / "idx", tmp_path / "lib")
    assert report.unchanged >= 1 and report.unchanged + report.indexed == len(names)


def test_a_damaged_page_loses_only_its_rows(library, data_dir: Path) -> None:
    """One damaged page of face_vectors: `check --repair` salvages the rest, the lost vectors
    come back from the FAISS file, and every photo is found again without describing it."""
    index_dir, lib, photos = library
    copy_photos(data_dir, ("001004.jpg", "001367.jpg", "001414.jpg"), lib)
    _index(index_dir, lib)
    _damage_first_leaf(index_dir / DB_FILENAME, "face_vectors")
    with FaceSearch(index_dir) as fs:
        assert not fs.check().ok
        report = fs.check(repair=True)
        assert any("database salvaged" in line for line in report.repaired), report
    notes, note = _notes()
    with FaceSearch(index_dir, on_notice=note) as fs:
        assert fs.store.integrity_problems() == [] and fs.store.counts() == (6, 6)
        assert fs.query(image=photos[1], k=1)[0].path == str(photos[1])
    report, _ = _index(index_dir, lib)
    assert (report.indexed, report.unchanged) == (0, 6)


def test_salvage_says_how_many_photos_it_dropped(library, data_dir: Path) -> None:
    """A damaged page of `faces`: the photos that lost a face row go whole (to be described
    again by the next index run) and `check --repair` says how many."""
    index_dir, lib, _ = library
    _index(index_dir, lib)
    db = index_dir / DB_FILENAME
    with sqlite3.connect(db) as connection:
        photos_before = connection.execute("SELECT count(*) FROM photos").fetchone()[0]
    _damage_first_leaf(db, "faces")
    with FaceSearch(index_dir) as fs:
        report = fs.check(repair=True)
        photos_after = fs.store.counts()[0]
    dropped = [line for line in report.repaired if "lost part of their rows" in line]
    assert photos_after < photos_before
    expected = (f"dropped {photos_before - photos_after} photo(s) that lost part of their rows "
                "(`facesearch index` describes them again)")
    assert dropped == [expected], report.repaired
