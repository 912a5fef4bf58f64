"""Reliability: hostile files, kill -9 in the middle of a run, two processes at once, bad queries,
and privacy (nothing leaves the machine; `remove` really deletes).

Every hostile file is made here, in pytest's temporary folders, from the real photos in
../shared/data; nothing is committed. Photos are few and small, so the file runs in about a
minute on a busy 2-core machine: the expensive parts (a fresh process loading the models) are
shared between checks where that keeps each test readable.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clitools import assert_one_line_error, run
from conftest import INDEX_PHOTOS, copy_photos
from facesearch import FaceSearch, FaceSearchError, Settings
from facesearch.index.store import DB_FILENAME
from facesearch.index.spaces import FAISS_FILENAME
from facesearch.index.lock import IndexBusyError, IndexLock
from facesearch.index.spaces import VectorSpace
from facesearch.index import indexer as indexing
from facesearch.index.indexer import Indexer, reconcile
from facesearch.index.spaces import MASTER, Spaces
from facesearch.index.store import Store
from facesearch.pipeline.faces import Face
from facesearch.spec import IDENTITY, IDENTITY_DIM, VECTOR_DIM

WILD = "celeba/wild"

#: Runs a facesearch command in a fresh interpreter whose IPv4/IPv6 connections all fail (DNS
#: too), so whatever the command loads or does, nothing can leave the machine.
OFFLINE_CLI = """
import socket, sys
def refuse(*args, **kwargs):
    raise OSError("test: network access attempted")
