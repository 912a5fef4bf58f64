"""Our face parser (models/parser.py, the "learned" backend): its masks cover what they should on
real photos, the numpy forward matches the torch network, and the backend works through the
pipeline. Uses only the shipped weights and the shared photos (no teacher, no training cache)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import sample
from facesearch.errors import FaceSearchError
from facesearch.models.parser import (PARSER_CLASSES, PARSER_FILE, PARSER_SIDE, load_parser,
                                      load_parser_file)
from facesearch.pipeline import alignment
from facesearch.pipeline.detect import detector
from facesearch.pipeline.images import load_image
from facesearch.pipeline.parse import PARSERS, parser
from facesearch.pipeline.parse.learned import LearnedParser, head_crop
from facesearch.pipeline.parse.mesh import MeshParser
from facesearch.pipeline.prepare import FacePreparer
from facesearch.settings import DEFAULTS
from facesearch.spec import INPUT_SIZE, REGIONS

pytestmark = pytest.mark.skipif(not PARSER_FILE.is_file(), reason="no shipped parser weights")


def _region(masks: np.ndarray, name: str) -> np.ndarray:
    return masks[REGIONS.index(name)].astype(bool)


def _rows(mask: np.ndarray) -> np.ndarray:
    return np.nonzero(mask)[0]


@pytest.fixture(scope="module")
def parsed(data_dir: Path) -> list[dict]:
    """Photos with one clear face (CelebA wild and aligned): the photo, its detection, the
    aligned crop and its matrix, and the learned parser's masks and head parse."""
    finder = detector("mediapipe", DEFAULTS)
    learned = LearnedParser()
    out = []
    for path in sample(data_dir / "celeba" / "wild", 4) + sample(data_dir / "celeba" / "aligned", 4):
        pixels = load_image(path).pixels
        faces = finder.detect(pixels)
        assert faces, f"no face in {path}"
        face = faces[0]
        matrix = alignment.template_transform(face.landmarks)
        crop = alignment.warp(pixels, matrix)
        out.append({"path": path, "pixels": pixels, "face": face, "matrix": matrix, "crop": crop,
                    "masks": learned.masks_in_photo(pixels, face, matrix, crop),
                    "head": learned.head_parse(pixels, face.landmarks)})
    return out


def test_masks_are_one_hot_and_every_part_is_found(parsed: list[dict]) -> None:
    for item in parsed:
        masks = item["masks"]
        assert masks.shape == (len(REGIONS), *INPUT_SIZE)
        np.testing.assert_array_equal(masks.sum(0), 1.0)
        share = {name: float(_region(masks, name).mean()) for name in REGIONS}
        for name in ("eyes", "eyebrows", "lips", "nose"):
            assert 0.003 <= share[name] <= 0.10, (item["path"].name, name, share)
        assert share["face_skin"] > 0.2, (item["path"].name, share)


def test_regions_sit_where_a_face_has_them(parsed: list[dict]) -> None:
    template = np.asarray(alignment.TEMPLATE)
    for item in parsed:
        masks, name = item["masks"], item["path"].name
        brows, eyes = _rows(_region(masks, "eyebrows")).mean(), _rows(_region(masks, "eyes")).mean()
        nose, lips = _rows(_region(masks, "nose")).mean(), _rows(_region(masks, "lips")).mean()
        assert brows < eyes < nose < lips, (name, brows, eyes, nose, lips)
        # the eyes at the template's eye row (the crop is aligned on them), one on each side
        assert abs(eyes - template[:2, 1].mean()) < 5, (name, eyes)
        if item["path"].parent.name == "aligned":  # frontal: both eyes (a turned head may hide one)
            columns = np.nonzero(_region(masks, "eyes"))[1]
            assert columns.min() < INPUT_SIZE[1] / 2 < columns.max(), name
        # the lips between the mouth corners' row and above the chin; the eyes inside the skin's rows
        assert abs(lips - template[3:, 1].mean()) < 6, (name, lips)
        skin = _rows(_region(masks, "face_skin"))
        assert skin.min() < _rows(_region(masks, "eyes")).min() and skin.max() > lips, name


def test_hair_is_above_the_eyes_and_not_on_the_face(parsed: list[dict]) -> None:
    with_hair = 0
    for item in parsed:
        masks = item["masks"]
        hair = _region(masks, "hair")
        eye_row = _rows(_region(masks, "eyes")).min()
        if hair.sum() < 50:
            continue  # a bald head or a hat: nothing to place
        with_hair += 1
        assert _rows(hair).min() < eye_row, item["path"].name
        # no hair between the eyes and the lips in the middle of the face
        middle = hair[eye_row:int(_rows(_region(masks, "lips")).mean()), 36:60]
        assert middle.mean() < 0.05, item["path"].name
    assert with_hair >= len(parsed) // 2


