"""People (index.people) on real photos: faces grouped into persons by identity, kept across
index runs with their names, merged, a face taken out, queries filtered by person, an index made
before migration 0006 upgraded; and the BCubed measure on a hand-made example."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_photos, upgrade_to
from PIL import Image, ImageFilter
from test_identity import _by_identity, _copy_aligned

from facesearch import FaceSearch, FaceSearchError
from facesearch.index.people import assign, cluster, consistent, group
from facesearch.training.metrics import bcubed
from facesearch.render import comparisons_table, hits_table

#: Validation identities (the same-person calibration never saw them): two people and a stranger
#: (not 1301: one of its first three photos, 004508.jpg, is at identity cosine 0.08 and 0.13 with
#: the other two, so those three do not hold together as a person at the grouping threshold).
ALICE, BOB, STRANGER = 985, 1731, 6864


def test_bcubed_on_a_hand_made_example() -> None:
    """Items a b c of class 1, d e of class 2; clusters {a b} {c d}, e in none (its own).
    Precision: a 1, b 1, c 1/2, d 1/2, e 1 -> 4/5. Recall: a 2/3, b 2/3, c 1/3, d 1/2, e 1/2
    -> 8/15. F = 2 PR / (P + R) = 0.64."""
    found = bcubed(np.array([0, 0, 1, 1, -1]), np.array([1, 1, 1, 2, 2]))
    assert found["precision"] == pytest.approx(0.8)
    assert found["recall"] == pytest.approx(8 / 15)
    assert found["f"] == pytest.approx(0.64)
    perfect = bcubed(np.array([5, 5, 7]), np.array([1, 1, 2]))
    assert perfect == {"precision": 1.0, "recall": 1.0, "f": 1.0}
    with pytest.raises(ValueError):
        bcubed(np.array([0, 1]), np.array([0]))


def test_assign_keeps_to_the_threshold_and_small_groups_wait() -> None:
    centroids = np.eye(3, dtype=np.float32)
    vectors = np.array([[0.9, 0.1, 0.0], [0.1, 0.1, 0.98], [0.5, 0.5, 0.5]], np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert assign(vectors, centroids, 0.8).tolist() == [0, 2, -1]
    assert cluster(vectors[:2], 3, 1).tolist() == [-1, -1]  # fewer than min_faces: no person


def _identities_around(centres: int, per: int, cosine: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic unit identity vectors: `per` faces around each of `centres` random unit
    centres in 512-d (cosine about `cosine` with it; two faces of one centre about cosine^2,
    two centres about 0); returns (vectors, centre of each)."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal((centres, 512)).astype(np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    labels = np.repeat(np.arange(centres), per)
    sigma = np.sqrt((1 / cosine ** 2 - 1) / 512)
    vectors = centre[labels] + rng.standard_normal((len(labels), 512)).astype(np.float32) * sigma
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), labels


def test_grouping_is_incremental_and_keeps_strangers_apart() -> None:
    """(Synthetic identity vectors.) Faces an earlier run left waiting are clustered again only
    with new faces near them; pairs and strangers seen once wait instead of being chained into
    one person (`consistent`); faces arriving over two runs make the same pure persons."""
    vectors, labels = _identities_around(3, 4, 0.7, seed=0)
    strangers, _ = _identities_around(12, 1, 0.7, seed=1)
    empty = np.empty((0, 512), np.float32)
    # first run: two faces of each identity and the strangers: nothing makes a person
    first = np.r_[0:2, 4:6, 8:10]
    waiting = np.concatenate([vectors[first], strangers])
    joined, clusters = group(waiting, empty, 0.19, 3, 1)
    assert (joined < 0).all() and (clusters < 0).all()
    # second run: the other faces come; the waiting ones near them join them, strangers wait
    second = np.concatenate([waiting, vectors[np.r_[2:4, 6:8, 10:12]]])
    truth = np.concatenate([labels[first], 10 + np.arange(12), labels[np.r_[2:4, 6:8, 10:12]]])
    tried = np.arange(len(second)) < len(waiting)
    joined, clusters = group(second, empty, 0.19, 3, 1, tried)
    found = [set(truth[clusters == c]) for c in np.unique(clusters[clusters >= 0])]
    assert sorted(map(sorted, found)) == [[0], [1], [2]]
    assert (clusters[len(first):len(waiting)] < 0).all()  # the strangers
    assert all((clusters[truth == i] >= 0).sum() == 4 for i in range(3))
    # a run with nothing new clusters nothing again, even faces that could form a person
    joined, clusters = group(vectors, empty, 0.19, 3, 1, np.ones(len(vectors), bool))
    assert (clusters < 0).all()
    # strangers labelled one cluster (as HDBSCAN may chain them) are taken apart
    assert (consistent(strangers, np.zeros(len(strangers), np.int64), 0.19, 3) < 0).all()
    kept = consistent(vectors, np.r_[np.full(4, -1), np.ones(4), np.full(4, 7)].astype(np.int64), 0.19, 3)
    assert kept.tolist() == [-1] * 4 + [1] * 4 + [7] * 4  # one person a cluster: kept whole


def test_a_run_without_new_faces_changes_no_person(library: dict) -> None:
    """Indexing the same folder again (nothing new) leaves every person as it was."""
    with FaceSearch(library["index"]) as fs:
        before = fs.people()
    copy = library["index"].parent / (library["index"].name + "-again")
    shutil.copytree(library["index"], copy)
    with FaceSearch(copy) as fs:
        report = fs.index([library["folder"]])
        after = fs.people()
    assert report.indexed == 0 and after == before


def _library(data_dir: Path, folder: Path, counts: dict[int, slice]) -> dict[str, int]:
    """Copy these aligned photos of each identity into `folder`; returns {path: identity}."""
    by_identity = _by_identity(data_dir)
    owner = {}
    for identity, chosen in counts.items():
        for path in _copy_aligned(data_dir, by_identity[identity][chosen], folder):
            owner[str(path)] = identity
    return owner


@pytest.fixture(scope="module")
def library(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Alice 4 photos, Bob 4, a stranger 3, indexed once (tests here only read it)."""
    folder = tmp_path_factory.mktemp("people-photos")
    owner = _library(data_dir, folder, {ALICE: slice(0, 4), BOB: slice(0, 4), STRANGER: slice(0, 3)})
    index_dir = tmp_path_factory.mktemp("people-index")
    with FaceSearch(index_dir) as fs:
        report = fs.index([folder])
    return {"folder": folder, "index": index_dir, "owner": owner, "report": report}


