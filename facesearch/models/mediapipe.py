"""The mediapipe 0.10.21 models facesearch uses (they ship inside its wheel), run quietly.

mediapipe's C++ side logs start-up chatter straight to file descriptor 2; users should see
only facesearch's own lines, so model creation and calls run with that descriptor muted.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


_mute_lock = threading.Lock()
_mute_depth = 0
_saved_stderr: int | None = None


@contextlib.contextmanager
def muted_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (C++ logging included).

    Safe across threads (models run side by side): the first caller mutes, the last restores.
    """
    global _mute_depth, _saved_stderr
    with _mute_lock:
        if _mute_depth == 0:
            sys.stderr.flush()
            _saved_stderr = os.dup(2)
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
        _mute_depth += 1
    try:
        yield
    finally:
        with _mute_lock:
            _mute_depth -= 1
            if _mute_depth == 0 and _saved_stderr is not None:
                os.dup2(_saved_stderr, 2)
                os.close(_saved_stderr)
                _saved_stderr = None


def _solutions():
    with muted_stderr():
        import mediapipe as mp
    return mp.solutions


def face_detectors(min_score: float) -> list:
    """mediapipe's short-range (close-ups, crops) and full-range (faces further away) detectors."""
    detection = _solutions().face_detection
    with muted_stderr():
        detectors = [detection.FaceDetection(model_selection=selection, min_detection_confidence=min_score)
                     for selection in (0, 1)]
        for detector in detectors:  # first inferences log once: here, muted and one at a time
            detector.process(np.zeros((64, 64, 3), np.uint8))
    return detectors


def face_mesh():
    """The 468-point face mesh, one face per (cropped) image."""
    with muted_stderr():
        return _solutions().face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                refine_landmarks=False, min_detection_confidence=0.3)


def person_segmenter():
    """Selfie segmentation: a person-vs-background probability per pixel."""
    with muted_stderr():
        return _solutions().selfie_segmentation.SelfieSegmentation(model_selection=0)


def mesh_connections() -> dict[str, frozenset]:
    """The face-mesh point groups (edges) of the face parts, by mediapipe's names."""
    mesh = _solutions().face_mesh
    return {name: value for name, value in vars(mesh).items()
            if name.startswith("FACEMESH_") and isinstance(value, frozenset)}


def run(model, image: np.ndarray):
    """model.process(image) with the C++ chatter muted."""
    with muted_stderr():
        return model.process(np.ascontiguousarray(image))
