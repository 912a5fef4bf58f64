"""Face detectors behind one interface (`base.Detector`), one file per backend, chosen by name.

    from facesearch.pipeline.detect import detector
    faces = detector(settings.detector, settings).detect(pixels)   # list[Detection]
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from facesearch.registry import Backends
from facesearch.pipeline.detect.base import Detection, Detector

if TYPE_CHECKING:
    from facesearch.settings import Settings

#: Known detectors: name -> "module:Class" (imported when asked for).
DETECTORS: Backends[Detector] = Backends("detector", {
    "mediapipe": "facesearch.pipeline.detect.mediapipe:MediapipeDetector",
    "scrfd": "facesearch.pipeline.detect.scrfd:ScrfdDetector",
})


def detector(name: str, settings: Settings) -> Detector:
    """A new detector backend by name, configured by `settings`; FaceSearchError (one line,
    naming the known backends) for an unknown name."""
    return DETECTORS.create(name, settings)


__all__ = ["DETECTORS", "Detection", "Detector", "detector"]