def _identities(found: list[dict], owner: dict[str, int]) -> list[set[int]]:
    return [{owner[face["path"]] for face in person["faces"]} for person in found]


def test_photos_of_one_identity_become_one_person_and_a_stranger_another(library: dict) -> None:
    with FaceSearch(library["index"]) as fs:
        found = fs.people()
    assert library["report"].people.created == 3
    assert [len(person["faces"]) for person in found] == [4, 4, 3]
    assert sorted(min(owners) for owners in _identities(found, library["owner"])) == sorted(
        [ALICE, BOB, STRANGER])
    assert all(len(owners) == 1 for owners in _identities(found, library["owner"]))
    assert all(person["name"] is None and set(person["faces"][0]) >= {"face_id", "path", "bbox"}
               for person in found)


def test_hits_carry_their_person_and_where_person_filters(library: dict) -> None:
    query = next(path for path, who in library["owner"].items() if who == ALICE)
    with FaceSearch(library["index"]) as fs:
        alice = next(p for p in fs.people() if library["owner"][p["faces"][0]["path"]] == ALICE)
        # the 11 photos' people (scrfd also finds a 14 px face in the background of 019967.jpg,
        # in no person: left out by its size)
        hits = fs.query(image=query, k=11, where="face_size > 30")
        only = fs.query(image=query, k=11, where=f"person = {alice['id']}")
        by_id = fs.query(image=query, k=11, person=alice["id"])  # an int id, as fs.people() gives it
        others = fs.query(image=query, k=11, where=f"person != {alice['id']} and face_size > 30")
        with pytest.raises(FaceSearchError, match="no person is called 'Nobody'"):
            fs.query(image=query, person="Nobody")
        with pytest.raises(FaceSearchError, match="person takes = or !="):
            fs.query(image=query, where="person < 3")
    assert len(hits) == 11 and hits[0].person == {"id": alice["id"], "name": None}
    assert all(hit.person is not None for hit in hits)
    assert {hit.face_id for hit in only} == {face["face_id"] for face in alice["faces"]}
    assert [hit.face_id for hit in by_id] == [hit.face_id for hit in only]
    assert len(others) == 7 and all(hit.person["id"] != alice["id"] for hit in others)