_connect = socket.socket.connect
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        refuse()
    return _connect(self, address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: refuse()
socket.create_connection = refuse
socket.getaddrinfo = refuse
from facesearch.cli import main
sys.argv = ["facesearch", *sys.argv[1:]]
main()
"""


def cli(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, offline: bool = False,
        ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", OFFLINE_CLI] if offline else [sys.executable, "-m", "facesearch"]
    return run(command, *args, cwd=cwd, env=env)


def consistent(fs: FaceSearch) -> tuple[int, int]:
    """(photos, faces) after checking that SQL's vector ids are exactly FAISS's."""
    photos, faces = fs.store.counts()
    assert sorted(fs.store.all_vector_ids()) == sorted(fs.vectors.ids().tolist())
    return photos, faces


def wild(data_dir: Path, name: str) -> Path:
    return data_dir / WILD / name


def paste_on_canvas(photo: Path, size: tuple[int, int]) -> tuple[Image.Image, float, tuple[int, int]]:
    """`photo` blown up (nearest neighbour) to the canvas height, centred on a grey canvas of
    `size`; returns the canvas, the blow-up factor and where the photo's corner landed."""
    with Image.open(photo) as image:
        image = image.convert("RGB")
        factor = size[1] / image.height
        big = image.resize((round(image.width * factor), size[1]), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", size, (128, 128, 128))
    corner = ((size[0] - big.width) // 2, 0)
    canvas.paste(big, corner)
    return canvas, factor, corner


def png_bomb(path: Path, width: int, height: int) -> None:
    """A valid 1x1 PNG whose header claims `width` x `height` pixels (a decompression bomb)."""
    raw = zlib.compress(b"\x00\x80\x80\x80")

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


HUGE_SIZE = (12000, 9000)


@pytest.fixture(scope="module")
def huge_jpeg(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, tuple[int, int]]:
    """A 12000 x 9000 JPEG showing 002767.jpg's face, blown up; (path, factor, corner)."""
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    canvas, factor, corner = paste_on_canvas(wild(data_dir, "002767.jpg"), HUGE_SIZE)
    canvas.save(path, quality=85)
    return path, factor, corner


# --- hostile files -----------------------------------------------------------------------------
GOOD = {  # file made -> the photo it shows (one clear face each)
    "with space.jpg": "000461.jpg", "naïve 写真.jpg": "000711.jpg",
    "sub dir/deeper/gray.jpg": "000987.jpg", "cmyk.jpg": "001004.jpg", "alpha.png": "001367.jpg",
    "rotated.jpg": "001414.jpg", "animated.gif": "002173.jpg", "animated.webp": "002184.jpg",
}
#: Bad files -> a word of the reason they must be skipped with.
BAD = {
    "empty.jpg": "not an image", "notes.jpg": "not an image", "truncated.jpg": "truncated",
    "dangling.jpg": "broken symbolic link", "loop_a.jpg": "symbolic link loop",
    "loop_b.jpg": "symbolic link loop", "fifo.jpg": "not a regular file",
    "bomb.png": "too large", "caf\\xe9.jpg": "not valid UTF-8",
}
NOT_RECORDED = {"loop_a.jpg", "loop_b.jpg"}  # no row can name a link loop (Path.resolve raises)


def make_hostile_folder(data_dir: Path, db: Path, huge: Path) -> None:
    for name, source in GOOD.items():
        (db / name).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(wild(data_dir, source)) as image:
            rgb = image.convert("RGB")
        if name.endswith("gray.jpg"):
            rgb.convert("L").save(db / name)
        elif name == "cmyk.jpg":
            rgb.convert("CMYK").save(db / name)
        elif name == "alpha.png":
            rgba = rgb.convert("RGBA")
            rgba.putalpha(230)
            rgba.save(db / name)
        elif name == "rotated.jpg":  # stored on its side; EXIF orientation 6 turns it upright
            exif = Image.Exif()
            exif[0x0112] = 6
            rgb.transpose(Image.Transpose.ROTATE_90).save(db / name, exif=exif)
        elif name.startswith("animated"):  # the face first, then a black frame
            rgb.save(db / name, save_all=True, append_images=[Image.new("RGB", rgb.size)],
                     duration=100, loop=0)
        else:
            shutil.copy(wild(data_dir, source), db / name)
    os.symlink(huge, db / "huge.jpg")  # a link to a photo elsewhere: followed
    Image.new("RGB", (3, 3), (200, 150, 120)).save(db / "tiny.png")  # a photo, but no face
    (db / "empty.jpg").write_bytes(b"")
    (db / "notes.jpg").write_text("shopping list: milk, eggs\n")
    data = wild(data_dir, "003049.jpg").read_bytes()
    (db / "truncated.jpg").write_bytes(data[: len(data) * 2 // 5])
    os.symlink(db / "gone.jpg", db / "dangling.jpg")
    os.symlink("loop_b.jpg", db / "loop_a.jpg")
    os.symlink("loop_a.jpg", db / "loop_b.jpg")
    os.mkfifo(db / "fifo.jpg")  # reading it would block for ever
    png_bomb(db / "bomb.png", 60000, 60000)
    shutil.copy(wild(data_dir, "003628.jpg"), os.fsencode(db) + b"/caf\xe9.jpg")  # not UTF-8
    # Ignored or indexed once: a text file, a link to a photo, a link back up (a folder loop).
    (db / "readme.txt").write_text("not a photo\n")
    os.symlink("with space.jpg", db / "alias.jpg")
    os.symlink("../..", db / "sub dir" / "deeper" / "up")


def test_hostile_files_are_skipped_and_every_good_photo_indexed(
        data_dir: Path, tmp_path: Path, huge_jpeg, describer: FaceSearch) -> None:
    db = tmp_path / "db"
    make_hostile_folder(data_dir, db, huge_jpeg[0])
    # Run with every network connection refused: indexing needs nothing from outside.
    done = cli("index", db, "--index", tmp_path / "idx", "-q", cwd=tmp_path, offline=True)
    assert done.returncode == 1, "a run with failed files must say so in its exit status"
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stderr.splitlines()
    for name, reason in BAD.items():
        about = [line for line in lines if f"/{name}" in line]
        assert len(about) == 1, (name, done.stderr)
        assert about[0].startswith("warning: skipped ") and reason in about[0], about[0]
    good = len(GOOD) + 1  # and huge.jpg
    # tiny.png has no face; alias.jpg (a link to with space.jpg) is found under its own path and
    # recorded as that photo's other path, not described again
    photos = good + 1 + len(BAD) + 1
    assert done.stdout.strip().startswith(f"{photos} photos: {good} indexed ({good} faces"), done.stdout
    assert "1 without a face" in done.stdout  # tiny.png: described, counted apart from "indexed"
    assert f"{len(BAD)} failed" in done.stdout and "1 copy of an indexed photo" in done.stdout

    fs = FaceSearch(tmp_path / "idx")
    try:
        info = fs.info()
        assert (info["photos"], info["faces"], info["vectors"]) == (photos - len(NOT_RECORDED) - 1, good, good)
        assert fs.store.aliases_of([fs.store.photo_by_path(db / "with space.jpg").id]) == {
            fs.store.photo_by_path(db / "with space.jpg").id: [str(db / "alias.jpg")]}
        errors = [error for _, error in info["failed"]]
        assert len(errors) == len(BAD) - len(NOT_RECORDED)
        for name in set(BAD) - NOT_RECORDED:
            assert [error for error in errors if f"/{name}: " in error and BAD[name] in error], name
        for name in [*GOOD, "huge.jpg"]:
            photo = fs.store.photo_by_path(db / name)
            assert photo is not None and photo.status == "indexed" and len(photo.faces) == 1, name
        assert fs.store.photo_by_path(db / "tiny.png").status == "no_face"

        # Rotated by EXIF: the box is in the coordinates of the photo as displayed (upright).
        upright = describer.describe(wild(data_dir, GOOD["rotated.jpg"]))[0].bbox
        stored = fs.store.photo_by_path(db / "rotated.jpg")
        face = stored.faces[0]
        assert (stored.width, stored.height) == Image.open(wild(data_dir, GOOD["rotated.jpg"])).size
        np.testing.assert_allclose([face.x0, face.y0, face.x1, face.y1], upright, atol=4)
        # 12000 x 9000, decoded at reduced size: the box is in the original pixels all the same.
        _, factor, (left, top) = huge_jpeg
        original = describer.describe(wild(data_dir, "002767.jpg"))[0].bbox
        face = fs.store.photo_by_path(db / "huge.jpg").faces[0]
        box = (np.array([face.x0, face.y0, face.x1, face.y1]) - [left, top, left, top]) / factor
        # (the detector sees the face at another size, hence a tolerance of 10% of the face;
        #  a box left in decoded pixels would be 5.9 times too small)
        np.testing.assert_allclose(box, original, atol=0.1 * (original[2] - original[0]))
    finally:
        fs.close()



def test_unreadable_file_is_skipped(data_dir: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading a file "
                    "(test_permission_denied_is_reported simulates it instead)")
    copy_photos(data_dir, ["000461.jpg", "000711.jpg"], tmp_path / "db")
    (tmp_path / "db" / "000711.jpg").chmod(0)
    fs = FaceSearch(tmp_path / "idx")
    try:
        report = fs.index([tmp_path / "db"])
        assert report.faces == 1 and [Path(p).name for p, _ in report.failed] == ["000711.jpg"]
        assert "ermission denied" in report.failed[0][1]
    finally:
        fs.close()


def test_permission_denied_is_reported(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """What an unreadable file does (simulated: root reads everything), then fixed and retried:
    a failed file is tried again although its size and mtime did not change (chmod doesn't)."""
    photos = copy_photos(data_dir, ["000461.jpg", "000711.jpg"], tmp_path / "db")
    real_hash = indexing.content_hash

    def no_access(path):
        if Path(path).name == "000711.jpg":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    monkeypatch.setattr(indexing, "content_hash", no_access)
    fs = FaceSearch(tmp_path / "idx")
    try:
        report = fs.index([tmp_path / "db"])
        assert report.faces == 1 and len(report.failed) == 1
        assert report.failed[0] == (str(photos[1]), f"{photos[1]}: Permission denied")
        assert [error for _, error in fs.info()["failed"]] == [f"{photos[1]}: Permission denied"]
        monkeypatch.setattr(indexing, "content_hash", real_hash)  # access granted
        report = fs.index([tmp_path / "db"])
        assert (report.indexed, report.unchanged, report.faces, report.failed) == (1, 1, 1, [])
        assert consistent(fs) == (2, 2) and fs.info()["failed"] == []
    finally:
        fs.close()


def test_huge_photos_are_decoded_in_bounded_memory(huge_jpeg, data_dir: Path, tmp_path: Path) -> None:
    """Peak memory while decoding a 12000 x 9000 photo, measured in a fresh process. A JPEG is
    decoded at 1/4 size; a PNG can only be decoded whole (432 MB in Pillow's layout), but no
    second full-size copy is made. Before: 976 MB for the PNG."""
    canvas, _, _ = paste_on_canvas(wild(data_dir, "002767.jpg"), HUGE_SIZE)
    png = tmp_path / "huge.png"
    canvas.save(png, compress_level=1)
    del canvas
    script = ("import json, resource, sys\n"
              "from facesearch.pipeline.images import load_image\n"
              "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
              "out = []\n"
              "for path in sys.argv[1:]:\n"
              "    before = peak(); photo = load_image(path)\n"
              "    out.append([peak() - before, list(photo.pixels.shape), photo.original_size])\n"
              "print(json.dumps(out))\n")
    done = subprocess.run([sys.executable, "-c", script, str(huge_jpeg[0]), str(png)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (jpeg_mb, jpeg_shape, jpeg_size), (png_mb, png_shape, png_size) = json.loads(done.stdout)
    assert jpeg_shape == png_shape == [1536, 2048, 3]
    assert jpeg_size == png_size == list(HUGE_SIZE)
    assert jpeg_mb < 150, f"decoding a 12000 x 9000 JPEG grew the peak memory by {jpeg_mb:.0f} MB"
    assert png_mb < 500, f"decoding a 12000 x 9000 PNG grew the peak memory by {png_mb:.0f} MB"


def test_a_file_that_breaks_the_describer_does_not_stop_the_run(data_dir: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    copy_photos(data_dir, ["000461.jpg", "000711.jpg"], tmp_path / "db")
    fs = FaceSearch(tmp_path / "idx")
    real = fs.describer.prepare_one
    calls = []

    def flaky(image):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("mediapipe exploded\nsecond line")
        return real(image)

    monkeypatch.setattr(fs.describer, "prepare_one", flaky)
    try:
        report = fs.index([tmp_path / "db"])
        assert report.faces == 1 and len(report.failed) == 1
        assert report.failed[0][1].endswith("could not be described (RuntimeError: mediapipe exploded)")
        assert consistent(fs) == (2, 1)
    finally:
        fs.close()


def test_ctrl_c_keeps_what_was_described(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    copy_photos(data_dir, ["000461.jpg", "000711.jpg", "000987.jpg"], tmp_path / "db")
    fs = FaceSearch(tmp_path / "idx", settings=Settings(describe_batch=1))  # one photo at a time
    real = fs.describer.describe_prepared
    calls = []

    def interrupted_at_the_third(photos):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(photos)

    monkeypatch.setattr(fs.describer, "describe_prepared", interrupted_at_the_third)
    try:
        with pytest.raises(KeyboardInterrupt):
            fs.index([tmp_path / "db"])
        assert consistent(fs) == (2, 2)  # the batch was not full, and is kept all the same
        IndexLock(tmp_path / "idx").acquire().release()  # and the lock was let go
    finally:
        fs.close()


# --- checkpoints (no model: a fake describer gives each photo one face) ------------------------------
#: Seconds a fake photo takes to describe, on the fake clock of checkpoint tests.
FAKE_DESCRIBE_SECONDS = 10.0


def fake_vector(path: Path, dim: int = VECTOR_DIM) -> np.ndarray:
    """A unit vector (dim,: the master one's by default) that only the file's bytes decide."""
    vector = np.random.default_rng(zlib.crc32(Path(path).read_bytes())).standard_normal(dim)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class FakeRun:
    """Indexer runs over `folder` into `index_dir` with a fake describer (one face a photo, its
    vector `fake_vector`) and a fake clock that describing advances by FAKE_DESCRIBE_SECONDS."""

    def __init__(self, index_dir: Path, folder: Path, monkeypatch) -> None:
        self.index_dir, self.folder, self.now = index_dir, folder, 0.0
        monkeypatch.setattr(indexing, "_clock", lambda: self.now)

    def describe(self, paths: list[Path]):
        for path in paths:
            self.now += FAKE_DESCRIBE_SECONDS
            face = Face(vector=fake_vector(path), bbox=[0.0, 0.0, 10.0, 10.0],
                        landmarks=[[1.0, 1.0]] * 5, attributes={"Smiling": 0.5}, score=0.9,
                        crop=np.zeros((1, 1, 3), np.uint8), masks=np.zeros((7, 1, 1), np.float32),
                        identity=fake_vector(path, IDENTITY_DIM))
            yield (10, 10), [face]

    def __call__(self, checkpoint_seconds: float, commit_every: int = 2):
        """Reconcile, then run; returns (report, {vector id: photo path} in SQL)."""
        with Store.for_index_dir(self.index_dir) as store:
            spaces = Spaces.open(self.index_dir)
            reconcile(store, spaces)
            indexer = Indexer(store, spaces, self.describe, "fake-model", commit_every=commit_every,
                              checkpoint_seconds=checkpoint_seconds)
            report = indexer.run([self.folder], sorted(self.folder.iterdir()), progress=False)
            rows = {i: photo.path for i, (_, photo) in store.faces_by_vector_ids(store.all_vector_ids()).items()}
        return report, rows


def fake_photos(folder: Path, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (folder / f"{i:02d}.jpg").write_bytes(f"photo {i}".encode())
    return sorted(folder.iterdir())


def count_saves(monkeypatch, write: bool = True) -> list[str]:
    """Record the name of each VectorSpace.save call (writing the file only if `write`)."""
    saved: list[str] = []
    real = VectorSpace.save

    def save(self: VectorSpace) -> None:
        saved.append(self.name)
        if write:
            real(self)
        else:
            self.unsaved = False  # as if written: what a crash before the write looks like

    monkeypatch.setattr(VectorSpace, "save", save)
    return saved


@pytest.mark.parametrize(("checkpoint_seconds", "saves"), [(3600.0, 1), (45.0, 2), (0.0, 5)])
def test_a_long_run_writes_the_vector_file_once_plus_checkpoints(
        checkpoint_seconds: float, saves: int, tmp_path: Path, monkeypatch) -> None:
    """10 photos described 2 at a time, 10 s a photo: one file write at the end, plus one a
    checkpoint_seconds (45 s: after the 3rd batch, at 60 s); 0 s writes after every batch."""
    fake_photos(tmp_path / "db", 10)
    run_ = FakeRun(tmp_path / "idx", tmp_path / "db", monkeypatch)
    saved = count_saves(monkeypatch)
    report, rows = run_(checkpoint_seconds)
    assert saved == [name for _ in range(saves) for name in (MASTER, IDENTITY)]  # each space, once a checkpoint
    assert (report.indexed, report.faces) == (10, 10)
    master = Spaces.open(tmp_path / "idx").master
    assert sorted(rows) == sorted(master.ids().tolist()) and master.model_version == "fake-model"


def test_rows_whose_vectors_never_reached_disk_are_put_back_from_sql(tmp_path: Path, monkeypatch) -> None:
    """A vector file that lost the last vectors (written by nobody, or restored from an older
    copy): no query pairs a stored vector with another photo, and the next run puts the
    missing vectors back from SQL (the source of truth) without describing anything again."""
    fake_photos(tmp_path / "db", 4)
    run_ = FakeRun(tmp_path / "idx", tmp_path / "db", monkeypatch)
    run_(checkpoint_seconds=0)
    photos = fake_photos(tmp_path / "db", 4, start=4)
    with monkeypatch.context() as patched:
        count_saves(patched, write=False)  # the rows are committed, the vectors never written
        _, rows = run_(checkpoint_seconds=0)
    lost = {i for i, path in rows.items() if Path(path) in photos[4:]}
    on_disk = Spaces.open(tmp_path / "idx").master
    assert len(rows) == 8 and len(lost) == 4 and not lost & set(on_disk.ids().tolist())
    for vector_id in on_disk.ids().tolist():  # every vector on disk is its row's photo's
        np.testing.assert_allclose(on_disk.reconstruct([vector_id])[0], fake_vector(rows[vector_id]))

    report, rows = run_(checkpoint_seconds=0)
    assert (report.indexed, report.unchanged, report.faces) == (0, 8, 0)
    on_disk = Spaces.open(tmp_path / "idx").master
    assert sorted(rows) == sorted(on_disk.ids().tolist()) and len(rows) == 8
    assert lost <= set(rows)
    for vector_id, path in rows.items():  # float16 in SQL: close to, not exactly, the original
        np.testing.assert_allclose(on_disk.reconstruct([vector_id])[0], fake_vector(path), atol=2e-3)


# --- crash safety and concurrency ---------------------------------------------------------------
def faces_committed(db: Path) -> int:
    """Face rows committed so far, read straight from SQLite (0 while there is no table yet)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT count(*) FROM faces").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_mid_run_loses_nothing_and_other_processes_keep_working(
        data_dir: Path, tmp_path: Path, describer: FaceSearch) -> None:
    names = INDEX_PHOTOS[:8]  # one face each
    photos = copy_photos(data_dir, names, tmp_path / "db")
    index = tmp_path / "idx"
    describer.describe(photos[0])  # the model is loaded here before the clock starts
    environment = {k: v for k, v in os.environ.items() if k != "FACESEARCH_DEBUG"}
    environment["FACESEARCH_COMMIT_EVERY"] = "2"
    environment["FACESEARCH_CHECKPOINT_SECONDS"] = "0"  # a checkpoint (FAISS, then SQL) per batch
    run = subprocess.Popen([sys.executable, "-m", "facesearch", "index", "db", "--index", "idx", "-q"],
                           cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while faces_committed(index / DB_FILENAME) < 2:  # the first batch is committed
            assert run.poll() is None, run.communicate()
            assert time.time() < deadline, "the index run committed nothing in time"
            time.sleep(0.05)
        run.send_signal(signal.SIGSTOP)  # frozen mid-run, lock held: what follows cannot race its end

        # While it runs: a query sees what is committed; a second writer is refused at once.
        reader = FaceSearch(index)
        try:
            committed = {photo.path for photo in reader.store.photos()}
            assert len(committed) >= 2
            first = next(photo for photo in photos if str(photo.resolve()) in committed)
            hits = reader.query(image=first, k=3)
            assert hits[0].path == str(first.resolve()) and hits[0].score == pytest.approx(7.0, abs=1e-3)
            for change in (lambda: reader.index([tmp_path / "db"]), lambda: reader.remove([first])):
                with pytest.raises(IndexBusyError, match=rf"another facesearch index run \(pid {run.pid}\)"):
                    change()
        finally:
            reader.close()
        assert run.poll() is None, "the index run ended before it could be killed: use more photos"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
        assert run.returncode == -signal.SIGKILL
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()

    # After the kill: the index opens, has no row without its vector, answers for what was
    # committed, and queries leave it as it is (they never write: the next index run repairs).
    faiss_bytes = (index / FAISS_FILENAME).read_bytes()
    fs = FaceSearch(index)
    try:
        stored = set(fs.store.all_vector_ids())
        assert stored <= set(fs.vectors.ids().tolist())  # at worst vectors without rows
        committed = [photo.path for photo in fs.store.photos()]
        assert 2 <= len(committed) < len(names)
        for path in committed[:2]:
            assert fs.query(image=path, k=1)[0].path == path
    finally:
        fs.close()
    assert (index / FAISS_FILENAME).read_bytes() == faiss_bytes

    # The re-run does the rest; SQL and FAISS agree; everything is found.
    fs = FaceSearch(index)
    try:
        report = fs.index([tmp_path / "db"])
        assert (report.unchanged, report.indexed, report.failed) == (len(committed), len(names) - len(committed), [])
        assert consistent(fs) == (len(names), len(names))
        assert len(VectorSpace.open(index / FAISS_FILENAME)) == len(names)
        for path in [*committed[:1], str(photos[-1].resolve())]:  # from before and after the kill
            assert fs.query(image=path, k=1)[0].path == path
        assert len(fs.query(text="black hair, smiling", k=5)) == 5
    finally:
        fs.close()

    # Through the command line, a second writer gets one clear line and a non-zero exit.
    with IndexLock(index, "index"):
        refused = assert_one_line_error(cli("index", "db", "--index", "idx", "-q", cwd=tmp_path))
    assert f"another facesearch index run (pid {os.getpid()}) holds the index" in refused


def test_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    with IndexLock(tmp_path / "idx", "remove"):
        with pytest.raises(IndexBusyError, match=rf"another facesearch remove run \(pid {os.getpid()}\)"):
            IndexLock(tmp_path / "idx").acquire()
    IndexLock(tmp_path / "idx").acquire().release()  # free again
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from facesearch.index.lock import IndexLock; "
         "IndexLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
         str(tmp_path / "idx")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusyError, match=rf"pid {holder.pid}"):
            IndexLock(tmp_path / "idx").acquire()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    IndexLock(tmp_path / "idx").acquire().release()  # a killed holder leaves no stale lock


def test_an_old_handle_does_not_undo_another_process_work(data_dir: Path, tmp_path: Path) -> None:
    """A FaceSearch kept open (its FAISS file read) while another one indexes: its next index
    run must start from the files on disk. Before: it saw the other run's rows as vectors gone
    missing and deleted them."""
    copy_photos(data_dir, ["000461.jpg", "000711.jpg"], tmp_path / "a")
    copy_photos(data_dir, ["000987.jpg"], tmp_path / "b")
    first = FaceSearch(tmp_path / "idx")
    second = FaceSearch(tmp_path / "idx")
    try:
        first.index([tmp_path / "a"])
        assert len(first.query(image=tmp_path / "a" / "000461.jpg", k=5)) == 2
        second.index([tmp_path / "b"])
        first.index([tmp_path / "a"])
        assert consistent(first) == (3, 3)
        assert len(first.query(image=tmp_path / "b" / "000987.jpg", k=5)) == 3
    finally:
        first.close()
        second.close()


# --- bad queries -------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["-k", "-3"], ["--text", ""], ["--text", "   "]])
def test_bad_query_arguments_are_one_line_errors(args: list[str], data_dir: Path, tmp_path: Path) -> None:
    image = [] if "--text" in args else ["--image", wild(data_dir, "000461.jpg")]
    assert_one_line_error(cli("query", *image, *args, "--index", tmp_path / "idx", cwd=tmp_path))


def test_describe_refuses_folders_and_fifos(tmp_path: Path, describer: FaceSearch) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(FaceSearchError, match="is a folder"):
        describer.describe(tmp_path)
    with pytest.raises(FaceSearchError, match="not a regular file"):  # instead of blocking
        describer.describe(tmp_path / "pipe.jpg")


# --- privacy -----------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch) -> list[tuple]:
    """Every attempt to open a network connection fails (and is recorded)."""
    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("test: network access attempted")

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, address: refuse(address))
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_index_and_query_work_without_a_network(no_network: list, data_dir: Path, tmp_path: Path) -> None:
    photos = copy_photos(data_dir, ["000461.jpg", "000711.jpg", "000987.jpg"], tmp_path / "db")
    fs = FaceSearch(tmp_path / "idx")
    try:
        assert fs.index([tmp_path / "db"]).faces == 3
        assert fs.query(image=photos[0], k=2)[0].path == str(photos[0].resolve())
        assert len(fs.query(text="a smiling woman with black hair", k=2)) == 2
        assert len(fs.query(image=photos[1], text="blond", k=2)) == 2
    finally:
        fs.close()
    assert no_network == []


def test_remove_really_deletes(data_dir: Path, tmp_path: Path) -> None:
    photos = copy_photos(data_dir, ["000461.jpg", "000711.jpg"], tmp_path / "db")
    secret = photos[1].rename(photos[1].with_name("secret-name-q7.jpg"))
    fs = FaceSearch(tmp_path / "idx")
    try:
        fs.index([tmp_path / "db"])
        row = fs.store.photo_by_path(secret)
        vector_id = row.faces[0].vector_id
        vector = fs.vectors.reconstruct([vector_id])[0].tobytes()

        def leaks() -> list[str]:
            """Files of the index that still hold the photo's name or vector."""
            return sorted(path.name for path in (tmp_path / "idx").iterdir()
                          if path.is_file() and any(token in path.read_bytes()
                                                    for token in (b"secret-name-q7", vector)))

        assert leaks()  # (the tokens are found while the photo is indexed)
        assert fs.remove([secret]) == 1
        assert leaks() == []  # nothing left, not even in SQLite's write-ahead log
        assert fs.store.photo_by_path(secret) is None
        assert fs.store.faces_by_vector_ids([vector_id]) == {}
        assert consistent(fs) == (1, 1)
    finally:
        fs.close()
    with pytest.raises(KeyError):
        VectorSpace.open(tmp_path / "idx" / FAISS_FILENAME).reconstruct([vector_id])
