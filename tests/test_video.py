"""Video: faces found, tracked and searched in the shared clips (../shared/data/video).

short_hamilton_clip.mp4 (640x360, 9.2 s): a wide shot (0-1 s), a profile of another man, the
audience, then one man speaking into a microphone (about 3.0-7.0 s), then the audience again;
lin-manuel-miranda.png is the speaker. alex-lacamoire.png is in the clip too, but not the
speaker: he is the pianist of the first 1.5 s (at 2 frames a second, two short tracks, same_person
1.00 and 0.79 with his photo; the speaker's track 0.00). talking_d0.mp4 (3.1 s) shows one person
throughout. The index is built once, at 2 frames a second (the default).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from clitools import run
from PIL import Image

from facesearch import FaceSearch, FaceSearchError
from facesearch.pipeline.tracking import frontality
from facesearch.pipeline.video import frame_at, probe
from facesearch.settings import Settings
from facesearch.spec import REGION_DIM, unit_mean

#: The speaker's shot in short_hamilton_clip.mp4, seconds (README of the data; checked by eye).
SPEAKER = (3.0, 7.0)


@pytest.fixture(scope="module")
def video_dir(data_dir: Path) -> Path:
    folder = data_dir / "video"
    if not (folder / "short_hamilton_clip.mp4").is_file():
        pytest.skip(f"no video clips at {folder}")
    return folder


@pytest.fixture(scope="module")
def indexed(video_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    clips = tmp_path_factory.mktemp("clips")
    for name in ("short_hamilton_clip.mp4", "talking_d0.mp4"):
        shutil.copy(video_dir / name, clips / name)
    fs = FaceSearch(tmp_path_factory.mktemp("index"), settings=Settings(video_fps=2.0))
    report = fs.index([clips])
    yield fs, clips, report
    fs.close()


def _tracks(fs: FaceSearch, path: Path) -> list[dict]:
    photo = fs.store.photo_by_path(path)
    assert photo is not None and photo.media == "video"
    return [fs.face(face.id) for face in photo.faces]


def test_videos_are_indexed_as_tracks_with_times(indexed) -> None:
    fs, clips, report = indexed
    assert report.photos == 2 and report.videos == 2 and not report.failed, report.summary()
    assert "0 photos and 2 videos: 2 indexed" in report.summary()
    info = fs.info()  # counted as the run said: a video is not a photo
    assert (info["photos"], info["videos"]) == (0, 2)
    talking = _tracks(fs, clips / "talking_d0.mp4")
    assert len(talking) == 1  # one person, visible throughout: one track
    assert talking[0]["start"] == 0.0 and talking[0]["end"] >= 2.5
    assert talking[0]["start"] <= talking[0]["time"] <= talking[0]["end"]
    tracks = _tracks(fs, clips / "short_hamilton_clip.mp4")
    assert [t["track_id"] for t in tracks] == list(range(1, len(tracks) + 1))
    assert all(t["media"] == "video" and t["start"] <= t["time"] <= t["end"] <= 9.3 for t in tracks)
    # the speaker stays one track for his whole shot (4 s, 9 sampled frames)
    during = [t for t in tracks if t["start"] < SPEAKER[1] - 0.5 and t["end"] > SPEAKER[0] + 0.5]
    assert len(during) == 1, during
    assert abs(during[0]["start"] - SPEAKER[0]) <= 0.6 and abs(during[0]["end"] - SPEAKER[1]) <= 0.6
    assert fs.store.photo_by_path(clips / "short_hamilton_clip.mp4").duration == pytest.approx(9.2, abs=0.9)


def test_a_photo_of_the_speaker_finds_his_track_at_the_right_time(indexed, video_dir: Path) -> None:
    fs, clips, _ = indexed
    hits = fs.query(image=video_dir / "lin-manuel-miranda.png", k=3, match="person")
    top = hits[0]
    assert Path(top.path).name == "short_hamilton_clip.mp4" and top.media == "video"
    assert SPEAKER[0] - 0.5 <= top.start <= top.time <= top.end <= SPEAKER[1] + 0.5
    assert top.same_person is not None and top.same_person >= 0.5
    as_json = top.to_dict()
    assert {"media", "track_id", "start", "end", "time"} <= set(as_json)
    other = fs.query(image=video_dir / "alex-lacamoire.png", k=10, match="person")
    assert all(hit.same_person < 0.5 for hit in other if hit.track_id == top.track_id
               and hit.path == top.path)


def test_a_person_seen_in_a_photo_and_a_video_lists_the_track_with_its_times(
        video_dir: Path, tmp_path: Path, facesearch_command) -> None:
    """People group a video's tracks with a photo of the same man (HDBSCAN alone found no
    person: one group among strangers is its tree's root, which it never selects);
    `people --json` gives the tracks' times (they were missing)."""
    folder = tmp_path / "media"
    folder.mkdir()
    shutil.copy(video_dir / "short_hamilton_clip.mp4", folder)
    shutil.copy(video_dir / "lin-manuel-miranda.png", folder)
    index = tmp_path / "index"
    with FaceSearch(index, settings=Settings(video_fps=2.0)) as fs:  # a person: 3 faces or more
        fs.index([folder])  # the speaker: the photo and two tracks, among 5 other faces
    done = run(facesearch_command, "people", "--index", index, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    persons = listed if isinstance(listed, list) else listed["people"]
    speaker = [p for p in persons if any(Path(f["path"]).suffix == ".png" for f in p["faces"])]
    assert len(speaker) == 1, persons
    photos = [f for f in speaker[0]["faces"] if f["media"] == "photo"]
    tracks = [f for f in speaker[0]["faces"] if f["media"] == "video"]
    assert len(photos) == 1 and "track_id" not in photos[0] and len(tracks) >= 1
    assert all(t["start"] <= t["time"] <= t["end"] for t in tracks)
    assert any(SPEAKER[0] - 0.5 <= t["start"] and t["end"] <= SPEAKER[1] + 0.5 for t in tracks)


def test_a_face_cropped_from_a_frame_finds_its_track(indexed) -> None:
    fs, clips, _ = indexed
    frame = frame_at(clips / "short_hamilton_clip.mp4", 5.0)
    face = fs.describe(frame.pixels)[0]
    x0, y0, x1, y1 = (int(v) for v in face.bbox)
    pad = (x1 - x0) // 2
    crop = frame.pixels[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad].copy()
    top = fs.query(image=crop, k=1, match="person")[0]
    assert Path(top.path).name == "short_hamilton_clip.mp4"
    assert top.start <= 5.0 <= top.end


def test_text_queries_reach_video_faces(indexed) -> None:
    fs, _, _ = indexed
    hits = fs.query(text="a man", k=3)
    assert hits and all(hit.media == "video" and hit.track_id is not None for hit in hits)


def test_thumbnails_show_the_best_frame(indexed) -> None:
    fs, clips, _ = indexed
    track = _tracks(fs, clips / "talking_d0.mp4")[0]
    data = fs.face_thumbnail(track["face_id"])
    assert data is not None and data[:2] == b"\xff\xd8"
    assert fs.photo_image(track["photo_id"], time=track["time"])[:2] == b"\xff\xd8"


def test_describe_lists_tracks_with_times(video_dir: Path, tmp_path: Path, facesearch_command) -> None:
    done = run(facesearch_command, "describe", video_dir / "talking_d0.mp4", "--out", tmp_path / "o.png",
               cwd=tmp_path, env={"FACESEARCH_VIDEO_FPS": "1"})
    assert done.returncode == 0, done.stderr
    assert "face 0:" in done.stdout and "video track 1: 0.0-3.0 s, shown at" in done.stdout
    # the overlay draws one frame: which one is said in the output and on the picture (a label
    # in white on black at its top left)
    shown = done.stdout.split("shown at ")[1].split(" s")[0]
    assert f"overlay: {tmp_path / 'o.png'} (video frame at {shown} s, track 1's best)" in done.stdout
    corner = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))[:24, :150]
    assert (corner == 0).all(axis=2).mean() > 0.5 and (corner == 255).all(axis=2).any()


