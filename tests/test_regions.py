"""The 7 region masks of an aligned face: shape, one-hot, plausible coverage and layout."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import sample
from facesearch import FaceSearch
from facesearch.spec import FEATURE_GRID, INPUT_SIZE, REGIONS
from facesearch.pipeline.parse import coarse_masks

FACE_PARTS = ("face_skin", "eyes", "eyebrows", "lips", "nose")
SMALL_PARTS = ("eyes", "eyebrows", "lips", "nose")


@pytest.fixture(scope="module")
def frontal_faces(describer: FaceSearch, data_dir: Path) -> list:
    """The main face of a few CelebA aligned photos (frontal, centred)."""
    faces = [describer.describe(path) for path in sample(data_dir / "celeba" / "aligned", 4)]
    assert all(faces), "no face found in a CelebA aligned photo"
    return [found[0] for found in faces]


def _region(masks: np.ndarray, name: str) -> np.ndarray:
    return masks[REGIONS.index(name)]


def test_masks_are_one_hot(frontal_faces: list) -> None:
    for face in frontal_faces:
        masks = face.masks
        assert masks.shape == (len(REGIONS), *INPUT_SIZE) == (7, 112, 96)
        assert np.isin(masks, (0.0, 1.0)).all()
        np.testing.assert_array_equal(masks.sum(0), 1.0)


def test_every_region_is_present_with_plausible_coverage(frontal_faces: list) -> None:
    for face in frontal_faces:
        share = {name: float(_region(face.masks, name).mean()) for name in REGIONS}
        assert all(value > 0 for value in share.values()), share
        assert share["face_skin"] == max(share[name] for name in FACE_PARTS), share
        for name in SMALL_PARTS:
            assert 0.003 <= share[name] <= 0.10, (name, share)


def _centroid_y(mask: np.ndarray) -> float:
    return float(np.nonzero(mask)[0].mean())


def test_regions_are_laid_out_like_a_face(frontal_faces: list) -> None:
    for face in frontal_faces:
        masks = face.masks
        eyebrows, eyes = _centroid_y(_region(masks, "eyebrows")), _centroid_y(_region(masks, "eyes"))
        nose, lips = _centroid_y(_region(masks, "nose")), _centroid_y(_region(masks, "lips"))
        assert eyebrows < eyes < nose < lips, (eyebrows, eyes, nose, lips)
        # Two eyes: eye pixels on both sides of the crop's centre line.
        columns = np.nonzero(_region(masks, "eyes"))[1]
        assert columns.min() < INPUT_SIZE[1] / 2 < columns.max()
        # Hair, where there is any, is mostly above the lips.
        hair = _region(masks, "hair")
        if hair.sum() > 50:
            assert _centroid_y(hair) < lips


def test_grid_masks(frontal_faces: list) -> None:
    for face in frontal_faces:
        grid = coarse_masks(face.masks)
        assert grid.shape == (len(REGIONS), *FEATURE_GRID) == (7, 7, 6)
        assert grid.dtype == np.float32
        assert grid.min() >= 0
        np.testing.assert_allclose(grid.reshape(len(REGIONS), -1).max(1), 1.0, atol=1e-6)


def test_describe_overlay_is_written(data_dir: Path, tmp_path: Path, facesearch_command: list[str]) -> None:
    out = tmp_path / "overlay.png"
    photo = data_dir / "celeba" / "wild" / "032591.jpg"
    done = subprocess.run([*facesearch_command, "describe", str(photo), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "mediapipe's C++ logging reached stderr"
    assert "face 0" in done.stdout and "face 1" in done.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(out) as picture, Image.open(photo) as original:
        assert picture.format == "PNG" and picture.width > 0 and picture.height > 0
        # beside the photo, each face's crop and regions at twice their size, side by side (a
        # grid of up to render.OVERLAY_COLUMNS), a caption under each: not one tall strip
        tile = 2 * 2 * INPUT_SIZE[1]
        faces = sum(1 for line in done.stdout.splitlines() if re.match(r"face \d+:", line))
        assert faces >= 2 and picture.width == original.width + min(faces, 3) * tile
        assert picture.height >= 2 * INPUT_SIZE[0] + 20
