"""The mediapipe 0.10.21 models facesearch uses (they ship inside its wheel), loaded quietly.

mediapipe's C++ side (glog, TensorFlow Lite) logs start-up chatter straight to file descriptor 2;
users should see only facesearch's own lines. That chatter comes when mediapipe is imported and
when a graph is created and runs its first inference, so each loader below does all three with
the descriptor muted (a process-wide redirection, held only while loading); `run`, the call on
the query path, touches no process-wide state. One exception: the face mesh warns once per
process the first time it projects a face's landmarks (no blank warm-up image has a face), so
face-mesh calls stay muted until the first face mesh is found in the process, and never after.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

import numpy as np


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
    """mediapipe.solutions, importing mediapipe (muted, its C++ logging at warnings and up:
    GLOG_minloglevel and TF_CPP_MIN_LOG_LEVEL, unless the user set them) the first time."""
    if "mediapipe" not in sys.modules:
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with muted_stderr():
        import mediapipe as mp
    return mp.solutions


def _warmed_up(model, image: np.ndarray):
    """`model` after one inference on `image` (called muted: first inferences log once)."""
    model.process(image)
    return model


def face_detectors(min_score: float) -> list:
    """mediapipe's short-range (close-ups, crops) and full-range (faces further away) detectors."""
    detection = _solutions().face_detection
    with muted_stderr():
        detectors = [detection.FaceDetection(model_selection=selection, min_detection_confidence=min_score)
                     for selection in (0, 1)]
        for detector in detectors:  # first inferences log once: here, muted and one at a time
            _warmed_up(detector, np.zeros((64, 64, 3), np.uint8))
    return detectors


#: Set once a face mesh was found in this process: mediapipe's one-time warning is then out.
_mesh_warned = threading.Event()


class _FaceMesh:
    """mediapipe's FaceMesh, muted until the process's first found mesh (see the module's note)."""

    def __init__(self, model):
        self._model = model

    def process(self, image: np.ndarray):
        if _mesh_warned.is_set():
            return self._model.process(image)
        with muted_stderr():
            result = self._model.process(image)
        if result.multi_face_landmarks:
            _mesh_warned.set()
        return result


def face_mesh() -> _FaceMesh:
    """The 468-point face mesh, one face per (cropped) image (`.process(image)` as mediapipe's)."""
    with muted_stderr():
        return _FaceMesh(_warmed_up(_solutions().face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=0.3), np.zeros((64, 64, 3), np.uint8)))


def person_segmenter():
    """Selfie segmentation: a person-vs-background probability per pixel."""
    with muted_stderr():
        return _warmed_up(_solutions().selfie_segmentation.SelfieSegmentation(model_selection=0),
                          np.zeros((64, 64, 3), np.uint8))


def mesh_connections() -> dict[str, frozenset]:
    """The face-mesh point groups (edges) of the face parts, by mediapipe's names."""
    mesh = _solutions().face_mesh
    return {name: value for name, value in vars(mesh).items()
            if name.startswith("FACEMESH_") and isinstance(value, frozenset)}


def run(model, image: np.ndarray):
    """model.process(image) on an (H, W, 3) uint8 RGB image (made contiguous); the model's
    loader already took its start-up chatter, so nothing process-wide is touched here."""
    return model.process(np.ascontiguousarray(image))