def test_head_parse_gives_hair_in_any_crop_of_the_photo(parsed: list[dict]) -> None:
    for item in parsed:
        head = item["head"]
        assert head.scores.shape == (PARSER_SIDE // 2, PARSER_SIDE // 2, len(PARSER_CLASSES))
        assert head.labels.shape == (PARSER_SIDE, PARSER_SIDE)
        # the hair of the aligned crop, from the head parse, is the hair region of its masks
        size = (INPUT_SIZE[1], INPUT_SIZE[0])
        hair = head.photo_mask(("hair", "hat"), item["matrix"], size)
        region = _region(item["masks"], "hair")
        union = (hair | region).sum()
        assert union == 0 or (hair & region).sum() / union > 0.9
        # a larger, finer crop of the same photo (2x the aligned crop) gets a mask of its size
        big = head.photo_mask(("hair",), alignment.template_transform(item["face"].landmarks, 2.0),
                              (2 * size[0], 2 * size[1]))
        assert big.shape == (2 * INPUT_SIZE[0], 2 * INPUT_SIZE[1])
    with pytest.raises(FaceSearchError, match="unknown parser class"):
        parsed[0]["head"].mask("beard")


def test_learned_and_mesh_masks_agree_on_the_face(parsed: list[dict]) -> None:
    """The two backends cut the same faces: the large regions overlap well (the small parts
    differ in outline: convex hulls of mesh points against painted parts)."""
    mesh = MeshParser()
    for item in parsed[:4]:
        reference = mesh.masks(item["crop"], item["face"].transformed(item["matrix"]))
        for name, least in (("face_skin", 0.45), ("nose", 0.3)):
            a, b = _region(item["masks"], name), _region(reference, name)
            assert (a & b).sum() / (a | b).sum() > least, (item["path"].name, name)
        for name in ("eyes", "eyebrows", "lips"):  # thin parts: the same rows, not the same outline
            a, b = _rows(_region(item["masks"], name)), _rows(_region(reference, name))
            assert abs(a.mean() - b.mean()) < 5, (item["path"].name, name)


def test_numpy_forward_matches_torch(parsed: list[dict]) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    from facesearch.training.parser_train import ParserNet, to_input

    model = ParserNet()
    result = model.load_state_dict({k: v.float() for k, v in load_file(str(PARSER_FILE)).items()},
                                   strict=False)
    assert not result.unexpected_keys
    assert all(key.endswith("num_batches_tracked") for key in result.missing_keys)
    model.eval()
    crops = np.stack([head_crop(item["pixels"], item["face"].landmarks, PARSER_SIDE) for item in parsed])
    with torch.inference_mode():
        expected = model(to_input(crops)).permute(0, 2, 3, 1).numpy()
    got = load_parser()(crops)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-3
    assert (got.argmax(-1) == expected.argmax(-1)).mean() > 0.999


def test_backend_runs_through_the_pipeline(data_dir: Path) -> None:
    assert "learned" in PARSERS.names
    settings = DEFAULTS.replace(parser="learned")
    preparer = FacePreparer(settings)
    assert isinstance(preparer.parser, LearnedParser)
    faces = preparer.prepare(load_image(sample(data_dir / "celeba" / "wild", 1)[0]).pixels)
    assert faces
    masks = faces[0].masks
    assert masks.shape == (len(REGIONS), *INPUT_SIZE)
    np.testing.assert_array_equal(masks.sum(0), 1.0)
    assert faces[0].grid_masks.shape == (len(REGIONS), 7, 6)
    # an aligned crop alone (no photo around it) is parsed too
    alone = parser("learned", settings).masks(faces[0].crop, _in_crop(faces[0]))
    assert alone.shape == masks.shape and _region(alone, "eyes").any()


def _in_crop(face):
    from facesearch.pipeline.detect.base import Detection

    landmarks = np.asarray(alignment.TEMPLATE)
    return Detection(bbox=np.array([20.0, 18.0, 77.0, 98.0]), score=face.score, landmarks=landmarks)


def test_missing_weights_are_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(FaceSearchError, match="parser weights not found"):
        load_parser_file(tmp_path / "nothing.safetensors")
    with pytest.raises(FaceSearchError, match="head crops"):
        load_parser()(np.zeros((1, 64, 64, 3), np.uint8))


def test_describe_draws_the_learned_masks(data_dir: Path, tmp_path: Path) -> None:
    """`facesearch describe --parser learned --out`: the faces carry the learned parser's masks
    and the overlay draws them."""
    from facesearch import FaceSearch
    from facesearch.pipeline.detect.base import Detection
    from facesearch.render import save_overlay

    path = sample(data_dir / "celeba" / "wild", 2)[1]
    faces = FaceSearch(tmp_path / "index", settings=DEFAULTS.replace(parser="learned")).describe(path)
    assert faces
    out = tmp_path / "overlay.png"
    save_overlay(out, path, faces)
    assert out.stat().st_size > 0
    face = faces[0]
    pixels = load_image(path).pixels
    matrix = alignment.template_transform(np.asarray(face.landmarks))
    again = LearnedParser().masks_in_photo(
        pixels, Detection(bbox=np.asarray(face.bbox), score=1.0, landmarks=np.asarray(face.landmarks)),
        matrix, alignment.warp(pixels, matrix))
    assert (np.asarray(face.masks) == again).mean() > 0.99