def test_bad_videos_get_a_one_line_reason(video_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    whole = (video_dir / "short_hamilton_clip.mp4").read_bytes()
    (bad / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    with av.open(str(bad / "audio.mp4"), "w", format="mp4") as out:  # a sound track alone
        stream = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with av.open(str(video_dir / "short_hamilton_clip.mp4")) as given, \
            av.open(str(tmp_path / "fast.mp4"), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(given.streams.video[0])  # its index first, then data
        for packet in given.demux(given.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    with av.open(str(tmp_path / "mpeg4.avi"), "w") as out:  # its codec tag then made unknown
        stream = out.add_stream("mpeg4", rate=10, width=64, height=64, pix_fmt="yuv420p")
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 40 * i, np.uint8), format="rgb24")
            for packet in [*stream.encode(frame), *(stream.encode(None) if i == 4 else [])]:
                out.mux(packet)
    (bad / "codec.avi").write_bytes((tmp_path / "mpeg4.avi").read_bytes().replace(b"FMP4", b"ZQZQ"))
    fast = (tmp_path / "fast.mp4").read_bytes()
    (bad / "half.mp4").write_bytes(fast[: len(fast) // 2])
    with FaceSearch(tmp_path / "index") as fs:
        report = fs.index([bad])
    reasons = dict(report.failed)
    assert len(reasons) == 5 and all("\n" not in reason for reason in reasons.values()), reasons
    assert "truncated video: frames end at 4.4 s of 9.2 s" in reasons[str(bad / "half.mp4")]
    assert "empty file" in reasons[str(bad / "empty.mp4")]
    assert "truncated or damaged" in reasons[str(bad / "cut.mp4")]
    assert "no video stream (audio only)" in reasons[str(bad / "audio.mp4")]
    assert "unsupported video codec" in reasons[str(bad / "codec.avi")]
    assert "5 failed" in report.summary()


def test_a_changed_or_deleted_video_updates_its_tracks(video_dir: Path, tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = clips / "clip.mp4"
    shutil.copy(video_dir / "talking_d0.mp4", clip)
    with FaceSearch(tmp_path / "index", settings=Settings(video_fps=1.0)) as fs:
        assert fs.index([clips]).faces == 1
        first = fs.store.photo_by_path(clip).faces[0].vector_id
        whole = (video_dir / "short_hamilton_clip.mp4").read_bytes()
        clip.write_bytes(whole[: len(whole) // 3])  # changed, and now unreadable
        report = fs.index([clips])
        assert len(report.failed) == 1 and fs.store.counts() == (1, 0)
        shutil.copy(video_dir / "talking_d0.mp4", clip)
        assert fs.index([clips]).faces == 1 and fs.store.photo_by_path(clip).faces[0].vector_id != first
        clip.unlink()
        assert fs.index([clips]).removed == 1 and fs.store.counts() == (0, 0)


def test_probe_and_tracking_helpers(video_dir: Path) -> None:
    info = probe(video_dir / "crowd_walking.mp4")
    assert (info.width, info.height, info.codec) == (1920, 1080, "h264") and 4.0 < info.duration < 4.5
    blocks = np.random.default_rng(0).normal(size=(3, 7 * REGION_DIM)).astype(np.float32)
    mean = unit_mean(blocks, REGION_DIM).reshape(7, REGION_DIM)
    assert np.allclose(np.linalg.norm(mean, axis=1), 1.0, atol=1e-5)
    frontal = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], float)
    profile = frontal.copy()
    profile[2, 0] = 72
    assert frontality(frontal) == 1.0 and frontality(profile) == 0.0


def test_the_web_api_serves_video_hits_and_their_frames(indexed) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facesearch.server import create_app

    fs, clips, _ = indexed
    with TestClient(create_app(search=fs)) as client:
        hit = client.get("/api/search", params={"text": "a man", "k": 1}).json()["hits"][0]
        assert hit["media"] == "video" and hit["start"] <= hit["time"] <= hit["end"]
        photo = client.get(f"/api/faces/{hit['face_id']}").json()["photo_id"]
        described = client.get(f"/api/photos/{photo}").json()
        assert described["media"] == "video" and described["duration"] > 3
        frame = client.get(f"/api/photos/{photo}/image", params={"time": hit["time"]})
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
        assert client.get(f"/api/faces/{hit['face_id']}/thumbnail").content[:2] == b"\xff\xd8"


def test_a_killed_run_keeps_the_videos_it_committed_and_resumes(video_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from facesearch.index.indexer import IndexInterrupted
    from facesearch.pipeline.describer import Describer

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("short_hamilton_clip.mp4", "talking_d0.mp4"):  # described in this order
        shutil.copy(video_dir / name, clips / name)
    real = Describer.describe_video
    seen: list[str] = []

    def killed_on_the_second(self, path):
        seen.append(Path(path).name)
        if len(seen) == 2:
            raise KeyboardInterrupt
        return real(self, path)

    settings = Settings(video_fps=1.0, commit_every=1, checkpoint_seconds=0)
    with FaceSearch(tmp_path / "index", settings=settings) as fs:
        monkeypatch.setattr(Describer, "describe_video", killed_on_the_second)
        with pytest.raises(IndexInterrupted):
            fs.index([clips])
        monkeypatch.setattr(Describer, "describe_video", real)
        kept = fs.store.photo_by_path(clips / "short_hamilton_clip.mp4")
        assert kept is not None and kept.faces and fs.store.photo_by_path(clips / "talking_d0.mp4") is None
        report = fs.index([clips])
        assert (report.unchanged, report.indexed) == (1, 1)
        assert len(fs.store.photo_by_path(clips / "talking_d0.mp4").faces) == 1


def test_tracker_rules_on_made_up_frames() -> None:
    """pipeline.tracking's rules, on synthetic boxes and identity vectors (2 sampled frames a
    second): a face keeps its track while it moves; an unlike face in the same place starts a new
    one once the track missed a frame (a shot cut); the same person far away (beyond MAX_JUMP) is
    another track; the same person back within STITCH_GAP near where it left is joined."""
    from facesearch.pipeline.prepare import PreparedFace
    from facesearch.pipeline.tracking import VideoTracks

    rng = np.random.default_rng(1)
    alice, bob = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 512)))
    pixels = np.full((400, 800, 3), 128, np.uint8)

    def face(x: float) -> PreparedFace:
        box = np.array([x, 100, x + 80, 180], float)
        marks = np.array([[x + 25, 130], [x + 55, 130], [x + 40, 150], [x + 28, 165], [x + 52, 165]], float)
        return PreparedFace(bbox=box, landmarks=marks, score=0.9, crop=np.zeros((112, 96, 3), np.uint8),
                            masks=np.zeros((7, 112, 96), np.float32))

    tracks = VideoTracks(fps=2.0)
    frames = [(0.0, [(100, alice)]), (0.5, [(120, alice)]), (1.0, [(140, alice)]),
              (1.5, []), (2.0, [(150, bob)]),                  # a cut: Bob where Alice was
              (2.5, [(700, alice)]),                            # Alice, but 7 face sides away
              (3.0, []), (3.5, [(690, alice)])]                 # gone a moment, back near there
    for time, faces in frames:
        tracks.add(time, [face(x) for x, _ in faces], np.array([v for _, v in faces]).reshape(-1, 512),
                   pixels, 1.0)
    found = [(t.track_id, t.start, t.end, t.frames) for t in tracks.finish()]
    assert found == [(1, 0.0, 1.0, 3), (2, 2.0, 2.0, 1), (3, 2.5, 3.5, 2)], found


# --- trial edges (session 8): compare with a video, the same-person divider, /similar ---------
#: The pianist's tracks (alex-lacamoire.png) lie in the first 1.5 s of short_hamilton_clip.mp4
#: (its last sampled frame at 2 frames a second: 1.5 s, give or take a frame's timestamp).
PIANIST_END = 1.75


def test_compare_with_a_video_names_its_faces_by_track_and_time(indexed, video_dir: Path,
                                                                 tmp_path: Path, facesearch_command) -> None:
    """A video's faces are tracks: compare says which track and when, in text and JSON (it said
    "face 8"); the pianist (alex-lacamoire.png) is found in the first 1.5 s, not in the speaker's shot."""
    from facesearch.render import comparisons_table

    fs, _, _ = indexed
    pairs = fs.compare(video_dir / "alex-lacamoire.png", video_dir / "short_hamilton_clip.mp4")
    assert len(pairs) >= 3 and all(p.first_track is None and p.second_track is not None for p in pairs)
    rows = [p.to_dict() for p in pairs]
    assert all("first_track" not in r and {"track_id", "start", "end", "time"} <= set(r["second_track"])
               for r in rows)
    same = [r["second_track"] for r in rows if r["same_person"]]
    assert same and all(t["end"] <= PIANIST_END for t in same), same
    speaker = [r for r in rows if r["second_track"]["start"] < SPEAKER[1] - 0.5
               and r["second_track"]["end"] > SPEAKER[0] + 0.5]
    assert speaker and not any(r["same_person"] for r in speaker)
    first = pairs[0].second_track
    assert comparisons_table(pairs).splitlines()[0].startswith(
        f"face 0 - track {first.track_id} ({first.start:.1f}-{first.end:.1f} s): ")
    done = run(facesearch_command, "compare", video_dir / "alex-lacamoire.png",
               video_dir / "talking_d0.mp4", cwd=tmp_path, env={"FACESEARCH_VIDEO_FPS": "1"})
    assert done.returncode == 0, done.stderr
    head, line = done.stdout.splitlines()[:2]
    assert head == f"faces of {video_dir / 'alex-lacamoire.png'} - faces of {video_dir / 'talking_d0.mp4'}:"
    assert line.startswith("face 0 - track 1 (0.0-3.0 s): not the same person"), done.stdout
    helped = run(facesearch_command, "compare", "--help", cwd=tmp_path, env={"COLUMNS": "200"})
    assert "A photo or a video" in helped.stdout and "A photo." not in helped.stdout


def test_image_query_text_marks_where_hits_stop_being_the_same_person(indexed, video_dir: Path) -> None:
    """person and default modes: one divider line between the last hit at same_person >= 0.5 and
    the first below; none in look-alike mode (no hit is the person) nor in the JSON."""
    from facesearch.render import SAME_PERSON_DIVIDER, hits_table

    fs, _, _ = indexed
    for match in ("person", "default"):
        hits = fs.query(image=video_dir / "alex-lacamoire.png", k=8, match=match)
        judged = [hit.same_person >= 0.5 for hit in hits]
        assert judged[:2] == [True, True] and not any(judged[2:]), [h.same_person for h in hits]
        lines = hits_table(hits).splitlines()
        assert lines.count(SAME_PERSON_DIVIDER) == 1
        after = lines[lines.index(SAME_PERSON_DIVIDER) + 1]
        assert after.split()[0] == "3", lines  # the divider comes right before hit #3
        assert SAME_PERSON_DIVIDER not in json.dumps(hits.to_dicts())
    alike = fs.query(image=video_dir / "alex-lacamoire.png", k=8, match="look-alike")
    assert alike and SAME_PERSON_DIVIDER not in hits_table(alike)


def test_the_web_api_leaves_a_face_out_of_its_own_similar_faces(indexed, video_dir: Path) -> None:
    """/api/faces/<id>/similar?match=person listed the face itself first (same_person 1.00):
    now its hits are the same query's without it; the other tracks of its video stay."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from facesearch.server import create_app

    fs, _, _ = indexed
    pianist = [hit.face_id for hit in fs.query(image=video_dir / "alex-lacamoire.png", k=2, match="person")]
    with TestClient(create_app(search=fs)) as client:
        for face_id in pianist:
            with_itself = fs.more_like_face(face_id, k=6, match="person")
            assert with_itself[0].face_id == face_id and with_itself[0].same_person > 0.99
            hits = client.get(f"/api/faces/{face_id}/similar", params={"match": "person", "k": 5}).json()["hits"]
            assert [hit["face_id"] for hit in hits] == [hit.face_id for hit in with_itself[1:]]
            assert [hit["rank"] for hit in hits] == [1, 2, 3, 4, 5]
            assert all(hit["path"] == with_itself[0].path for hit in hits[:1])  # same video, other track


def test_a_video_query_uses_its_largest_face_unless_a_face_is_named(indexed) -> None:
    """A video as the query used its first track (a 47 px face at 0.0 s in the clip): now the
    track whose best-frame box is largest, and a notice names it; face=N still picks the
    (N+1)-th track by start."""
    fs, clips, _ = indexed
    clip = clips / "short_hamilton_clip.mp4"
    tracks = _tracks(fs, clip)
    areas = [(t["bbox"][2] - t["bbox"][0]) * (t["bbox"][3] - t["bbox"][1]) for t in tracks]
    largest = tracks[int(np.argmax(areas))]
    assert largest["track_id"] != tracks[0]["track_id"]  # else this test could not tell them apart
    notes: list[str] = []
    saved, fs.on_notice = fs.on_notice, notes.append
    try:
        by_default = fs.query(image=clip, k=1)[0]
        named = fs.query(image=clip, k=1, face=0)[0]
    finally:
        fs.on_notice = saved
    assert by_default.track_id == largest["track_id"]  # the clip's own track comes first
    with pytest.raises(FaceSearchError, match=rf"out of range: the video has {len(tracks)} track\(s\)"):
        fs.query(image=clip, k=1, face=99)
    assert named.track_id == tracks[0]["track_id"]
    said = [note for note in notes if "video query" in note]
    assert len(said) == 2, notes
    assert f"uses track {largest['track_id']} " in said[0] and "largest face" in said[0]
    assert f"uses track {tracks[0]['track_id']} " in said[1] and "face 0 (--face 0)" in said[1]


def test_the_video_speed_counts_the_videos_own_time_not_the_photos(video_dir: Path, tmp_path: Path) -> None:
    """A mixed folder said '0.5x real time' for a clip indexed at 2.5x alone: the figure divided
    the video's length by the whole run's time. Photos here take 0.4 s each to describe, the
    video 0.05 s: the figure must be its length over its own 0.05 s."""
    import re
    import time

    from facesearch.index.indexer import Indexer, reconcile
    from facesearch.index.spaces import Spaces
    from facesearch.index.store import Store

    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(video_dir / "short_hamilton_clip.mp4", folder / "clip.mp4")
    for i in range(3):
        Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(folder / f"{i}.jpg")

    def describe(paths: list[Path]):
        for path in paths:
            time.sleep(0.05 if path.suffix == ".mp4" else 0.4)
            yield (32, 32), []

    index_dir = tmp_path / "index"
    with Store.for_index_dir(index_dir) as store:
        spaces = Spaces.open(index_dir)
        reconcile(store, spaces)
        report = Indexer(store, spaces, describe, "fake-model").run(
            [folder], sorted(folder.iterdir()), progress=False)
    assert report.videos == 1 and report.video_seconds == pytest.approx(9.2, abs=0.9)
    assert 0.05 <= report.video_work < 0.5 and report.seconds >= 1.2
    speed = float(re.search(r"\(([\d.]+)x real time\)", report.summary()).group(1))
    assert speed == pytest.approx(report.video_seconds / report.video_work, rel=0.05)
    assert speed > report.video_seconds / 0.5  # the whole run's 1.25 s would give about 7x
