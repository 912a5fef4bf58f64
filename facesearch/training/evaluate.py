"""`facesearch eval`: the shipped model measured on the validation identities, beside dlib's
descriptor on the same photos (training.metrics gives the measures)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from facesearch.models.descriptor import shipped_model
from facesearch.training import dlib_anchor
from facesearch.training.data import SOURCES, data_dir, prepared_dir
from facesearch.training.metrics import format_table, identity_report
from facesearch.training.train import TrainSettings, evaluate_split, load_data

__all__ = ["evaluate_shipped_model", "format_table"]


def evaluate_shipped_model(with_dlib: bool = True, cache_dir: Path = Path("cache"),
                           root: Path | None = None) -> tuple[dict, dict | None]:
    """Measure the shipped model (and dlib, when installed) on the validation identities of the
    training data split, prepared by the index's detector and parser (data.prepared_dir); dlib's
    descriptors are cached beside those faces. Returns (ours, dlib's)."""
    settings = TrainSettings(cache_dir=str(cache_dir))
    _, validation, _ = load_data(settings, root)
    ours = evaluate_split(shipped_model().network, validation)
    if not with_dlib:
        return ours, None
    if not dlib_anchor.available():
        return ours, None
    folder = root or data_dir()
    paths = [folder / SOURCES[source][0] / name for source, name in zip(validation.source, validation.files)]
    cached = prepared_dir(cache_dir, settings.detector, settings.parser) / "dlib_validation.npz"
    if cached.exists() and list(np.load(cached)["files"]) == [str(p) for p in paths]:
        vectors = np.load(cached)["vectors"]
    else:
        vectors = dlib_anchor.dlib_descriptors(paths)
        np.savez(cached, vectors=vectors, files=np.array([str(p) for p in paths]))
    return ours, identity_report(vectors, validation.identity, validation.celeba)
