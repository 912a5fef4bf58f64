"""The web app's JSON API (facesearch.server) through FastAPI's TestClient, on a small index of
real photos: text, photo and mixed queries, filters and their errors, region weights, faces and
photos by id, cached thumbnails, upload limits, the token, freshness, missing files."""
from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from facesearch import FaceSearch  # noqa: E402
from facesearch.server import create_app  # noqa: E402
from facesearch.server.app import is_loopback  # noqa: E402
from facesearch.settings import Settings  # noqa: E402
from facesearch.spec import REGIONS  # noqa: E402
from tests.conftest import INDEX_PHOTOS, copy_photos  # noqa: E402

PHOTOS = INDEX_PHOTOS[:5] + ("032591.jpg",)  # the last one shows two people


@pytest.fixture(scope="module")
def served(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(client, FaceSearch, photo folder) over an index of PHOTOS made for this module."""
    root = tmp_path_factory.mktemp("served")
    copy_photos(data_dir, PHOTOS, root / "photos")
    fs = FaceSearch(root / "index")
    fs.index([root / "photos"])
    with TestClient(create_app(search=fs)) as client:
        yield client, fs, root / "photos"
    fs.close()


def _jpeg(path: Path) -> bytes:
    return path.read_bytes()


def test_the_page_its_script_and_the_api_docs_are_served(served) -> None:
    client, _, _ = served
    page = client.get("/")
    assert page.status_code == 200 and 'id="text"' in page.text and "/static/app.js" in page.text
    assert "fetch(" in client.get("/static/app.js").text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "http" not in docs.text.replace("http-equiv", "")  # offline
    assert "SwaggerUIBundle" in client.get("/static/docs/swagger-ui-bundle.js").text
    assert client.get("/static/docs/swagger-ui.css").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/faces/{face_id}/thumbnail", "/api/photos/{photo_id}/image"} <= set(paths)
    # images are asked for by id only: no request takes a file path
    names = {p["name"] for ops in paths.values() for op in ops.values() for p in op.get("parameters", [])}
    assert "path" not in names


def test_info(served) -> None:
    client, fs, _ = served
    info = client.get("/api/info").json()
    assert info["faces"] == fs.store.counts()[1] >= len(PHOTOS)
    assert info["regions"] == list(REGIONS) and set(info["region_colors"]) == set(REGIONS)


def test_text_query_says_why_faces_match(served) -> None:
    client, _, _ = served
    answer = client.get("/api/search", params={"text": "black hair, smiling", "k": 3}).json()
    assert len(answer["hits"]) == 3
    assert "Black_Hair" in answer["understood"]["understood"]
    for rank, hit in enumerate(answer["hits"], start=1):
        assert hit["rank"] == rank and set(hit["regions"]) == set(REGIONS)
        assert set(hit["fits"]) == {"Black_Hair", "Smiling"} and "age" in hit["summary"]
    scores = [hit["score"] for hit in answer["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_photo_query_finds_that_photo_first_and_mixed_queries_work(served) -> None:
    client, _, photos = served
    photo = photos / PHOTOS[0]
    answer = client.post("/api/search", files={"image": ("q.jpg", _jpeg(photo), "image/jpeg")},
                         data={"k": "4"}).json()
    best = answer["hits"][0]
    assert best["path"].endswith(PHOTOS[0]) and best["score"] > 6.5  # the same face: ~7
    assert answer["understood"] is None
    mixed = client.post("/api/search", files={"image": ("q.jpg", _jpeg(photo), "image/jpeg")},
                        data={"k": "4", "text": "blond hair"}).json()
    assert mixed["understood"]["terms"][0]["name"] == "Blond_Hair" and len(mixed["hits"]) == 4


def test_region_weights_and_one_region(served) -> None:
    client, _, photos = served
    image = {"image": ("q.jpg", _jpeg(photos / PHOTOS[1]), "image/jpeg")}
    hair = client.post("/api/search", files=image, data={"k": "5", "region": "hair"}).json()["hits"]
    in_url = client.post("/api/search?k=3&match=person", files=image)  # refused, not ignored
    assert in_url.status_code == 400 and in_url.json()["detail"].endswith("not in the URL: k, match")
    assert all(abs(hit["score"] - hit["regions"]["hair"]) < 1e-3 for hit in hair)
    weighted = client.post("/api/search", files=image,
                           data={"k": "5", "weights": "hair=2,background=0"}).json()["hits"]
    for hit in weighted:
        expected = sum(v for name, v in hit["regions"].items() if name != "background") + hit["regions"]["hair"]
        assert abs(hit["score"] - expected) < 2e-3


def test_filters_and_their_errors(served) -> None:
    client, _, _ = served
    hits = client.get("/api/search", params={"text": "smiling", "where": "age < 200", "k": 2}).json()["hits"]
    assert len(hits) == 2
    nothing = client.get("/api/search", params={"text": "smiling", "where": "age > 500"}).json()
    assert nothing["hits"] == []
    bad = client.get("/api/search", params={"text": "smiling", "where": "hair_colour = 3"})
    assert bad.status_code == 400 and "hair_colour" in bad.json()["detail"]
    assert client.get("/api/search", params={"text": "smiling", "weights": "hair=lots"}).status_code == 400
    zero = client.get("/api/search", params={"text": "smiling", "k": 0})  # FastAPI's check, our shape
    assert zero.status_code == 422 and zero.json() == {"detail": "k: Input should be greater than or equal to 1"}
    assert client.get("/api/faces/abc").json()["detail"].startswith("face_id: ")
    empty = client.get("/api/search")
    assert empty.status_code == 400 and empty.json()["detail"].startswith("give an image, a text")
    browsed = client.get("/api/search", params={"where": "age < 200", "k": 3}).json()  # a filter alone
    assert len(browsed["hits"]) == 3 and browsed["understood"] is None


def test_faces_photos_and_cached_thumbnails_by_id(served) -> None:
    client, fs, _ = served
    hit = client.get("/api/search", params={"text": "smiling", "k": 1}).json()["hits"][0]
    face = client.get(f"/api/faces/{hit['face_id']}").json()
    assert face["bbox"] == hit["bbox"] and face["missing"] is False
    photo = client.get(f"/api/photos/{face['photo_id']}").json()
    assert face["face_id"] in [f["face_id"] for f in photo["faces"]] and photo["width"] > 0
    thumb = client.get(f"/api/faces/{hit['face_id']}/thumbnail")
    assert thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (160, 160)
    cached = list((fs.index_dir / "thumbnails").glob(f"{hit['face_id']}-*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == thumb.content
    assert client.get(f"/api/faces/{hit['face_id']}/thumbnail").content == thumb.content
    picture = Image.open(io.BytesIO(client.get(f"/api/photos/{face['photo_id']}/image").content))
    assert max(picture.size) <= 1600
    for url in ("/api/faces/999999", "/api/faces/999999/thumbnail", "/api/photos/999999",
                "/api/photos/999999/image", "/api/faces/999999/similar"):
        assert client.get(url).status_code == 404, url
    assert client.get("/api/photos/..%2F..%2Fetc%2Fpasswd/image").status_code in (404, 422)


def test_a_photo_with_two_faces_and_more_like_each(served) -> None:
    client, fs, photos = served
    stored = fs.store.photo_by_path(photos / "032591.jpg")
    photo = client.get(f"/api/photos/{stored.id}").json()
    assert len(photo["faces"]) >= 2
    for face in photo["faces"][:2]:
        # the face itself (score about 7: its own regions) is left out of its similar faces
        itself = fs.more_like_face(face["face_id"], k=4)
        assert itself[0].face_id == face["face_id"] and itself[0].score > 6.5
        hits = client.get(f"/api/faces/{face['face_id']}/similar", params={"k": 3}).json()["hits"]
        assert [hit["face_id"] for hit in hits] == [hit.face_id for hit in itself[1:]]


def test_uploads_are_limited_and_must_be_photos(served, tmp_path: Path) -> None:
    client, fs, photos = served
    not_image = client.post("/api/search", files={"image": ("notes.txt", b"hello", "text/plain")})
    assert not_image.status_code == 400 and "notes.txt" in not_image.json()["detail"]
    assert "upload" not in not_image.json()["detail"].replace("notes.txt", "")  # no temp path shown
    small = Settings(index_dir=fs.index_dir, upload_max_bytes=10_000)
    with TestClient(create_app(small)) as limited:
        big = limited.post("/api/search", files={"image": ("q.jpg", b"\xff" * 200_000, "image/jpeg")})
        assert big.status_code == 413 and "too large" in big.json()["detail"]
        # under the body limit (which allows for form fields) but over the photo limit
        near = limited.post("/api/search", files={"image": ("q.jpg", b"\xff" * 20_000, "image/jpeg")})
        assert near.status_code == 400 and "too large" in near.json()["detail"]


def test_a_token_guards_everything_but_static_files(served) -> None:
    _, fs, _ = served
    with TestClient(create_app(search=fs, token="s3cret")) as client:
        assert client.get("/api/info").status_code == 401
        assert client.get("/").status_code == 401
        assert client.get("/api/info", headers={"X-Facesearch-Token": "wrong"}).status_code == 401
        assert client.get("/static/style.css").status_code == 200
        assert client.get("/api/info", headers={"X-Facesearch-Token": "s3cret"}).status_code == 200
        assert client.get("/?token=s3cret").status_code == 200  # the page keeps it in a cookie
        assert client.get("/api/info").status_code == 200


def test_loopback_hosts() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")


def test_a_running_server_sees_another_process_index_and_marks_missing_files(
        data_dir: Path, tmp_path: Path) -> None:
    photos = copy_photos(data_dir, INDEX_PHOTOS[:2], tmp_path / "photos")
    FaceSearch(tmp_path / "index").index([tmp_path / "photos"])
    fs = FaceSearch(tmp_path / "index")
    with TestClient(create_app(search=fs)) as client:
        before = client.get("/api/info").json()["faces"]
        assert len(client.get("/api/search", params={"text": "smiling", "k": 50}).json()["hits"]) == before
        copy_photos(data_dir, INDEX_PHOTOS[2:4], tmp_path / "photos")
        with FaceSearch(tmp_path / "index") as other:  # another writer, as `facesearch index` is
            other.index([tmp_path / "photos"])
        after = client.get("/api/info").json()["faces"]
        assert after > before
        assert len(client.get("/api/search", params={"text": "smiling", "k": 50}).json()["hits"]) == after
        # a photo deleted after indexing: its hits say so, its images are 404, nothing breaks
        gone = photos[0]
        stored = fs.store.photo_by_path(gone)
        gone.unlink()
        assert client.get(f"/api/photos/{stored.id}").json()["missing"] is True
        face_id = stored.faces[0].id
        assert client.get(f"/api/faces/{face_id}").json()["missing"] is True
        assert client.get(f"/api/faces/{face_id}/thumbnail").status_code == 404
        assert client.get(f"/api/photos/{stored.id}/image").status_code == 404
    fs.close()


def test_serve_refuses_a_missing_index(facesearch_command: list[str], tmp_path: Path) -> None:
    done = subprocess.run([*facesearch_command, "serve", "--index", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: no index at"), done.stderr


def test_serve_on_all_interfaces_prints_and_requires_a_token(served, facesearch_command: list[str]) -> None:
    import socket
    import time

    import httpx

    _, fs, _ = served
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([*facesearch_command, "serve", "--index", str(fs.index_dir),
                               "--host", "0.0.0.0", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert f":{port}/?token=" in line, line + server.stderr.read() if server.poll() is not None else line
        token = line.strip().rsplit("?token=", 1)[1]
        assert len(token) >= 20
        url = f"http://127.0.0.1:{port}/api/info"
        for _ in range(100):
            try:
                refused = httpx.get(url)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert refused.status_code == 401
        assert httpx.get(url, headers={"X-Facesearch-Token": token}).status_code == 200
    finally:
        server.terminate()
        server.wait(20)


# --- persons, the person filter and match modes -------------------------------------------------
#: Aligned CelebA validation identities (the same-person calibration never saw them), 3 photos
#: each: enough for `facesearch index` to make each a person (Settings.people_min_faces).
ALICE, BOB = 985, 1731


@pytest.fixture(scope="module")
def people_index(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An index of 3 photos of ALICE and 3 of BOB, made once; tests that change it copy it."""
    from test_identity import _by_identity, _copy_aligned

    by_identity = _by_identity(data_dir)
    folder = tmp_path_factory.mktemp("people-photos")
    owner = {str(path): who for who in (ALICE, BOB)
             for path in _copy_aligned(data_dir, by_identity[who][:3], folder)}
    index_dir = tmp_path_factory.mktemp("people-served") / "index"
    with FaceSearch(index_dir) as fs:
        fs.index([folder])
    return {"index": index_dir, "owner": owner}


@pytest.fixture
def people_client(people_index: dict, tmp_path: Path):
    """(client, {identity: person id}, owner) over a private copy of the people index."""
    import shutil

    index_dir = Path(shutil.copytree(people_index["index"], tmp_path / "index"))
    fs = FaceSearch(index_dir)
    with TestClient(create_app(search=fs)) as client:
        found = client.get("/api/people").json()["people"]
        ids = {people_index["owner"][person["faces"][0]["path"]]: person["id"] for person in found}
        yield client, ids, people_index["owner"]
    fs.close()


def test_people_are_listed_with_a_cover_face_and_a_count(people_client) -> None:
    client, ids, owner = people_client
    found = client.get("/api/people").json()["people"]
    assert sorted(ids) == [ALICE, BOB] and [person["count"] for person in found] == [3, 3]
    for person in found:
        assert person["name"] is None and person["cover"] == person["faces"][0]["face_id"]
        assert {owner[face["path"]] for face in person["faces"]} == {owner[person["faces"][0]["path"]]}
        cover = client.get(f"/api/faces/{person['cover']}/thumbnail")
        assert cover.status_code == 200 and cover.headers["content-type"] == "image/jpeg"
    assert {"/api/people", "/api/people/{person_id}", "/api/people/{person_id}/merge"} <= set(
        client.get("/openapi.json").json()["paths"])
    assert client.get("/people").status_code == 200 and 'id="people-view"' in client.get("/people").text


def test_renaming_a_person_shows_on_hits_and_bad_names_are_one_line_400s(people_client) -> None:
    client, ids, _ = people_client
    renamed = client.post(f"/api/people/{ids[ALICE]}", json={"name": "  Alice "})
    assert renamed.status_code == 200 and renamed.json() == {"id": ids[ALICE], "name": "Alice"}
    names = {p["id"]: p["name"] for p in client.get("/api/people").json()["people"]}
    assert names == {ids[ALICE]: "Alice", ids[BOB]: None}
    hits = client.get("/api/search", params={"where": "age < 200", "k": 6}).json()["hits"]
    assert sorted(str(hit["person"]) for hit in hits) == sorted(
        [str({"id": ids[ALICE], "name": "Alice"})] * 3 + [str({"id": ids[BOB], "name": None})] * 3)
    taken = client.post(f"/api/people/{ids[BOB]}", json={"name": "Alice"})
    assert taken.status_code == 400
    assert taken.json()["detail"] == (f"person {ids[ALICE]} is already called 'Alice': "
                                      f"`facesearch people merge {ids[ALICE]} {ids[BOB]}` joins them")
    empty = client.post(f"/api/people/{ids[BOB]}", json={"name": "  "})
    assert empty.status_code == 400 and empty.json()["detail"] == "a person's name cannot be empty"
    unknown = client.post("/api/people/99999", json={"name": "Carol"})
    assert unknown.status_code == 400 and unknown.json()["detail"].startswith("there is no person 99999")
    assert client.post(f"/api/people/{ids[BOB]}", json={}).status_code == 422
    assert {p["id"]: p["name"] for p in client.get("/api/people").json()["people"]} == names


def test_renaming_needs_the_token_when_the_server_has_one(people_client) -> None:
    client, ids, _ = people_client
    fs = client.app.state.search
    with TestClient(create_app(search=fs, token="s3cret")) as guarded:
        assert guarded.get("/api/people").status_code == 401
        refused = guarded.post(f"/api/people/{ids[BOB]}", json={"name": "Bob"})
        assert refused.status_code == 401
        assert all(p["name"] is None for p in client.get("/api/people").json()["people"])
        done = guarded.post(f"/api/people/{ids[BOB]}", json={"name": "Bob"},
                            headers={"X-Facesearch-Token": "s3cret"})
        assert done.status_code == 200
    assert {p["name"] for p in client.get("/api/people").json()["people"]} == {"Bob", None}


def test_the_person_filter_by_id_or_name(people_client) -> None:
    client, ids, owner = people_client
    client.post(f"/api/people/{ids[BOB]}", json={"name": "Bob"})
    for person in (str(ids[BOB]), "Bob"):
        hits = client.get("/api/search", params={"person": person, "k": 10}).json()["hits"]
        assert len(hits) == 3 and {owner[hit["path"]] for hit in hits} == {BOB}
        assert all(hit["person"] == {"id": ids[BOB], "name": "Bob"} for hit in hits)
    smiling = client.get("/api/search", params={"person": "Bob", "text": "smiling", "k": 10}).json()
    assert {owner[hit["path"]] for hit in smiling["hits"]} == {BOB} and smiling["understood"]
    unknown = client.get("/api/search", params={"person": "Zed"})
    assert unknown.status_code == 400 and unknown.json()["detail"].startswith("no person is called 'Zed'")


def test_match_modes_of_a_photo_and_their_errors(people_client) -> None:
    client, _, owner = people_client
    query = next(path for path, who in owner.items() if who == ALICE)
    image = {"image": ("q.jpg", Path(query).read_bytes(), "image/jpeg")}
    same = client.post("/api/search", files=image, data={"k": "6", "match": "person"}).json()["hits"]
    assert [owner[hit["path"]] for hit in same[:3]] == [ALICE] * 3
    assert all(hit["same_person"] > 0.5 for hit in same[:3]) and same[0]["path"] == query
    alike = client.post("/api/search", files=image, data={"k": "6", "match": "look-alike"}).json()["hits"]
    assert alike and all(hit["same_person"] < 0.5 and owner[hit["path"]] == BOB for hit in alike)
    default = client.post("/api/search", files=image, data={"k": "6"}).json()["hits"]
    assert [owner[hit["path"]] for hit in default] == [ALICE] * 3 + [BOB] * 3
    face_id = same[0]["face_id"]
    liked = client.get(f"/api/faces/{face_id}/similar", params={"k": 6, "match": "look-alike"}).json()["hits"]
    assert [hit["face_id"] for hit in liked] == [hit["face_id"] for hit in alike]
    once = client.post("/api/search", files=image, data={"k": "6", "match": "look-alike",
                                                          "one_per_person": "true"}).json()["hits"]
    assert once and once[0]["face_id"] == alike[0]["face_id"] and len(once) < len(alike)  # Bob once
    refused = client.post("/api/search", files=image, data={"one_per_person": "true"})
    assert refused.status_code == 400 and refused.json()["detail"].startswith(
        "one_per_person applies to look-alike mode")
    twin = client.post("/api/search", files=image, data={"match": "twin"})
    assert twin.status_code == 400
    assert twin.json()["detail"] == "unknown match mode 'twin': use one of default, person, look-alike"
    text = client.get("/api/search", params={"text": "smiling", "match": "person"})
    assert text.status_code == 400 and "applies to image queries" in text.json()["detail"]
    strict = client.post("/api/search", files=image, data={"k": "6", "min_same_person": "0.5"}).json()["hits"]
    assert [owner[hit["path"]] for hit in strict] == [ALICE] * 3
    assert all(hit["same_person"] >= 0.5 for hit in strict)
    wrong = client.post("/api/search", files=image, data={"min_same_person": "1.5"})
    assert wrong.status_code == 400  # in the API's words, not the command line's flags
    assert wrong.json()["detail"] == "min_same_person must be a probability between 0 and 1 (got 1.5)"


def test_merging_two_people(people_client) -> None:
    client, ids, _ = people_client
    client.post(f"/api/people/{ids[BOB]}", json={"name": "Bob"})
    merged = client.post(f"/api/people/{ids[ALICE]}/merge", json={"other": ids[BOB]})
    assert merged.status_code == 200 and merged.json() == {"id": ids[ALICE], "name": "Bob", "count": 6}
    found = client.get("/api/people").json()["people"]
    assert [(p["id"], p["count"]) for p in found] == [(ids[ALICE], 6)]
    itself = client.post(f"/api/people/{ids[ALICE]}/merge", json={"other": ids[ALICE]})
    assert itself.status_code == 400 and itself.json()["detail"] == "a person cannot be merged with itself"
