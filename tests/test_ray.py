"""Indexing on a Ray cluster (index/distributed.py) gives the index a single process gives.

The cluster: conftest's `ray_address`, a head node and a worker node on this machine
(tests/ray_cluster.py; .ci/run starts it and sets $FACESEARCH_TEST_RAY_ADDRESS, else the fixture
starts one); when Ray is not installed or no cluster starts, these tests are skipped, saying why.
The single-process index is conftest's shared one (built_index: 12 wild photos, 13 faces).
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import BuiltIndex

from facesearch import FaceSearch, FaceSearchError, Settings
from facesearch.index.distributed import RayDescriber, connect
from facesearch.index.spaces import MASTER
from facesearch.spec import IDENTITY

#: Float tolerance between the two runs' vectors (unit-norm blocks; stored as float16 in SQL).
TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def ray_index(built_index: BuiltIndex, ray_address: str, tmp_path_factory: pytest.TempPathFactory):
    """built_index's photos indexed again, described by the cluster's actors."""
    fs = FaceSearch(tmp_path_factory.mktemp("ray_index") / "index",
                    settings=Settings(ray_address=ray_address))
    report = fs.index([built_index.db])
    yield fs, report
    fs.close()


@pytest.fixture(scope="module")
def on_ray(ray_address: str):
    """Two actors on the cluster (one a node), started once for the tests that stream to them;
    the lost-worker test, last of them, kills one."""
    with RayDescriber(Settings(), ray_address, workers=2) as describer:
        yield describer


def _faces(fs: FaceSearch) -> dict[str, list[dict]]:
    """Per stored photo path: its faces (box, landmarks, attributes, vector in each space)."""
    found: dict[str, list[dict]] = {}
    for listed in fs.store.photos():
        photo = fs.store.photo_by_path(listed.path)  # with its faces
        faces = []
        for face in sorted(photo.faces, key=lambda face: face.face_index):
            faces.append({"box": [face.x0, face.y0, face.x1, face.y1], "landmarks": face.landmarks,
                          "attributes": face.attributes,
                          **{name: fs.spaces[name].reconstruct([face.vector_id])[0]
                             for name in (MASTER, IDENTITY)}})
        found[photo.path] = faces
    return found


def test_ray_index_matches_single_process(built_index: BuiltIndex, ray_index) -> None:
    fs, report = ray_index
    assert (report.indexed, report.faces, report.failed) == (
        built_index.report.indexed, built_index.report.faces, [])
    assert report.faces >= 13  # 12 photos, one with two people
    single, distributed = _faces(built_index.fs), _faces(fs)
    assert sorted(single) == sorted(distributed)
    for path, faces in single.items():
        theirs = distributed[path]
        assert len(faces) == len(theirs), path
        for mine, other in zip(faces, theirs):
            np.testing.assert_allclose(mine["box"], other["box"], atol=0.5)
            np.testing.assert_allclose(mine["landmarks"], other["landmarks"], atol=0.5)
            for name in (MASTER, IDENTITY):
                np.testing.assert_allclose(mine[name], other[name], atol=TOLERANCE)
            assert mine["attributes"].keys() == other["attributes"].keys()
            for key, value in mine["attributes"].items():
                assert abs(value - other["attributes"][key]) <= (0.05 if key == "age" else TOLERANCE), (
                    path, key, value, other["attributes"][key])
    # the SQL copy of every vector too (the source of truth the FAISS files are rebuilt from)
    for name in (MASTER, IDENTITY):
        ids_a, vectors_a = built_index.fs.store.stored_vectors(name, fs.spaces[name].dim)
        ids_b, vectors_b = fs.store.stored_vectors(name, fs.spaces[name].dim)
        assert len(ids_a) == len(ids_b) == report.faces
        order_a = [built_index.fs.store.photos_of_vectors(name, [i]) for i in ids_a]
        order_b = [fs.store.photos_of_vectors(name, [i]) for i in ids_b]
        assert order_a == order_b
        np.testing.assert_allclose(vectors_a, vectors_b, atol=TOLERANCE)


@pytest.mark.parametrize("match", ["default", "person", "look-alike"])
def test_ray_index_gives_the_same_hits(built_index: BuiltIndex, ray_index, match: str) -> None:
    fs, _ = ray_index
    query = built_index.photos[3]
    single = built_index.fs.query(image=query, k=8, match=match)
    distributed = fs.query(image=query, k=8, match=match)
    assert len(single) == len(distributed) > 0
    assert [(hit.path, hit.bbox) for hit in single] == [(hit.path, hit.bbox) for hit in distributed]
    np.testing.assert_allclose([hit.score for hit in single], [hit.score for hit in distributed],
                               atol=5e-3)
    texts = [[hit.path for hit in index.query(text="black hair, smiling", k=5)]
             for index in (built_index.fs, fs)]
    assert texts[0] == texts[1]


def test_unreachable_cluster_is_one_line(tmp_path: Path, built_index: BuiltIndex,
                                         facesearch_command: list[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray", reason="Ray tests need Ray: pip install -e '.[ray]'")
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
        with pytest.raises(FaceSearchError, match=r"needs Ray: pip install 'facesearch\[ray\]'"):
            connect("127.0.0.1:9")
    with pytest.raises(FaceSearchError, match="cannot be reached"):
        connect("127.0.0.1:9")  # the discard port: nothing listens there
    with pytest.raises(FaceSearchError, match="HOST:PORT"):
        connect("no-port-here")
    started = time.monotonic()
    done = subprocess.run([*facesearch_command, "index", str(built_index.db), "--index",
                           str(tmp_path / "index"), "--ray", "127.0.0.1:9", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: Ray cluster at 127.0.0.1:9 cannot be reached (Connection refused); is "
        "`ray start --head` running there?"]
    assert time.monotonic() - started < 60


def test_auto_starts_ray_on_this_machine(tmp_path: Path, built_index: BuiltIndex,
                                         facesearch_command: list[str]) -> None:
    """`--ray auto` with no cluster on this machine: a Ray for this run, stopped at its end."""
    pytest.importorskip("ray", reason="Ray tests need Ray: pip install -e '.[ray]'")
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(built_index.photos)[:2]:
        (photos / path.name).symlink_to(path)
    ray_root = Path(tempfile.mkdtemp(prefix="fs-ray-"))  # short: Ray's socket paths must fit
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("RAY_ADDRESS", "FACESEARCH_RAY") and not key.startswith("RAY_AUTH")}
    # Ray's files (and the token a new Ray makes) in a folder of its own, not /tmp/ray and ~/.ray
    environment |= {"RAY_TMPDIR": str(ray_root), "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN_PATH": str(ray_root / "auth_token")}
    (ray_root / "auth_token").write_text(secrets.token_hex(32))
    try:
        done = subprocess.run([*facesearch_command, "index", str(photos), "--index",
                               str(tmp_path / "index"), "--ray", "auto", "-q"],
                              capture_output=True, text=True, timeout=300, env=environment)
    finally:
        shutil.rmtree(ray_root, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 photos: 2 indexed (2 faces"), done.stdout
    with FaceSearch(tmp_path / "index") as fs:
        assert len(fs.spaces[MASTER]) == len(fs.spaces[IDENTITY]) == 2


def test_a_video_is_described_on_ray_as_here(data_dir: Path, built_index: BuiltIndex,
                                             describer: FaceSearch, on_ray: RayDescriber) -> None:
    """A video is one item like a photo: an actor describes it whole (its faces are tracks)."""
    video = data_dir / "video" / "talking_d0.mp4"
    if not video.is_file():
        pytest.skip(f"no video clip at {video}")
    items = [video, sorted(built_index.photos)[0]]
    here = list(describer.describer.stream(items))
    there = list(on_ray.stream(items))
    assert [type(outcome) for outcome in there] == [tuple, tuple]
    for (size, faces), (their_size, theirs) in zip(here, there):
        assert size == their_size and len(faces) == len(theirs) > 0
        for face, their in zip(faces, theirs):
            assert face.track == their.track
            np.testing.assert_allclose(face.vector, their.vector, atol=TOLERANCE)
            np.testing.assert_allclose(face.identity, their.identity, atol=TOLERANCE)
    assert there[0][1][0].track is not None and there[1][1][0].track is None


def test_actors_run_on_both_nodes_and_survive_a_lost_worker(built_index: BuiltIndex, ray_index,
                                                            on_ray: RayDescriber) -> None:
    """Two actors, one per node. One actor's process is killed mid-stream (Ray restarts it),
    then, in a second stream, killed for good (as when its machine is lost): either way its
    chunks are described again by the other, and every photo comes back in order with the
    faces the index holds."""
    import ray

    fs, _ = ray_index
    paths = sorted(built_index.photos)
    expected = _faces(fs)

    def check(outcomes: list) -> None:
        assert len(outcomes) == len(paths)
        for path, outcome in zip(paths, outcomes):
            assert not isinstance(outcome, Exception), outcome
            size, faces = outcome
            stored = expected[str(path)]
            assert len(faces) == len(stored)
            for face, row in zip(faces, stored):
                np.testing.assert_allclose(face.bbox, row["box"], atol=0.5)
                np.testing.assert_allclose(face.vector, row[MASTER], atol=TOLERANCE)
                np.testing.assert_allclose(face.identity, row[IDENTITY], atol=TOLERANCE)

    def stream_killing(describer: RayDescriber, victim, restart: bool) -> list:
        outcomes = []
        for number, outcome in enumerate(describer.stream(paths)):
            if number == 0:  # the other chunks are in flight: the victim's process dies
                ray.kill(victim, no_restart=not restart)
            outcomes.append(outcome)
        return outcomes

    nodes = on_ray.start()
    assert len(nodes) == 2 and len(set(nodes)) == 2  # the head node and the worker node
    victim = on_ray._actors[1]
    pid = ray.get(victim.__ray_call__.remote(lambda _: os.getpid()))
    check(stream_killing(on_ray, victim, restart=True))
    assert ray.get(victim.__ray_call__.remote(lambda _: os.getpid())) != pid  # restarted
    check(stream_killing(on_ray, victim, restart=False))
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(victim.ready.remote())  # it was gone: the other actor did its share
