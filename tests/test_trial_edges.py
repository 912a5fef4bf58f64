"""Edges a new user's trial found (issues 15 and 17, session 7), on real photos: a truncated
copy of an indexed photo, `remove` of a file not indexed, `info`'s failure reasons, counts in
words ("1 face"), queries whose score is not a region similarity (pixel attributes, browsing by
quality), and old indexes brought up to date by one `facesearch index` run.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from clitools import assert_one_line_error, run
from conftest import BuiltIndex, copy_photos
from test_identity import _by_identity, _copy_aligned
from test_people import ALICE, BOB
from facesearch import FaceSearch, FaceSearchError
from facesearch.errors import counted
from facesearch.render import hits_table, save_contact_sheet
from facesearch.spec import EMOTIONS, IDENTITY, PIXEL_ATTRIBUTES, QUALITY_KEYS


# --- the library --------------------------------------------------------------------------------
def test_a_truncated_copy_of_an_indexed_photo_is_partial_not_a_copy(data_dir: Path, tmp_path: Path) -> None:
    """The top three quarters of an indexed photo (its face whole, the rest grey when decoded):
    its faces match the photo's and its header gives the same size, yet it is a cut file, so it
    is indexed as partial, not filed as another path of the photo."""
    lib = tmp_path / "lib"
    copy_photos(data_dir, ["001004.jpg", "000461.jpg"], lib)
    with FaceSearch(tmp_path / "index") as fs:
        fs.index([lib], progress=False)
        whole = (lib / "001004.jpg").read_bytes()
        (lib / "cut.jpg").write_bytes(whole[: int(len(whole) * 0.75)])
        report = fs.index([lib], progress=False)
        assert report.duplicates == 0 and report.partial == [str(lib / "cut.jpg")], report
        cut = fs.store.photo_by_path(str(lib / "cut.jpg"))
        assert cut is not None and cut.partial and len(cut.faces) == 1
        assert fs.store.aliases() == {}
        # a whole copy is still another path of the photo
        shutil.copy(lib / "001004.jpg", lib / "copy.jpg")
        assert fs.index([lib], progress=False).duplicates == 1


def test_a_re_encoded_pair_in_one_fresh_run_is_one_photo(data_dir: Path, tmp_path: Path) -> None:
    """CelebA's 007413.jpg and 072016.jpg are one photo encoded twice (a new user's trial: one
    fresh run indexed both, while an interrupted run merged them). Described in the same run,
    before either is written, the second is still recorded as another path of the first."""
    lib = tmp_path / "lib"
    copy_photos(data_dir, ["007413.jpg", "072016.jpg", "000461.jpg"], lib)
    with FaceSearch(tmp_path / "index") as fs:
        report = fs.index([lib], progress=False)
        assert (report.indexed, report.duplicates) == (2, 1), report
        assert len(fs.store.photos()) == 2
        assert fs.store.aliases().keys() == {str(lib / "072016.jpg")}
        assert fs.index([lib], progress=False).indexed == 0  # settled: nothing to describe again


def test_counts_are_said_in_words() -> None:
    assert [counted(n, "face") for n in (0, 1, 2)] == ["0 faces", "1 face", "2 faces"]
    assert counted(1, "copy", "copies") == "1 copy" and counted(3, "copy", "copies") == "3 copies"


def test_remove_of_a_file_not_indexed_fails_and_info_says_why_files_failed(
        built_index: BuiltIndex, facesearch_command: list[str], tmp_path: Path) -> None:
    """`remove` of a path the index does not hold: one line, exit 1, nothing removed (the
    Python call still returns 0 unless missing_ok=False). `info` lists failed files with their
    reasons in its text as in its JSON. Run on a copy of the shared index."""
    index_dir = tmp_path / "index"
    shutil.copytree(built_index.index_dir, index_dir)
    stranger = tmp_path / "never-indexed.jpg"
    shutil.copy(built_index.photos[0], stranger)
    done = run(facesearch_command, "remove", stranger, "--index", index_dir, cwd=tmp_path)
    assert done.stdout == ""
    assert assert_one_line_error(done) == f"error: not in the index: {stranger}; nothing removed"
    both = run(facesearch_command, "remove", built_index.photos[0], stranger, "--index", index_dir,
               cwd=tmp_path)
    assert both.returncode == 1 and "nothing removed" in both.stderr
    with FaceSearch(index_dir) as fs:
        assert fs.info()["photos"] == len(built_index.photos)  # nothing removed
        assert fs.remove([stranger]) == 0
        with pytest.raises(FaceSearchError, match="not in the index"):
            fs.remove([stranger], missing_ok=False)
        # a file that fails: its reason, in the text as in the JSON
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
        fs.index([tmp_path / "bad"], progress=False)
    as_json = json.loads(run(facesearch_command, "info", "--json", "--index", index_dir, cwd=tmp_path).stdout)
    ((path, reason),) = as_json["failed"]
    text = run(facesearch_command, "info", "--index", index_dir, cwd=tmp_path).stdout
    assert "failed: 1" in text and reason in text and "broken.jpg" in reason
    gone = run(facesearch_command, "remove", built_index.photos[0], "--index", index_dir, cwd=tmp_path)
    assert gone.returncode == 0 and gone.stdout.strip() == "removed 1 photo"


# --- scores that are not region similarities ------------------------------------------------------
def test_a_text_of_pixel_attributes_alone_says_its_score_is_their_fit(built_index: BuiltIndex,
                                                                      tmp_path: Path) -> None:
    """"red hair" names no class with a centre: there is no query vector, so no region is
    compared (not seven 0.00 similarities) and the hits say their score is the fit to
    hair_red, which is what orders them."""
    fs = built_index.fs
    hits = fs.query(text="red hair", k=5)
    assert hits.scored_by is not None and hits.scored_by.startswith("fit to hair_red (0-1")
    assert all(hit.regions == {} for hit in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:  # the fit of one class is its probability (floored at 0.01)
        assert hit.score == pytest.approx(max(hit.attributes["hair_red"], 0.01), abs=1e-3)
    record = hits.to_dicts()[0]
    assert record["score_is"] == hits.scored_by and record["regions"] == {}
    table = hits_table(hits)
    assert table.splitlines()[0] == f"score: {hits.scored_by}" and " 0.00, " not in table
    for sheet in ("sheet.png", "sheet.html"):  # sheets say it too, and draw no bars
        save_contact_sheet(tmp_path / sheet, hits, text="red hair")
    assert "no region compared" in (tmp_path / "sheet.html").read_text()
    # a class with a centre gives a query vector: region similarities as before; the score is
    # the fit plus the centre-space tie-break, and says so
    mixed = fs.query(text="red hair, smiling", k=3)
    assert mixed.scored_by == "fit to hair_red, Smiling (0-1) + 0.05 x the class-centre score"
    assert all(len(hit.regions) == 7 for hit in mixed) and mixed.to_dicts()[0]["score_is"] == mixed.scored_by
    with_face = fs.query(image=built_index.photos[0], text="smiling", k=3)
    assert with_face.scored_by == ("sum of the 7 region cosines (-7 to 7) with the query face moved toward "
                                   "Smiling, + 1 x log(fit to Smiling, 0-1)")


def test_a_text_nobody_fits_says_so(built_index: BuiltIndex) -> None:
    """Hits are listed best first even when none shows what was asked; then a notice says the
    best fit (search.terms.class_fit) is poor. A query the index answers well gets none."""
    fs, notes = built_index.fs, []
    fs.on_notice, before = notes.append, fs.on_notice
    try:
        hits = fs.query(text="bald, wearing hat, eyeglasses, goatee", k=3)
        assert hits and len(notes) == 1 and notes[0].startswith("no face here clearly fits Bald, ")
        assert float(notes[0].split("the best fit is ")[1].split()[0]) < 0.5
        notes.clear()
        assert fs.query(text="smiling", k=3) and notes == []
    finally:
        fs.on_notice = before


@pytest.mark.parametrize("key", ["quality", "face_size", "border_cut", "blur"])
def test_browsing_by_a_number_without_a_class_orders_by_it(built_index: BuiltIndex, key: str) -> None:
    """`--where "quality > 0.5"` alone: the faces meeting it, highest quality first, each
    scored by its quality (was: face-id order, score 1); `<` lists the lowest first, and so
    does `not ... >`. The same for every number of the quality record."""
    fs = built_index.fs
    values = sorted(h.attributes[key] for h in fs.query(where=f"{key} >= 0", k=100))
    middle = values[len(values) // 2]
    above = fs.query(where=f"{key} >= {middle}", k=100)
    assert [h.score for h in above] == [h.attributes[key] for h in above] == sorted(
        (v for v in values if v >= middle), reverse=True)
    assert above.scored_by == f"{key} (highest first); no region compared"
    assert all(hit.regions == {} for hit in above)
    for where in (f"{key} <= {middle}", f"not {key} > {middle}"):
        below = fs.query(where=where, k=3)
        assert [h.score for h in below] == [v for v in values if v <= middle][:3], where
        assert below.scored_by == f"{key} (lowest first); no region compared"
    assert hits_table(above).startswith(f"score: {key} (highest first)")
    # a class named beside it orders by the class's fit, as before, and says so
    assert fs.query(where=f"eyeglasses > 0.5 and {key} >= 0", k=3).scored_by.startswith(
        "fit to Eyeglasses (0-1) + ")


# --- old indexes, brought up to date by one run ---------------------------------------------------
def _strip(index_dir: Path, keys: tuple[str, ...]) -> None:
    """Make an index's faces look described before these stored numbers existed: out of every
    face's attributes, their face_classes columns emptied (as migration 0007 left them)."""
    from facesearch.index.store import CLASS_COLUMNS

    with sqlite3.connect(index_dir / "facesearch.sqlite") as db:
        for face_id, attributes in db.execute("SELECT id, attributes FROM faces").fetchall():
            kept = {k: v for k, v in json.loads(attributes).items() if k not in keys}
            db.execute("UPDATE faces SET attributes = ? WHERE id = ?", (json.dumps(kept), face_id))
        db.execute(f"UPDATE face_classes SET {', '.join(f'{CLASS_COLUMNS[k]} = NULL' for k in keys)}")
        db.execute("DELETE FROM index_meta WHERE key = 'refreshed_keys'")  # as before the key existed


