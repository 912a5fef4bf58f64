"""The "mediapipe" detector backend: the models that ship inside mediapipe 0.10.21 (offline).

Two detectors (short range for close-ups and crops, full range for faces further away) are
merged, then every face is cut out roughly by its 6 detector keypoints and the 468-point face
mesh refines its landmarks. Landmarks come back in pixels of the image given; the mesh, when
found, as `Detection.points["mesh"]` (468, 2), which the "mesh" parser draws regions from.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

import numpy as np

from facesearch.models import mediapipe as mediapipe_models
from facesearch.pipeline import alignment
from facesearch.pipeline.detect import tiling
from facesearch.pipeline.detect.base import Detection, Detector
from facesearch.settings import DEFAULTS, Settings

#: Mesh points used for the 5 alignment landmarks.
MESH_LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
MESH_RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MESH_NOSE_TIP = 1
MESH_MOUTH_CORNERS = (61, 291)
#: Mouth corners sit this fraction of the eye-to-eye vector either side of the mouth centre.
MOUTH_HALF_WIDTH = 0.4
#: Zoom of the rough crop the face mesh runs on (a face half the crop's width suits it best).
MESH_ZOOM = 2.5
#: Detections overlapping more than this (IoU) are the same face...
NMS_IOU = 0.4
#: ...and so is a box whose overlap covers this share of the smaller box (a box inside another).
NMS_CONTAINED = 0.6
#: A detection whose face mesh failed is kept only above this score (lower ones are mostly
#: wallpaper, furniture or a torso) and only if it overlaps no face that has a mesh.
MESHLESS_MIN_SCORE = 0.8
#: Smallest face (box side in pixels) worth describing.
MIN_FACE_SIDE = 12


class MediapipeDetector(Detector):
    """mediapipe's two face detectors, merged, refined by its face mesh. Create once and reuse
    (the graphs load on first use); one instance per thread (mediapipe graphs are not shared)."""

    name = "mediapipe"

    def __init__(self, min_score: float = DEFAULTS.min_detection_score):
        self.min_score = min_score

    @classmethod
    def from_settings(cls, settings: Settings) -> MediapipeDetector:
        return cls(min_score=settings.min_detection_score)

    @cached_property
    def _detectors(self) -> list:
        return mediapipe_models.face_detectors(self.min_score)

    @cached_property
    def _threads(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=len(self._detectors), thread_name_prefix="facesearch-detect")

    @cached_property
    def _mesh(self):
        return mediapipe_models.face_mesh()

    def detect(self, image: np.ndarray) -> list[Detection]:
        """All faces of an (H, W, 3) uint8 RGB image, largest first, in its pixels."""
        image = np.ascontiguousarray(image)
        height, width = image.shape[:2]
        boxes, scores, keypoints = [], [], []
        # The two detectors run side by side: mediapipe's C++ graphs release the GIL.
        for result in self._threads.map(lambda detector: mediapipe_models.run(detector, image),
                                        self._detectors):
            for detection in result.detections or ():
                if detection.score[0] < self.min_score:  # mediapipe's own threshold lets some by
                    continue
                location = detection.location_data
                box = location.relative_bounding_box
                x0, y0 = box.xmin * width, box.ymin * height
                x1, y1 = x0 + box.width * width, y0 + box.height * height
                boxes.append((max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)))
                scores.append(detection.score[0])
                keypoints.append([(p.x * width, p.y * height) for p in location.relative_keypoints])
        faces = []
        for i in tiling.nms(boxes, scores, NMS_IOU, contained=NMS_CONTAINED):
            box = np.asarray(boxes[i])
            if min(box[2] - box[0], box[3] - box[1]) < MIN_FACE_SIDE:
                continue
            rough = _landmarks_from_keypoints(np.asarray(keypoints[i]))
            mesh = self.face_mesh(image, rough)
            landmarks = landmarks_from_mesh(mesh) if mesh is not None else rough
            faces.append(Detection(bbox=box, score=float(scores[i]), landmarks=landmarks,
                                   points={} if mesh is None else {"mesh": mesh}))
        meshed = [face.bbox for face in faces if face.mesh is not None]
        faces = [face for face in faces if face.mesh is not None or (
            face.score >= MESHLESS_MIN_SCORE and not any(_overlap(face.bbox, box) > 0 for box in meshed))]
        faces.sort(key=lambda face: face.area, reverse=True)
        return faces

    def face_mesh(self, image: np.ndarray, rough: np.ndarray) -> np.ndarray | None:
        """The (468, 2) face-mesh points, in image pixels, of the face of an (H, W, 3) uint8 RGB
        image at (5, 2) `rough` landmarks (this detector's, or another's: the pixel attributes
        fit a mesh to scrfd's faces); None if not found."""
        matrix = alignment.template_transform(rough, zoom=MESH_ZOOM)
        crop = alignment.warp(image, matrix, zoom=MESH_ZOOM)
        result = mediapipe_models.run(self._mesh, crop)
        if not result.multi_face_landmarks:
            return None
        height, width = crop.shape[:2]
        points = np.array([(p.x * width, p.y * height)
                           for p in result.multi_face_landmarks[0].landmark])
        mesh = alignment.transform_points(points, alignment.invert(matrix))
        eye_distance = np.linalg.norm(rough[1] - rough[0])
        if np.linalg.norm(landmarks_from_mesh(mesh)[:2] - rough[:2], axis=1).max() > eye_distance:
            return None  # the mesh latched onto another face in the crop
        return mesh


def landmarks_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """The 5 alignment landmarks from the 468 face-mesh points."""
    eyes = sorted((mesh[list(MESH_LEFT_EYE)].mean(0), mesh[list(MESH_RIGHT_EYE)].mean(0)),
                  key=lambda point: point[0])
    mouth = sorted((mesh[i] for i in MESH_MOUTH_CORNERS), key=lambda point: point[0])
    return np.array([eyes[0], eyes[1], mesh[MESH_NOSE_TIP], mouth[0], mouth[1]])


def _landmarks_from_keypoints(keypoints: np.ndarray) -> np.ndarray:
    """5 landmarks from the detector's 6 keypoints (eyes, nose tip, mouth centre, ears)."""
    left_eye, right_eye = sorted(keypoints[:2], key=lambda point: point[0])
    offset = MOUTH_HALF_WIDTH * (right_eye - left_eye)
    mouth = keypoints[3]
    return np.array([left_eye, right_eye, keypoints[2], mouth - offset, mouth + offset])


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Area of the intersection of two boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return width * height
