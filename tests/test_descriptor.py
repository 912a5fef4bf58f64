"""describe(): the 364-dim master vector (7 unit-norm blocks) and the attribute classes."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import rgb, sample
from facesearch import Face, FaceSearch
from facesearch.spec import (AGE_GROUPS, AGE_KEY, CELEBA_ATTRIBUTES, EMOTIONS, ETHNICITIES, GENDERS, PIXEL_ATTRIBUTES,
                             QUALITY_KEYS, REGION_DIM, REGIONS, VECTOR_DIM)

EXPECTED_CLASSES = set(CELEBA_ATTRIBUTES) | set(GENDERS) | {name for name, _, _ in AGE_GROUPS} | set(ETHNICITIES)


def _check_vector(vector: np.ndarray) -> None:
    assert isinstance(vector, np.ndarray)
    assert vector.shape == (VECTOR_DIM,) == (364,)
    assert vector.dtype == np.float32
    assert np.isfinite(vector).all()
    norms = np.linalg.norm(vector.reshape(len(REGIONS), REGION_DIM), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)


@pytest.fixture(scope="module")
def aligned_photos(data_dir: Path) -> list[Path]:
    return sample(data_dir / "celeba" / "aligned", 3)


def test_describe_returns_faces_with_master_vectors(describer: FaceSearch, aligned_photos: list[Path],
                                                    data_dir: Path) -> None:
    for path in [*aligned_photos, data_dir / "celeba" / "wild" / "032591.jpg"]:
        faces = describer.describe(path)
        assert faces and all(isinstance(face, Face) for face in faces)
        for face in faces:
            _check_vector(face.vector)
            for region in REGIONS:
                assert face.region_vector(region).shape == (REGION_DIM,)
            assert len(face.bbox) == 4 and face.bbox[0] < face.bbox[2] and face.bbox[1] < face.bbox[3]
            assert np.asarray(face.landmarks).shape == (5, 2)
            assert 0 < face.score <= 1


def test_attributes_cover_every_class(describer: FaceSearch, aligned_photos: list[Path]) -> None:
    face = describer.describe(aligned_photos[0])[0]
    # the classes and age, and what other parts of the pipeline measure: the quality record,
    # emotions, the pixel attributes (absent where the pixels cannot tell)
    others = set(QUALITY_KEYS) | set(EMOTIONS) | set(PIXEL_ATTRIBUTES)
    assert EXPECTED_CLASSES | {AGE_KEY} <= set(face.attributes) <= EXPECTED_CLASSES | {AGE_KEY} | others
    for name in set(PIXEL_ATTRIBUTES) & set(face.attributes):
        assert 0.0 <= face.attributes[name] <= 1.0, name
    for name in EXPECTED_CLASSES:
        assert 0.0 <= face.attributes[name] <= 1.0, name
    assert 0.0 <= face.attributes[AGE_KEY] <= 120.0
    # Mutually exclusive classes are a distribution each.
    assert sum(face.attributes[g] for g in GENDERS) == pytest.approx(1.0, abs=0.01)
    assert sum(face.attributes[name] for name, _, _ in AGE_GROUPS) == pytest.approx(1.0, abs=0.01)
    assert sum(face.attributes[e] for e in ETHNICITIES) == pytest.approx(1.0, abs=0.01)


def test_face_to_dict(describer: FaceSearch, aligned_photos: list[Path]) -> None:
    face = describer.describe(aligned_photos[0])[0]
    as_dict = face.to_dict()
    assert {"bbox", "landmarks", "attributes", "vector"} <= set(as_dict)
    assert len(as_dict["vector"]) == VECTOR_DIM


def test_describe_is_deterministic(describer: FaceSearch, aligned_photos: list[Path]) -> None:
    path = aligned_photos[1]
    first, second = describer.describe(path)[0], describer.describe(path)[0]
    np.testing.assert_allclose(first.vector, second.vector, atol=1e-6)
    assert first.bbox == second.bbox
    # A path and the same pixels as an array give the same face.
    from_array = describer.describe(rgb(path))[0]
    np.testing.assert_allclose(first.vector, from_array.vector, atol=1e-5)


def test_describe_of_a_picture_without_a_face(describer: FaceSearch) -> None:
    assert describer.describe(np.full((160, 128, 3), 200, np.uint8)) == []


@pytest.fixture(scope="module")
def mirror_scores(describer: FaceSearch, data_dir: Path) -> list[tuple[str, float, list[float]]]:
    """For a few CelebA aligned photos: (file, score with its own mirror image, scores with the
    other people's photos). Scores are sums of 7 region cosines, in [-7, 7]."""
    folder = data_dir / "celeba" / "aligned"
    with open(folder / "labels.csv", newline="") as handle:
        identity = {row["file"]: row["identity"] for row in csv.DictReader(handle)}
    photos = sample(folder, 6)
    vectors = {path.name: describer.describe(path)[0].vector for path in photos}
    results = []
    for path in photos:
        mirrored = describer.describe(np.ascontiguousarray(rgb(path)[:, ::-1]))
        assert mirrored, f"no face in the mirror image of {path.name}"
        own = vectors[path.name]
        others = [float(own @ vectors[other.name]) for other in photos
                  if identity[other.name] != identity[path.name]]
        assert others
        results.append((path.name, float(own @ mirrored[0].vector), others))
    return results


def test_mirrored_photos_are_closer_than_other_people_on_average(mirror_scores: list) -> None:
    """Mirroring keeps the person: on average a face is closer to its mirror image than to
    somebody else's face. Holds even for the placeholder weights."""
    mirror = np.mean([score for _, score, _ in mirror_scores])
    others = np.mean([np.mean(scores) for _, _, scores in mirror_scores])
    assert mirror > others, (mirror, others, mirror_scores)


def test_every_mirrored_photo_is_closer_than_any_other_person(mirror_scores: list) -> None:
    for name, mirror, others in mirror_scores:
        assert mirror > max(others), (name, mirror, others)


def test_describe_many_matches_describe_in_order(describer: FaceSearch, aligned_photos: list[Path],
                                                 data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Photos prepared on threads and batched through the network give the same faces, in the
    order given, as describing them one by one; a bad photo raises as describe() does."""
    # several batches, several photos in each
    monkeypatch.setattr(describer.describer, "settings", describer.settings.replace(describe_batch=2))
    photos = aligned_photos[:5] + [rgb(aligned_photos[0])] + sample(data_dir / "celeba/wild", 2)
    one_by_one = [describer.describe(photo) for photo in photos]
    many = list(describer.describe_many(photos))
    assert [len(faces) for faces in many] == [len(faces) for faces in one_by_one]
    for faces, expected in zip(many, one_by_one):
        for face, reference in zip(faces, expected):
            assert np.allclose(face.vector, reference.vector, atol=1e-4)
            assert face.bbox == reference.bbox
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    with pytest.raises(Exception, match="not an image"):
        list(describer.describe_many([aligned_photos[0], fake]))
