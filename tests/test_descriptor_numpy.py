"""The descriptor network's numpy forward (what describing runs) against the torch network (what
training made), on real faces: same vectors, probabilities and ages; and describing a photo
imports no torch."""
from __future__ import annotations

import subprocess
import sys

from pathlib import Path

import numpy as np
import pytest

from facesearch import FaceSearch
from facesearch.models.descriptor import embed_faces, shipped_model
from facesearch.models.descriptor_numpy import NumpyDescriptorNet
from facesearch.pipeline.prepare import FacePreparer
from tests.conftest import REPO_ROOT, rgb, sample


@pytest.fixture(scope="module")
def prepared(data_dir):
    preparer = FacePreparer()
    faces = [face for path in sample(data_dir / "celeba" / "wild", 6)
             for face in preparer.prepare(rgb(path))]
    assert len(faces) >= 6
    return np.stack([f.crop for f in faces]), np.stack([f.grid_masks for f in faces])


def test_numpy_forward_matches_torch(prepared):
    crops, masks = prepared
    model = shipped_model()
    assert isinstance(model.numpy_network, NumpyDescriptorNet)
    ours = embed_faces(model.numpy_network, crops, masks)  # numpy: what model.embed runs
    theirs = embed_faces(model.network, crops, masks)       # torch
    assert np.abs(ours.vectors - theirs.vectors).max() < 1e-3
    assert np.abs(ours.probabilities - theirs.probabilities).max() < 1e-3
    assert np.abs(ours.ages - theirs.ages).max() < 0.05  # years
    cosines = np.einsum("nd,nd->n", ours.vectors, theirs.vectors)
    assert cosines.min() > 7 - 1e-3  # seven unit blocks each: the same master vectors
    for i in range(len(crops)):
        assert ours.attributes(i).keys() == theirs.attributes(i).keys()


def test_onnx_backbone_matches_numpy(prepared):
    """The backbone describing runs (onnxruntime, models/descriptor_onnx.py) gives numpy's
    features on real faces, and the master vectors through either agree."""
    crops, masks = prepared
    network = shipped_model().numpy_network
    assert network.backbone is not None  # onnxruntime is a dependency: the fast path is taken
    images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), dtype=np.float32) / 255
    fast, reference = network.features(images), network.numpy_features(images)
    assert fast.shape == reference.shape == (len(crops), 7, 6, 96)
    assert np.abs(fast - reference).max() < 1e-4 * max(1.0, np.abs(reference).max())
    vectors, _ = network(images, masks.astype(np.float32))
    backbone, network.backbone = network.backbone, None  # numpy's own backbone for once
    try:
        numpy_vectors, _ = network(images, masks.astype(np.float32))
    finally:
        network.backbone = backbone
    assert np.einsum("nd,nd->n", vectors, numpy_vectors).min() > 7 * 0.9999


