"""The seams: detector and parser backends chosen by name, custom backends plugged into the
preparer, an embedder behind the describer, media sources, and no process-wide state at import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import sample
from PIL import Image

from facesearch.errors import FaceSearchError
from facesearch.models.base import Embedder, Embeddings
from facesearch.pipeline.describer import Describer
from facesearch.pipeline.detect import DETECTORS, Detection, Detector, detector
from facesearch.pipeline.parse import PARSERS, Parser, parser
from facesearch.pipeline.prepare import FacePreparer
from facesearch.pipeline.sources import MediaItem, PhotoSource, media_source
from facesearch.settings import DEFAULTS, Settings
from facesearch import spec
from facesearch.spec import ALIGN_TEMPLATE, INPUT_SIZE, REGIONS

#: Where a CelebA aligned photo (178 x 218) has its eyes, nose tip and mouth corners, roughly.
CELEBA_ALIGNED_LANDMARKS = np.array([[69, 111], [108, 111], [89, 134], [72, 152], [106, 152]], float)


class FixedDetector(Detector):
    """Finds one face, always the same, and counts its calls."""

    name = "fixed"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        return [Detection(bbox=np.array([40.0, 70.0, 140.0, 180.0]), score=0.9,
                          landmarks=CELEBA_ALIGNED_LANDMARKS.copy(),
                          points={"probe": CELEBA_ALIGNED_LANDMARKS.copy()})]


class RecordingParser(Parser):
    """Everything is face skin; remembers the detections it was handed."""

    name = "recording"

    def __init__(self) -> None:
        self.seen: list[Detection] = []

    def masks(self, crop: np.ndarray, face: Detection) -> np.ndarray:
        self.seen.append(face)
        masks = np.zeros((len(REGIONS), *crop.shape[:2]), np.float32)
        masks[REGIONS.index("face_skin")] = 1
        return masks


class TinyEmbedder(Embedder):
    """An 8-dim embedder of mean colours that needs no masks."""

    name, dim, version = "tiny", 8, "tiny-1"

    def embed(self, crops: np.ndarray, grid_masks: np.ndarray | None = None) -> Embeddings:
        assert grid_masks is None
        means = crops.reshape(len(crops), -1, 3).mean(1).astype(np.float32)
        return Embeddings(np.tile(means, (1, 3))[:, :self.dim])


@pytest.fixture(scope="module")
def aligned_photo(data_dir: Path) -> Path:
    return sample(data_dir / "celeba" / "aligned", 1)[0]


def test_registries_choose_backends_by_name() -> None:
    chosen = detector("mediapipe", Settings(min_detection_score=0.7))
    assert chosen.name == "mediapipe" and isinstance(chosen, DETECTORS.backend_class("mediapipe"))
    assert chosen.min_score == 0.7
    assert parser("mesh", DEFAULTS).name == "mesh"
    assert "mediapipe" in DETECTORS.names and "mesh" in PARSERS.names


@pytest.mark.parametrize(("make", "kind", "known"), [(detector, "detector", "mediapipe"),
                                                     (parser, "parser", "mesh")])
def test_an_unknown_backend_is_one_clear_line(make, kind: str, known: str) -> None:
    with pytest.raises(FaceSearchError) as error:
        make("no-such-backend", DEFAULTS)
    message = str(error.value)
    assert "\n" not in message
    assert kind in message and "'no-such-backend'" in message and known in message
    with pytest.raises(FaceSearchError, match="no-such-backend"):
        FacePreparer(Settings(**{kind: "no-such-backend"}))


def test_a_registered_backend_is_chosen_by_settings() -> None:
    DETECTORS.register("fixed", FixedDetector)
    try:
        preparer = FacePreparer(Settings(detector="fixed"))
        assert isinstance(preparer.detector, FixedDetector)
    finally:
        DETECTORS.unregister("fixed")


def test_a_custom_detector_and_parser_are_used(aligned_photo: Path) -> None:
    fixed, recording = FixedDetector(), RecordingParser()
    pixels = np.asarray(Image.open(aligned_photo).convert("RGB"))
    faces = FacePreparer(DEFAULTS, detector=fixed, parser=recording).prepare(pixels, scale=2.0)
    assert fixed.calls == 1 and len(faces) == 1 and len(recording.seen) == 1
    face = faces[0]
    np.testing.assert_allclose(face.bbox, [80, 140, 280, 360])  # in original pixels
    np.testing.assert_allclose(face.landmarks, 2 * CELEBA_ALIGNED_LANDMARKS)
    assert face.crop.shape == (*INPUT_SIZE, 3) and face.crop.dtype == np.uint8
    assert face.masks.shape == (len(REGIONS), *INPUT_SIZE)
    # The parser saw the detection in crop pixels: landmarks and extra points on the template.
    seen = recording.seen[0]
    for points in (seen.landmarks, seen.points["probe"], face.points["probe"]):
        assert np.linalg.norm(points - np.asarray(ALIGN_TEMPLATE), axis=1).max() < 6
    # No mesh from this detector: one is fitted at its landmarks for the pixel attributes (the
    # eyes are wide enough to read), on the face; the alignment stays the detector's (above).
    from facesearch.pipeline.detect.mediapipe import landmarks_from_mesh
    assert face.mesh_found and face.mesh.shape == (468, 2)
    assert np.linalg.norm(landmarks_from_mesh(face.mesh)[:2] - np.asarray(ALIGN_TEMPLATE)[:2], axis=1).max() < 6
    meshed = FacePreparer(DEFAULTS, detector=fixed).prepare(pixels)[0]
    assert meshed.masks.shape == (len(REGIONS), *INPUT_SIZE)
    np.testing.assert_array_equal(meshed.masks.sum(0), 1.0)
    assert meshed.masks[REGIONS.index("eyes")].sum() > 0


def test_scrfd_is_a_registered_detector_configured_by_settings() -> None:
    settings = Settings(min_detection_score=0.6, detection_size=320, detection_min_face=32,
                        detection_rotations=False, detection_threads=2)
    chosen = detector("scrfd", settings)
    assert chosen.name == "scrfd" and isinstance(chosen, DETECTORS.backend_class("scrfd"))
    assert (chosen.min_score, chosen.size, chosen.min_face, chosen.rotations, chosen.threads) == (
        0.6, 320, 32, False, 2)
    assert (DEFAULTS.detector, DEFAULTS.parser) == ("scrfd", "learned")  # the defaults
    with pytest.raises(FaceSearchError, match="detection_size must be at least 64"):
        Settings(detection_size=16)


def test_detection_transformed_moves_every_point() -> None:
    face = Detection(bbox=np.array([0.0, 0.0, 10.0, 20.0]), score=0.5,
                     landmarks=np.zeros((5, 2)), points={"mesh": np.ones((468, 2))}, rotation=90)
    moved = face.transformed(np.array([[2.0, 0.0, 1.0], [0.0, 2.0, 3.0]]))
    assert moved.rotation == 90 and moved.quality is None
    np.testing.assert_allclose(moved.bbox, [1, 3, 21, 43])
    np.testing.assert_allclose(moved.landmarks, np.tile([1.0, 3.0], (5, 1)))
    np.testing.assert_allclose(moved.mesh, np.tile([3.0, 5.0], (468, 1)))
    assert moved.area == 800 and face.area == 200


def test_the_describer_uses_any_embedder(aligned_photo: Path) -> None:
    describer = Describer(DEFAULTS, model=TinyEmbedder())
    prepared = FacePreparer(DEFAULTS, detector=FixedDetector(), parser=RecordingParser()).prepare(
        np.asarray(Image.open(aligned_photo).convert("RGB")))
    [faces] = describer.describe_prepared([prepared])
    assert len(faces) == 1 and faces[0].vector.shape == (8,) and faces[0].vector.dtype == np.float32
    # the embedder predicts no class; what the pipeline measures itself (quality record) stays
    assert not set(faces[0].attributes) & {*spec.CLASSES, spec.AGE_KEY, *spec.EMOTIONS}
    assert set(spec.QUALITY_KEYS) <= set(faces[0].attributes)


def test_the_shipped_descriptor_is_an_embedder() -> None:
    from facesearch.models.descriptor import shipped_model
    from facesearch.spec import FEATURE_GRID, VECTOR_DIM

    model = shipped_model()
    assert isinstance(model, Embedder) and model.name == "master" and model.dim == VECTOR_DIM
    assert model.version and model.uses_masks
    out = model.embed(np.zeros((2, *INPUT_SIZE, 3), np.uint8),
                      np.ones((2, len(REGIONS), *FEATURE_GRID), np.float32))
    assert out.vectors.shape == (2, model.dim) and out.vectors.dtype == np.float32
    with pytest.raises(FaceSearchError):
        model.embed(np.zeros((1, *INPUT_SIZE, 3), np.uint8))


def test_a_photo_source_yields_one_item(aligned_photo: Path) -> None:
    with Image.open(aligned_photo) as image:
        size = image.size
    [item] = list(media_source(aligned_photo))
    assert isinstance(item, MediaItem)
    assert item.key == str(aligned_photo) and item.frame == 0 and item.timestamp is None
    assert item.original_size == size and item.scale == 1.0
    assert item.pixels.shape == (size[1], size[0], 3) and item.pixels.dtype == np.uint8
    # Decoded at most Settings.max_decode_side on its longest side; scale maps back.
    [small] = list(PhotoSource(aligned_photo, Settings(max_decode_side=64)))
    assert max(small.pixels.shape[:2]) <= 64 and small.original_size == size
    assert small.scale == pytest.approx(max(size) / max(small.pixels.shape[:2]), rel=0.05)


def test_importing_mediapipe_models_leaves_the_environment_alone() -> None:
    code = ("import os\n"
            "os.environ.pop('GLOG_minloglevel', None)\n"
            "import facesearch.models.mediapipe, facesearch.pipeline.prepare\n"
            "print('GLOG_minloglevel' in os.environ)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_embedders_are_chosen_by_the_space_they_fill() -> None:
    from facesearch.models import EMBEDDERS, embedder
    from facesearch.models.descriptor import shipped_model

    from facesearch.models.arcface import IdentityModel

    assert EMBEDDERS.names == ("identity", "master")
    assert embedder("master", Settings()) is shipped_model()  # loaded once per process
    identity = embedder("identity", Settings())
    assert isinstance(identity, IdentityModel) and (identity.name, identity.dim) == ("identity", 512)
    with pytest.raises(FaceSearchError, match="unknown embedder 'people'.*use one of identity, master"):
        embedder("people", Settings())
