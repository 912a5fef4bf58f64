"""Face detection, landmarks and alignment on real photos: aligned crops and whole scenes."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import MULTI_FACE_PHOTOS, rgb, sample
from facesearch.pipeline import alignment
from facesearch.spec import ALIGN_TEMPLATE, INPUT_SIZE
from facesearch.pipeline.detect import Detection
from facesearch.pipeline.detect.mediapipe import MediapipeDetector, landmarks_from_mesh
from facesearch.pipeline.pixel_attributes import EYE_WIDTH_SHARE, MIN_EYE_WIDTH
from facesearch.pipeline.images import load_image
from facesearch.pipeline.prepare import FacePreparer

TEMPLATE = np.asarray(ALIGN_TEMPLATE)


@pytest.fixture(scope="module")
def detector() -> MediapipeDetector:
    return MediapipeDetector()


@pytest.fixture(scope="module")
def preprocessor() -> FacePreparer:
    return FacePreparer()


def _detect(detector: MediapipeDetector, path: Path) -> tuple[list[Detection], tuple[int, int]]:
    pixels = load_image(path).pixels
    return detector.detect(pixels), pixels.shape[:2]


def _check_geometry(face: Detection, shape: tuple[int, int]) -> None:
    height, width = shape
    x0, y0, x1, y1 = face.bbox
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (face.bbox, shape)
    assert 0 < face.score <= 1
    assert face.landmarks.shape == (5, 2)
    # Landmarks lie in the box, give or take a margin (boxes are tight, landmarks are estimates).
    margin_x, margin_y = 0.2 * (x1 - x0), 0.2 * (y1 - y0)
    lx, ly = face.landmarks[:, 0], face.landmarks[:, 1]
    assert np.all((lx >= x0 - margin_x) & (lx <= x1 + margin_x)), (face.landmarks, face.bbox)
    assert np.all((ly >= y0 - margin_y) & (ly <= y1 + margin_y)), (face.landmarks, face.bbox)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    # An upright face: the mouth is below the eyes, the nose between them.
    assert min(mouth_left[1], mouth_right[1]) > max(left_eye[1], right_eye[1])
    assert max(left_eye[1], right_eye[1]) < nose[1] < max(mouth_left[1], mouth_right[1])


@pytest.mark.parametrize("folder", ["celeba/aligned", "celeba/aligned_small", "utkface"])
def test_faces_are_found_on_aligned_crops(detector: MediapipeDetector, data_dir: Path, folder: str) -> None:
    photos = sample(data_dir / folder, 20)
    found = 0
    for path in photos:
        faces, shape = _detect(detector, path)
        if faces:
            found += 1
            _check_geometry(faces[0], shape)
            assert faces[0].mesh is not None and faces[0].mesh.shape == (468, 2)
    assert found >= 0.95 * len(photos), f"faces found in only {found} of {len(photos)} {folder} photos"


def test_faces_are_found_in_whole_scenes(detector: MediapipeDetector, data_dir: Path) -> None:
    photos = sorted((data_dir / "celeba" / "wild").glob("*.jpg"))[:10]
    for path in photos:
        faces, shape = _detect(detector, path)
        assert faces, f"no face found in {path.name}"
        for face in faces:
            assert 0 <= face.bbox[0] < face.bbox[2] <= shape[1]
            assert 0 <= face.bbox[1] < face.bbox[3] <= shape[0]
        _check_geometry(faces[0], shape)  # the main (largest) face
        areas = [face.area for face in faces]
        assert areas == sorted(areas, reverse=True), "faces are not largest first"


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area over the smaller box's area (1.0: one box inside the other)."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return width * height / smaller


@pytest.mark.parametrize("name", MULTI_FACE_PHOTOS)
def test_several_people_in_one_scene(detector: MediapipeDetector, data_dir: Path, name: str) -> None:
    faces, shape = _detect(detector, data_dir / "celeba" / "wild" / name)
    assert len(faces) >= 2, f"{name} shows two people, found {len(faces)} face(s)"
    for face in faces[:2]:
        _check_geometry(face, shape)
    assert _overlap_of_smaller(faces[0].bbox, faces[1].bbox) < 0.3, "the two faces are one face"


#: Photos of one person where the detector currently returns more than one face (package bug):
#: 011414.jpg: the footballer's face twice, [194,18,277,102] and [205,53,253,101] nested inside it
#: (both detectors fire, IoU 0.34 < NMS_IOU 0.4); 070209.jpg: a chair corner [162,278,265,381],
#: 030311.jpg: the woman's torso [124,117,272,265], both low-score detections whose face mesh
#: failed (kept with the mean mesh) and larger than the real face, so they are "face 0", the
#: face `query --image` uses by default.
ONE_PERSON_PHOTOS = ("011414.jpg", "070209.jpg", "030311.jpg")


@pytest.mark.parametrize("name", ONE_PERSON_PHOTOS)
def test_one_person_gives_one_face(detector: MediapipeDetector, data_dir: Path, name: str) -> None:
    faces, _ = _detect(detector, data_dir / "celeba" / "wild" / name)
    assert len(faces) == 1, [(face.bbox.round().tolist(), round(face.score, 2), face.mesh is not None)
                             for face in faces]


def test_no_face_in_a_blank_picture(detector: MediapipeDetector) -> None:
    assert detector.detect(np.full((200, 160, 3), 128, np.uint8)) == []


def test_alignment_puts_landmarks_on_the_template(preprocessor: FacePreparer, data_dir: Path) -> None:
    photos = (sorted((data_dir / "celeba" / "wild").glob("*.jpg"))[:4]
              + sample(data_dir / "celeba" / "aligned", 2))
    redetector = MediapipeDetector()
    for path in photos:
        photo = load_image(path)
        face = preprocessor.prepare(photo.pixels, photo.scale)[0]
        assert face.crop.shape == (*INPUT_SIZE, 3) and face.crop.dtype == np.uint8
        # The similarity transform maps the photo's landmarks onto the template...
        matrix = alignment.template_transform(face.landmarks / photo.scale)
        errors = np.linalg.norm(alignment.transform_points(face.landmarks / photo.scale, matrix)
                                - TEMPLATE, axis=1)
        assert errors[:2].max() < 4 and errors.max() < 10, (path.name, errors)
        # ...and the crop really shows the face there: detect it again in the (enlarged) crop.
        big = cv2.resize(face.crop, (INPUT_SIZE[1] * 2, INPUT_SIZE[0] * 2), interpolation=cv2.INTER_CUBIC)
        again = redetector.detect(big)
        assert again, f"no face in the aligned crop of {path.name}"
        errors = np.linalg.norm(again[0].landmarks / 2 - TEMPLATE, axis=1)
        assert errors[:2].max() < 5 and errors.max() < 10, (path.name, errors)
        # A mesh is fitted where the eyes are wide enough to read their colour (the default
        # detector, scrfd, gives none); in crop pixels it is where the face is: its 5
        # landmarks near the template's.
        eye_distance = np.linalg.norm(face.landmarks[1] - face.landmarks[0]) / photo.scale
        if eye_distance * EYE_WIDTH_SHARE < MIN_EYE_WIDTH:
            assert not face.mesh_found
            continue
        assert face.mesh_found and face.mesh.shape == (468, 2)
        errors = np.linalg.norm(landmarks_from_mesh(face.mesh) - TEMPLATE, axis=1)
        assert errors[:2].max() < 4 and errors.max() < 10, (path.name, errors)


def test_muting_is_safe_when_models_run_side_by_side(capfd) -> None:
    """Detectors run in threads, each muting C++ logging on descriptor 2: overlapping mutes must
    leave stderr restored (a lost restore would silence every later error message)."""
    import os
    import threading
    import time

    from facesearch.models.mediapipe import muted_stderr

    def hold(seconds: float) -> None:
        with muted_stderr():
            os.write(2, b"hidden\n")
            time.sleep(seconds)

    threads = [threading.Thread(target=hold, args=(0.01 * (i % 4),)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    os.write(2, b"visible\n")
    assert capfd.readouterr().err == "visible\n"


def test_min_detection_score_drops_weaker_detections(data_dir: Path) -> None:
    """Settings.min_detection_score holds for mediapipe's detections too (its own threshold
    let a 0.51 sequined shoulder through at 0.99), and must be a confidence in [0, 1]."""
    from facesearch.errors import FaceSearchError
    from facesearch.pipeline.detect.mediapipe import MediapipeDetector
    from facesearch.settings import Settings

    photo = rgb(data_dir / "celeba" / "wild" / "017886.jpg")
    everything = MediapipeDetector(min_score=0.3).detect(photo)
    strict = MediapipeDetector(min_score=0.9).detect(photo)
    assert strict and all(face.score >= 0.9 for face in strict)
    assert len(strict) < len(everything)
    with pytest.raises(FaceSearchError, match="from 0 to 1"):
        Settings(min_detection_score=2)