def test_describing_a_photo_imports_no_torch(data_dir):
    photo = sample(data_dir / "celeba" / "wild", 1)[0]
    code = ("import sys; from facesearch import FaceSearch; import tempfile\n"
            "faces = FaceSearch(tempfile.mkdtemp()).describe(sys.argv[1])\n"
            "assert faces and faces[0].vector.shape == (364,)\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(photo)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_age_is_the_expectation_over_age_groups(prepared):
    """The shipped weights carry each age group's mean training age, and a face's age is the
    expected age over its age-group probabilities (network_layout.AGE_GROUP_MEANS); weights
    saved before them (no such tensor) read the age head, as they did."""
    from facesearch.models.network_layout import HEADS, class_probabilities
    from facesearch.spec import AGE_GROUPS

    crops, masks = prepared
    network = shipped_model().numpy_network
    means = network.age_group_means
    assert means is not None and means.shape == (len(AGE_GROUPS),)
    for (_, low, high), mean in zip(AGE_GROUPS, means):  # each inside its group's range
        assert low <= mean <= high
    embedded = embed_faces(network, crops, masks)
    groups = embedded.probabilities[:, HEADS["age_group"]]
    assert np.all(embedded.ages >= groups @ means - 0.01)  # the oldest group's share only adds
    assert np.all((embedded.ages > 10) & (embedded.ages < 80))  # CelebA's adults
    logits = np.zeros((1, HEADS["age"].stop), np.float32)
    logits[0, HEADS["age"]] = 0.4
    assert class_probabilities(logits)[1][0] == pytest.approx(40.0)  # no means: the age head
    assert class_probabilities(logits, means)[1][0] == pytest.approx(means.mean(), abs=0.01)


def test_the_oldest_faces_read_past_the_oldest_groups_mean() -> None:
    """Sure of the oldest group, the expected age alone stops at its mean (80 years: 99-year-olds
    read 80); AGE_TOP_SHARE of the age head's excess carries it further, and younger faces
    (the age head under that mean) are unchanged."""
    from facesearch.models.network_layout import HEADS, class_probabilities
    from facesearch.spec import AGE_GROUPS

    means = np.linspace(2.0, 80.0, len(AGE_GROUPS)).astype(np.float32)
    logits = np.zeros((2, HEADS["age"].stop), np.float32)
    logits[:, HEADS["age_group"].stop - 1] = 30.0  # the oldest group, surely
    logits[:, HEADS["age"]] = [[1.0], [0.5]]       # the age head: 100 and 50 years
    assert class_probabilities(logits, means)[1] == pytest.approx([80.0, 80.0], abs=0.01)
    assert class_probabilities(logits, means, 0.25)[1] == pytest.approx([85.0, 80.0], abs=0.01)
    assert shipped_model().numpy_network.age_top_share == pytest.approx(0.25)


def test_the_young_attribute_pulls_an_unsure_age_its_way(data_dir: Path, tmp_path: Path) -> None:
    """network_layout.AGE_YOUNG_EVIDENCE: with the shipped evidence, age groups unsure between
    30-39 and 50-59 read younger for a face the Young head calls young than for one it calls
    old; sure age groups barely move; without evidence (or weight 0) nothing changes. On a
    real photo (CelebA wild 009967, a man of about 30 in a cap and large glasses, Young 0.84),
    the age read 61.7 without it, 57.8 with it (a trial's "a man over 60 with glasses" listed him)."""
    from facesearch.models.network_layout import HEADS, YOUNG, class_probabilities
    from facesearch.spec import AGE_GROUPS

    network = shipped_model().numpy_network
    evidence, weight = network.age_young_evidence, network.age_young_weight
    assert evidence is not None and evidence.shape == (2, len(AGE_GROUPS)) and weight > 0
    means, top = network.age_group_means, network.age_top_share
    logits = np.zeros((2, HEADS["age"].stop), np.float32)
    names = [name for name, _, _ in AGE_GROUPS]
    logits[:, HEADS["age_group"].start + names.index("age_30_39")] = 5.0
    logits[:, HEADS["age_group"].start + names.index("age_50_59")] = 5.0
    logits[:, YOUNG] = [3.0, -3.0]  # P(Young) 0.95 and 0.05
    plain = class_probabilities(logits, means, top)[1]
    young, old = class_probabilities(logits, means, top, evidence, weight)[1]
    assert plain[0] == pytest.approx(plain[1]) and young < plain[0] - 3 and old > plain[1] + 3
    assert np.array_equal(class_probabilities(logits, means, top, evidence, 0.0)[1], plain)
    sure = logits.copy()
    sure[:, HEADS["age_group"].start + names.index("age_50_59")] = 15.0
    moved = class_probabilities(sure, means, top, evidence, weight)[1] - class_probabilities(sure, means, top)[1]
    assert np.all(np.abs(moved) < 0.5)
    with FaceSearch(tmp_path / "index") as fs:
        face = fs.describe(data_dir / "celeba" / "wild" / "009967.jpg")[0]
    assert face.attributes["Young"] > 0.8 and face.attributes["age"] < 59  # not "over 60" now