def _reencode(path: Path) -> None:
    """Save the photo again (other bytes, same picture): the next index run describes it again."""
    with Image.open(path) as image:
        image.convert("RGB").save(path, quality=85)


def test_an_unknown_person_in_where_is_an_error_and_a_case_slip_is_suggested(
        library: dict, tmp_path: Path, facesearch_command: list[str]) -> None:
    """`--where "person = 'alice'"` naming no person says so in one line (was: no hits), as
    `--person` does; both suggest the name that differs only in case. A copy of the library's
    index, since naming writes to it."""
    from clitools import assert_one_line_error, run

    index_dir = tmp_path / "index"
    shutil.copytree(library["index"], index_dir)
    with FaceSearch(index_dir) as fs:
        fs.name_person(fs.people()[0]["id"], "Alice")
        assert len(fs.query(where="person = 'Alice'", k=10)) == 4  # a known name as before
        for call in (lambda: fs.query(where="person = 'alice'"), lambda: fs.query(person="alice"),
                     lambda: fs.query(where="smiling > 0 and not person != 'ALICE'")):
            with pytest.raises(FaceSearchError) as raised:
                call()
            assert str(raised.value).startswith("no person is called '") and "(did you mean 'Alice'?)" in str(
                raised.value), str(raised.value)
        with pytest.raises(FaceSearchError, match=r"^no person is called 'Zed': `facesearch people`"):
            fs.query(where="person = 'Zed'")
    done = run(facesearch_command, "query", "--where", "person = 'alice'", "--index", index_dir, cwd=tmp_path)
    assert assert_one_line_error(done) == ("error: no person is called 'alice' (did you mean 'Alice'?): "
                                           "`facesearch people` lists them")