def test_faces_indexed_before_expressions_and_quality_get_them_on_the_next_run(
        data_dir: Path, tmp_path: Path, facesearch_command: list[str]) -> None:
    """An index whose faces lack the expressions, pixel attributes and quality record: one
    `facesearch index` run describes their photos again and fills them in, in place: the same
    face ids, vectors, person and its name; a run on one of its folders does that folder's, the
    next run on all of them the rest; then nothing is described again."""
    folder = tmp_path / "photos"
    for identity in (ALICE, BOB):
        _copy_aligned(data_dir, _by_identity(data_dir)[identity][:4], folder / str(identity))
    index_dir = tmp_path / "index"
    with FaceSearch(index_dir) as fs:
        fs.index([folder], progress=False)
        person = fs.people()[0]
        fs.name_person(person["id"], "Alice")
        query = Path(person["faces"][0]["path"])
        before = [(h.face_id, h.score, h.person) for h in fs.query(image=query, k=8)]
        full = {h.face_id: h.attributes for h in fs.query(image=query, k=8)}
    newer = (*EMOTIONS, *PIXEL_ATTRIBUTES, *QUALITY_KEYS)
    _strip(index_dir, newer)
    with FaceSearch(index_dir) as fs:
        assert fs.query(where="quality >= 0", k=10) == []
        assert all("quality" not in h.attributes for h in fs.query(image=query, k=8))
    done = run(facesearch_command, "index", folder / str(BOB), "--index", index_dir, "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 indexed (0 faces" in done.stdout and "4 photos described again to add expressions" in done.stdout
    with FaceSearch(index_dir) as fs:
        assert fs.index([folder], progress=False).refreshed == 4  # Alice's too
        after = fs.query(image=query, k=8)
        assert [(h.face_id, h.score, h.person) for h in after] == before
        assert after[0].person["name"] == "Alice" and fs.people()[0]["id"] == person["id"]
        for hit in after:  # every number back: the kept ones as they were, the others anew
            first = full[hit.face_id]
            assert set(hit.attributes) == set(first)
            assert {k: v for k, v in hit.attributes.items() if k not in newer} == {
                k: v for k, v in first.items() if k not in newer}
            assert {k: hit.attributes[k] for k in QUALITY_KEYS} == pytest.approx(
                {k: first[k] for k in QUALITY_KEYS}, rel=1e-3)
            assert all(0 <= v <= 1 for k, v in hit.attributes.items() if k in EMOTIONS + PIXEL_ATTRIBUTES)
        assert len(fs.query(where="quality >= 0", k=10)) == 8  # the columns too
        report = fs.index([folder], progress=False)
        assert (report.indexed, report.refreshed, report.unchanged) == (0, 0, 8)


def test_an_old_index_whose_photos_moved_needs_one_run(data_dir: Path, tmp_path: Path) -> None:
    """An index made before the identity space, its folder moved and one photo deleted: one
    run on the new folder finds the moved photos and describes them again (identity vectors);
    the deleted one, outside the folder indexed, is kept as missing (as an unmounted drive's
    photos are) and person mode works without it; --prune forgets it. Before, person mode
    needed two runs and --prune."""
    old, new = tmp_path / "old", tmp_path / "new"
    copy_photos(data_dir, ["000461.jpg", "000711.jpg", "000987.jpg", "001004.jpg"], old)
    index_dir = tmp_path / "index"
    with FaceSearch(index_dir) as fs:
        fs.index([old], progress=False)
    with sqlite3.connect(index_dir / "facesearch.sqlite") as db:
        db.execute("DELETE FROM face_vectors WHERE space = ?", (IDENTITY,))
    (index_dir / f"{IDENTITY}.faiss").unlink()
    (old / "001004.jpg").unlink()
    old.rename(new)
    with FaceSearch(index_dir) as fs:
        report = fs.index([new], progress=False)
        assert (report.moved, report.indexed, report.removed) == (3, 3, 0), report
        assert report.missing == [str(old / "001004.jpg")]
        assert len(fs.spaces[IDENTITY]) == 3 and len(fs.spaces.master) == fs.info()["faces"] == 4
        for match in ("person", "default", "look-alike"):
            hits = fs.query(image=new / "000461.jpg", k=4, match=match)
            assert str(old / "001004.jpg") not in {h.path for h in hits} or match == "default"
        hits = fs.query(image=new / "000461.jpg", k=3, match="person")
        assert hits[0].path == str(new / "000461.jpg") and hits[0].same_person > 0.5
        assert {h.path for h in hits} <= {str(p) for p in new.iterdir()}
        report = fs.index([new], progress=False, prune=True)
        assert report.removed == 1 and fs.info()["faces"] == 3


def test_the_progress_bar_counts_described_photos_and_ends_on_the_summary_faces(
        data_dir: Path, tmp_path: Path, facesearch_command: list[str]) -> None:
    """The bar moves as photos are described (not as they are looked at, which reached 100%
    before any was described) and its last faces= count is the summary's."""
    import re

    folder = tmp_path / "photos"
    _copy_aligned(data_dir, _by_identity(data_dir)[ALICE][:3] + _by_identity(data_dir)[BOB][:3], folder)
    done = run(facesearch_command, "index", folder, "--index", tmp_path / "index", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    states = [(int(step), int(total), int(faces or -1)) for step, total, faces in re.findall(
        r"(\d+)/(\d+) \[[^\]]*?(?:faces=(\d+))?\]", done.stderr.replace("\r", "\n"))]
    summary_faces = int(re.search(r"\((\d+) faces", done.stdout).group(1))
    assert states and states[-1][:2] == (6, 6) and states[-1][2] == summary_faces == 6
    # every state at 100% already knows the faces of all six photos
    assert all(faces == summary_faces for step, total, faces in states if step == total)


# --- the Python API's arguments and the query's match mode (session 8's trial) ------------------
def test_python_arguments_of_the_wrong_type_are_one_line(built_index: BuiltIndex, tmp_path: Path) -> None:
    """Each wrong type is a FaceSearchError (ArgumentTypeError, also a TypeError) saying what
    was given and what is expected, raised before anything is read or written; not a raw
    AttributeError, TypeError or ValueError from deep inside."""
    from facesearch.errors import ArgumentTypeError

    fs, photo = built_index.fs, built_index.photos[0]
    calls = {
        "text must be a string, got int 5": lambda: fs.query(text=5),
        "where must be a filter string": lambda: fs.query(where=5),
        "image must be a path (str or os.PathLike) or an RGB array": lambda: fs.query(image=123),
        "image must be a path": lambda: fs.describe(None),
        "got bytes": lambda: fs.describe(b"\xff\xd8 bytes"),
        "index_dir must be a folder's path (str or os.PathLike), got int 5": lambda: FaceSearch(5),
        "paths must be a path (str or os.PathLike) or a list of paths, got int 5": lambda: fs.index(5),
        "each of paths must be a path": lambda: fs.index([tmp_path, 5]),
        "person_id must be a person's id (int; `people()` lists them), got float 2.5":
            lambda: fs.name_person(2.5, "x"),
        "keep must be a person's id": lambda: fs.merge_people(None, "b"),
        "weights must be a mapping of region to number": lambda: fs.query(image=photo, weights=2),
        "region must be a region's name": lambda: fs.query(image=photo, region=5),
        "exclude must be a path": lambda: fs.query(image=photo, exclude=5),
    }
    for message, call in calls.items():
        with pytest.raises(ArgumentTypeError) as raised:
            call()
        assert isinstance(raised.value, FaceSearchError) and isinstance(raised.value, TypeError)
        assert message in str(raised.value), str(raised.value)
        assert "\n" not in str(raised.value)
    with pytest.raises(FaceSearchError, match="no person is called 'abc'"):  # a name, not an id
        fs.name_person("abc", "x")
    with pytest.raises(FaceSearchError, match=r"^weights: hair='x' is not a number$"):
        fs.query(image=photo, weights={"hair": "x"})
    # the CLI's string form of weights is taken as it is there
    as_text = fs.query(image=photo, k=3, weights="hair=2,background=0")
    as_mapping = fs.query(image=photo, k=3, weights={"hair": 2, "background": 0})
    assert [(h.face_id, h.score) for h in as_text] == [(h.face_id, h.score) for h in as_mapping]


def test_a_match_mode_without_an_image_says_so(built_index: BuiltIndex, facesearch_command: list[str],
                                               tmp_path: Path) -> None:
    """--match person/look-alike with no --image says there is no image (not "without a text",
    when there is no text); with an image and a text, it says to leave out the text. The
    min_same_person error names no CLI flag, so it reads right in Python too."""
    fs, photo = built_index.fs, built_index.photos[0]
    with pytest.raises(FaceSearchError, match=r"applies to image queries: there is no image"):
        fs.query(where="age > 50", match="person")
    with pytest.raises(FaceSearchError, match=r"applies to image queries without a text: leave out"):
        fs.query(image=photo, text="smiling", match="look-alike")
    with pytest.raises(FaceSearchError, match=r"use match person \(or default\)$") as raised:
        fs.query(image=photo, match="look-alike", min_same_person=0.9)
    assert "--" not in str(raised.value)
    done = run(facesearch_command, "query", "--where", "age > 50", "--match", "person",
               "--index", built_index.index_dir, cwd=tmp_path)
    line = assert_one_line_error(done)
    assert "there is no image (--image)" in line and "text" not in line