def test_names_merges_and_removals_persist_across_index_runs(data_dir: Path, tmp_path: Path,
                                                             facesearch_command: list[str]) -> None:
    folder, index_dir = tmp_path / "photos", tmp_path / "index"
    owner = _library(data_dir, folder, {ALICE: slice(0, 3), BOB: slice(0, 3), STRANGER: slice(0, 3)})
    with FaceSearch(index_dir) as fs:
        fs.index([folder])
        by_owner = {library_owner(p, owner): p for p in fs.people()}
        alice, bob, stranger = by_owner[ALICE], by_owner[BOB], by_owner[STRANGER]
        fs.name_person(alice["id"], "Alice")
        fs.name_person(bob["id"], "Bob")
        with pytest.raises(FaceSearchError, match="already called 'Alice'"):
            fs.name_person(stranger["id"], "Alice")
        with pytest.raises(FaceSearchError, match="already called 'Alice'"):  # in any case
            fs.name_person(stranger["id"], " alice ")
        with pytest.raises(FaceSearchError, match="cannot be digits alone"):  # it would read as an id
            fs.name_person(stranger["id"], "12")
        fs.merge_people(bob["id"], stranger["id"])  # a user may join any two
        taken = stranger["faces"][0]["face_id"]
        assert fs.remove_face(taken) == bob["id"]
        with pytest.raises(FaceSearchError, match="no person"):
            fs.merge_people(bob["id"], stranger["id"])
    # more photos come, and an indexed photo of Alice and one of Bob are described again
    owner |= _library(data_dir, folder, {ALICE: slice(3, 5)})
    alice_photo = Path(alice["faces"][0]["path"])
    _reencode(alice_photo)
    _reencode(Path(bob["faces"][0]["path"]))
    with FaceSearch(index_dir) as fs:
        report = fs.index([folder])
        assert report.indexed == 4 and report.people.created == 0
        after = {p["id"]: p for p in fs.people()}
        assert set(after) == {alice["id"], bob["id"]}
        assert after[alice["id"]]["name"] == "Alice" and after[bob["id"]]["name"] == "Bob"
        assert {owner[f["path"]] for f in after[alice["id"]]["faces"]} == {ALICE}
        assert len(after[alice["id"]]["faces"]) == 5
        assert str(alice_photo) in {f["path"] for f in after[alice["id"]]["faces"]}
        assert len(after[bob["id"]]["faces"]) == 5  # Bob's 3 and the stranger's 2 left
        assert taken not in {f["face_id"] for p in after.values() for f in p["faces"]}
        query = folder / _by_identity(data_dir)[ALICE][4]
        named = fs.query(image=query, k=20, person="Alice")
        where = fs.query(image=query, k=20, where="person = 'Alice' and male > -1")
        not_alice = fs.query(image=query, k=20, where="person != 'Alice' and face_size > 30")
        browsed = fs.query(person="Alice", k=20)
    assert [hit.person["name"] for hit in named] == ["Alice"] * 5
    assert {hit.face_id for hit in where} == {hit.face_id for hit in named}
    assert {hit.face_id for hit in browsed} == {hit.face_id for hit in named}
    assert len(not_alice) == 6 and all(hit.person is None or hit.person["name"] == "Bob"
                                       for hit in not_alice)
    run = [*facesearch_command, "people", "--index", str(index_dir)]
    listed = subprocess.run(run, capture_output=True, text=True, timeout=300, check=False)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.strip().splitlines()[1:]
    assert [row.split()[:3] for row in rows] == sorted(  # most faces first, then by id
        [[str(alice["id"]), "Alice", "5"], [str(bob["id"]), "Bob", "5"]])
    assert all(row.split()[3].startswith(str(folder)) for row in rows)  # the cover face
    renamed = subprocess.run([*run, "name", "Alice", "Alice B"], capture_output=True, check=False,
                             text=True, timeout=300)  # a person by its present name
    assert renamed.returncode == 0 and renamed.stdout.strip() == f"person {alice['id']} is 'Alice B'", renamed.stderr
    bad = subprocess.run([*facesearch_command, "people", "merge", "999", str(alice["id"]), "--index",
                          str(index_dir)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
        "error: there is no person 999: `facesearch people` lists them"]
    out = subprocess.run([*run, "remove-face", str(named[-1].face_id)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0 and out.stdout.strip() == (
        f"face {named[-1].face_id} taken out of person {alice['id']}"), out.stderr
    again = subprocess.run([*run, "remove-face", str(named[-1].face_id)], capture_output=True,
                           text=True, timeout=300, check=False)
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        f"error: face {named[-1].face_id} is in no person"]
    hits = subprocess.run([*facesearch_command, "query", "--image", str(query), "--person", "Alice B",
                           "--json", "--index", str(index_dir)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert hits.returncode == 0, hits.stderr
    assert [hit["person"] for hit in json.loads(hits.stdout)] == [
        {"id": alice["id"], "name": "Alice B"}] * 4


def library_owner(person: dict, owner: dict[str, int]) -> int:
    """The one identity of a person's faces (AssertionError if they are several)."""
    (identity,) = {owner[face["path"]] for face in person["faces"]}
    return identity


def test_an_index_made_before_people_gets_them_on_the_next_run(library: dict, tmp_path: Path) -> None:
    """The library's index taken back to migration 0005 (no persons table, no person_id): it
    opens, answers queries as before, and the next index run groups its faces, losing
    nothing."""
    index_dir = tmp_path / "old"
    shutil.copytree(library["index"], index_dir)
    url = f"sqlite:///{index_dir / 'facesearch.sqlite'}"
    with FaceSearch(library["index"]) as fs:
        query = next(iter(library["owner"]))
        before = [(hit.face_id, hit.score) for hit in fs.query(image=query, k=11)]
        faces_before = fs.info()["faces"]
    from alembic import command
    from alembic.config import Config

    from facesearch.index.store import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    command.downgrade(cfg, "0005")
    upgrade_to(url, "0006")  # what opening it does: the new schema, no persons yet
    with FaceSearch(index_dir) as fs:
        old = fs.query(image=query, k=11)
        assert [(hit.face_id, hit.score) for hit in old] == before
        assert all(hit.person is None for hit in old) and fs.people() == []
        report = fs.index([library["folder"]])
        assert report.indexed == 0 and report.unchanged == 11 and report.people.created == 3
        assert [len(p["faces"]) for p in fs.people()] == [4, 4, 3]
        assert fs.info()["faces"] == faces_before
        assert [(hit.face_id, hit.score) for hit in fs.query(image=query, k=11)] == before


def test_in_the_wild_photos_of_one_identity_become_one_person(data_dir: Path, tmp_path: Path) -> None:
    """Four in-the-wild CelebA photos of a validation identity and three of another: each
    identity's photos form one person of its own (other faces in the photos may form none)."""
    chosen = {7474: ["000987.jpg", "012052.jpg", "018604.jpg", "034061.jpg"],
              7424: ["002184.jpg", "004810.jpg", "018923.jpg"]}
    owner = {str(path): identity for identity, names in chosen.items()
             for path in copy_photos(data_dir, names, tmp_path / "wild")}
    with FaceSearch(tmp_path / "index") as fs:
        fs.index([tmp_path / "wild"])
        found = fs.people()
    for identity, names in chosen.items():
        person = [p for p in found if any(owner[f["path"]] == identity for f in p["faces"])]
        assert len(person) == 1, (identity, found)
        assert {owner[f["path"]] for f in person[0]["faces"]} == {identity}
        assert len({f["path"] for f in person[0]["faces"]}) == len(names)


def test_faces_below_the_quality_floor_join_no_person(data_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Faces below people.MIN_QUALITY are found and searchable but join no person and make none:
    a photo of Alice shrunk and blurred into the corner of a larger picture (a background face,
    quality about 0.09) stays out while her clear photos make a person; with the floor raised
    above every face's quality, no person is made at all (the floor is what keeps them out)."""
    from facesearch.index import people

    folder = tmp_path / "photos"
    owner = _library(data_dir, folder, {ALICE: slice(0, 4), BOB: slice(0, 3)})
    with Image.open(data_dir / "celeba/aligned" / _by_identity(data_dir)[ALICE][4]) as photo:
        small = photo.convert("RGB").resize((48, 59)).filter(ImageFilter.GaussianBlur(0.8))
    scene = Image.new("RGB", (400, 300), (90, 110, 95))
    scene.paste(small, (20, 231))
    scene.save(folder / "background.jpg", quality=90)
    alice = Path(next(path for path, who in owner.items() if who == ALICE))
    with FaceSearch(tmp_path / "index") as fs:
        fs.index([folder])
        persons = fs.people()
        background = [hit for hit in fs.query(image=alice, k=10) if Path(hit.path).name == "background.jpg"]
    assert sorted(len(person["faces"]) for person in persons) == [3, 4]
    assert background and background[0].quality < people.MIN_QUALITY and background[0].person is None
    monkeypatch.setattr(people, "MIN_QUALITY", 0.99)
    with FaceSearch(tmp_path / "index-strict") as fs:
        fs.index([folder])
        assert fs.people() == []


def test_comparisons_of_the_very_old_are_flagged(data_dir: Path, tmp_path: Path) -> None:
    """Chips of people over 90 (the identity network calls 21% of such strangers' pairs one
    person: models.arcface.RELIABLE_UNTIL_AGE): their comparisons are flagged with the reason,
    when their age reads 80 or more; adults' are not."""
    from facesearch.models.arcface import RELIABLE_UNTIL_AGE, unreliable_age

    assert unreliable_age(85.0).startswith("estimated 80 or older") and unreliable_age(79.0) == ""
    assert unreliable_age(None) == "" and unreliable_age(4.0).startswith("estimated under 10")
    old = sorted((data_dir / "utkface").glob("9[0-9]_*.jpg"))[:6]
    with FaceSearch(tmp_path / "index") as fs:
        ages = {path: found[0].attributes["age"] for path in old if (found := fs.describe(path))}
        read_old = [path for path, age in ages.items() if age >= RELIABLE_UNTIL_AGE]
        assert len(read_old) >= 2, ages
        (pair,) = fs.compare(read_old[0], read_old[1])
    assert not pair.reliable and pair.why.startswith("estimated 80 or older")


def test_young_children_join_no_person_and_their_comparisons_are_flagged(data_dir: Path, tmp_path: Path) -> None:
    """Six different babies (UTKFace chips, 1 year old: the identity network calls 87% of such
    pairs one person) make no person and their comparison says it is unreliable; adults' chips
    are compared as before."""
    folder = tmp_path / "chips"
    folder.mkdir()
    babies = sorted((data_dir / "utkface").glob("1_*.jpg"))[:6]
    adults = sorted((data_dir / "utkface").glob("35_*.jpg"))[:2]
    for path in babies + adults:
        shutil.copy2(path, folder / path.name)
    with FaceSearch(tmp_path / "index") as fs:
        fs.index([folder])
        assert fs.people() == []
        (pair,) = fs.compare(folder / babies[0].name, folder / babies[1].name)
        assert not pair.reliable and pair.to_dict()["reliable"] is False
        (grown,) = fs.compare(folder / adults[0].name, folder / adults[1].name)
        assert grown.reliable and not grown.same_person
        notes: list[str] = []
        fs.on_notice = notes.append
        hits = fs.query(image=folder / babies[0].name, k=3)  # a baby's query says so, and its hits
        assert notes == ["the query face is estimated under 10 years old: same_person is not reliable "
                         "for young children"]
        assert "same person 1.00 (unreliable: estimated under 10 years old)" in hits_table(hits)
        fs.query(image=folder / adults[0].name, k=3)
        assert len(notes) == 1
        # look-alikes of a baby are other babies (not left out as "its person"), never itself
        alike = fs.query(image=folder / babies[0].name, k=3, match="look-alike")
        assert {Path(hit.path).name for hit in alike} <= {path.name for path in babies[1:]}
    assert "UNRELIABLE: estimated under 10 years old (young children" in comparisons_table([pair])


def test_compare_names_a_face_by_its_box_when_its_photo_has_several() -> None:
    """A portrait against a photo of four: the four are told apart by their boxes (the trial
    read "face 0 - face 0", "face 3 - face 0" without knowing which face was which)."""
    from facesearch.search.compare import Comparison

    pairs = [Comparison(0, j, [10, 20, 110, 140], [40 * j, 5, 40 * j + 30, 45], 0.1, 0.01, False)
             for j in range(4)]
    lines = comparisons_table(pairs).splitlines()
    assert lines[0].startswith("face 0 - face 0 [0,5,30,45]: not the same person")
    assert lines[3].startswith("face 0 - face 3 [120,5,150,45]: ")
    assert "[10,20,110,140]" not in lines[0]  # the portrait's one face needs no box


def test_a_same_person_call_on_a_tiny_or_blurred_face_is_marked_unreliable() -> None:
    """A 25 px face of quality 0.06 was called the same person as a stranger at 0.60: such a
    pair is flagged, with the reason (young children keep theirs); faces without a quality
    record are not flagged."""
    from facesearch.search.compare import unreliable_because

    adult = {"age": 35.0, "quality": 0.8}
    assert unreliable_because(adult, adult | {"quality": 0.06}) == "a face of quality under 0.1 (tiny or blurred)"
    assert unreliable_because(adult, {"age": 2.0, "quality": 0.9}).startswith("estimated under 10 years old")
    assert unreliable_because(adult, adult) == "" and unreliable_because({"age": 40.0}, adult) == ""
