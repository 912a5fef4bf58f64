"""Photos and videos -> faces with master and identity vectors, fast: photos are read through their
media source (sources.media_source: decoding) and prepared (detection, alignment, region masks) on
`Settings.describe_threads` threads while the embedder (the descriptor network unless another is
given) describes the faces of `Settings.describe_batch` photos at a time.

    describer = Describer(settings)
    for outcome in describer.stream(["a.jpg", "b.jpg"]):   # in order
        ...  # (original size, [Face, ...]) or the exception that photo raised
"""
from __future__ import annotations

import dataclasses
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from facesearch.models import embedder
from facesearch.pipeline.pixel_attributes import with_classes
from facesearch.pipeline.faces import Face, TrackSpan
from facesearch.pipeline.images import rgb_array
from facesearch.pipeline.sources import media_kind, media_source
from facesearch.settings import DEFAULTS, Settings
from facesearch.spec import AGE_KEY, IDENTITY, MASTER, REGION_DIM, unit_mean

if TYPE_CHECKING:
    from facesearch.models.base import Embedder
    from facesearch.pipeline.prepare import PreparedFace

#: One photo's outcome: (original size (w, h), or None for an array; its faces, largest first).
Described = tuple[tuple[int, int] | None, list[Face]]
#: Stored numbers every face this describer gives carries in its attributes, photo or video:
#: its quality record (pipeline/detect/quality.py). They came with the expressions and the pixel
#: attributes (migration 0007), so a stored face without them was described before all three:
#: `facesearch index` describes its photo again to fill them in (index.indexer refresh_keys).
DESCRIBED_KEYS: tuple[str, ...] = ("quality",)


def pipeline_version(model_version: str, settings: Settings) -> str:
    """What a photo's stored vectors depend on: the master model's version and, when not the
    shipped defaults, the detector and parser that aligned and masked its faces (another
    detector's landmarks move every vector: an identical photo scored 6.32 of 7 across them).
    Indexes compare vectors only within one such version; the defaults keep the bare model
    version, so indexes made before stay valid."""
    changed = [f"{kind}={name}" for kind, name, default in (
        ("detector", settings.detector, DEFAULTS.detector),
        ("parser", settings.parser, DEFAULTS.parser)) if name != default]
    return model_version if not changed else f"{model_version}+{','.join(changed)}"


class Describer:
    """Describes photos (paths or RGB arrays) with an embedder (the shipped descriptor model
    unless another is given); create once and reuse (models load on first use, one preparer,
    with the backends Settings.detector and Settings.parser name, per thread). Thread-safe to
    call from one thread at a time; `close()` lets the threads go."""

    def __init__(self, settings: Settings = DEFAULTS, model: Embedder | None = None):
        self.settings = settings
        self._given_model = model

    @cached_property
    def model(self) -> Embedder:
        """The embedder (the master space's, models.EMBEDDERS, unless another was given)."""
        if self._given_model is not None:
            return self._given_model
        return embedder(MASTER, self.settings)

    @cached_property
    def identity_model(self) -> Embedder:
        """The identity space's embedder (models.EMBEDDERS["identity"]: ArcFace), which gives
        every face its `identity` vector."""
        return embedder(IDENTITY, self.settings)

    @cached_property
    def _threads(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.settings.describe_threads,
                                  thread_name_prefix="facesearch-prepare")

    @cached_property
    def _thread_state(self) -> threading.local:
        return threading.local()

    def prepare_one(self, image, scale: float = 1.0
                    ) -> tuple[tuple[int, int] | None, list[PreparedFace]] | Exception:
        """(original size (w, h), prepared faces) of one photo (a path, read through its media
        source, or an (H, W, 3) uint8 RGB array whose pixels are 1/`scale` of the original's:
        size None) on a preparing thread, or its error."""
        try:
            preparer = getattr(self._thread_state, "preparer", None)
            if preparer is None:  # mediapipe graphs are not shared between threads
                from facesearch.pipeline.prepare import FacePreparer
                preparer = self._thread_state.preparer = FacePreparer(self.settings)
            if isinstance(image, np.ndarray):
                return None, preparer.prepare(rgb_array(image), scale)
            item = next(iter(media_source(image, self.settings)))  # a photo: its one item
            return item.original_size, preparer.prepare(item.pixels, item.scale)
        except Exception as error:  # noqa: BLE001 - handed to the caller, photo by photo
            return error

    def stream(self, images: Iterable) -> Iterator[Described | Exception]:
        """Per image, in order: (original size, faces), or the exception describing it raised. A
        video (a path media_kind calls one) gives (its size, one Face per track: describe_video)."""
        pending: deque = deque()
        batch = self.settings.describe_batch

        def finish(count: int) -> Iterator:
            try:  # load the models (torch, the weights) while the photos are being prepared
                _ = self.model, self.identity_model
            except Exception:  # noqa: BLE001 - describe_prepared below reports it per photo
                pass
            results = [_outcome(pending.popleft()) for _ in range(count)]
            prepared = [result[1] for result in results if not isinstance(result, Exception)]
            try:
                described = iter(self.describe_prepared(prepared))
            except Exception as error:  # noqa: BLE001 - the batch fails, each photo says why
                described = iter([error] * len(prepared))
            for result in results:
                if isinstance(result, Exception):
                    yield result
                else:
                    faces = next(described)
                    yield faces if isinstance(faces, Exception) else (result[0], faces)

        for image in images:
            if not isinstance(image, np.ndarray) and media_kind(image) == "video":
                while pending:  # in order: the photos before it first
                    yield from finish(min(batch, len(pending)))
                try:
                    yield self.describe_video(image)
                except Exception as error:  # noqa: BLE001 - handed to the caller, file by file
                    yield error
                continue
            pending.append(self._threads.submit(self.prepare_one, image))
            if len(pending) >= 2 * batch:  # the next batch is prepared meanwhile
                yield from finish(batch)
        while pending:
            yield from finish(min(batch, len(pending)))

    def describe_prepared(self, photos: list[list[PreparedFace]],
                          identities: np.ndarray | None = None) -> list[list[Face]]:
        """The embedders (master, then identity) over the prepared faces of several photos in
        one batch; faces per photo. `identities` ((n, 512), one per face in order) are used
        instead of running the identity embedder when given (a video's, computed for tracking)."""
        prepared = [face for faces in photos for face in faces]
        if not prepared:
            return [[] for _ in photos]
        embedded = _embed(self.model, prepared)
        if identities is None:
            identities = _embed(self.identity_model, prepared).vectors
        faces = [Face(vector=embedded.vectors[i], bbox=[round(float(v), 1) for v in p.bbox],
                      landmarks=[[round(float(x), 1), round(float(y), 1)] for x, y in p.landmarks],
                      attributes=_attributes(embedded.attributes(i), p),
                      score=round(p.score, 4),
                      crop=p.crop, masks=p.masks, identity=identities[i])
                 for i, p in enumerate(prepared)]
        ends = np.cumsum([len(photo) for photo in photos])
        return [faces[end - len(photo):end] for photo, end in zip(photos, ends)]

    def describe_video(self, path) -> Described:
        """A video's faces, one per track (pipeline.tracking): frames sampled Settings.video_fps
        times a second (sources.VideoSource) are prepared on the preparing threads, their faces
        get identity vectors Settings.describe_batch frames at a time and are tracked; each track
        is then described from its best frames (tracking.BEST_FRAMES, through describe_prepared):
        the master vector is the mean of theirs with each 52-dim region block scaled back to
        unit norm, the identity the normalised mean of every frame's, attributes their mean;
        box, landmarks, score and crop are the best frame's, `track` says when (seconds). Returns ((width, height), faces by
        track start). Raises video.VideoError (one line) for a file that cannot be decoded."""
        # imported here: norfair (and its plotting imports) would add ~1.5 s to every cold query
        from facesearch.pipeline.tracking import VideoTracks

        tracks = VideoTracks(self.settings.video_fps)
        size: tuple[int, int] | None = None
        waiting: deque = deque()  # (item, future of its prepared faces)

        def track(count: int) -> None:
            done = [(item, _outcome(future)) for item, future in
                    (waiting.popleft() for _ in range(count))]
            for _, result in done:
                if isinstance(result, Exception):
                    raise result
            faces = [face for _, (_, prepared) in done for face in prepared]
            identities = (_embed(self.identity_model, faces).vectors if faces
                          else np.zeros((0, 0), np.float32))
            start = 0
            for item, (_, prepared) in done:
                tracks.add(item.timestamp, prepared, identities[start:start + len(prepared)],
                           item.pixels, item.scale)
                start += len(prepared)

        batch = self.settings.describe_batch
        for item in media_source(path, self.settings):
            size = item.original_size
            waiting.append((item, self._threads.submit(self.prepare_one, item.pixels, item.scale)))
            if len(waiting) >= 2 * batch:
                track(batch)
        if waiting:
            track(len(waiting))
        found = tracks.finish()
        best = [[observation.prepared for observation in track.best] for track in found]
        known = [observation.identity for track in found for observation in track.best]
        described_tracks = self.describe_prepared(best, np.stack(known) if known else None)
        faces = []
        for found_track, described, observations in zip(found, described_tracks,
                                                        (track.best for track in found)):
            top = described[0]  # the best frame's face: its box, landmarks, score and crop
            attributes = {name: round(float(np.mean([face.attributes[name] for face in described
                                                     if name in face.attributes])), 1 if name == AGE_KEY else 4)
                          for name, value in top.attributes.items() if isinstance(value, (int, float))}
            faces.append(dataclasses.replace(
                top, vector=unit_mean(np.stack([face.vector for face in described]), REGION_DIM),
                identity=found_track.identity, attributes=attributes,
                track=TrackSpan(track_id=found_track.track_id, start=found_track.start,
                                end=found_track.end, time=observations[0].time,
                                frames=found_track.frames)))
        return size, faces

    def close(self) -> None:
        """Let go of the preparing threads (and their models)."""
        if "_threads" in self.__dict__:
            self.__dict__.pop("_threads").shutdown(wait=True)
            self.__dict__.pop("_thread_state", None)


def _attributes(classes: dict[str, float], prepared: PreparedFace) -> dict[str, float]:
    """A face's attributes: the network's classes, its quality record and its pixel attributes
    (pipeline/pixel_attributes.py, read with the classes: red hair needs hair to be seen)."""
    return classes | prepared.quality_record | with_classes(prepared.pixel_attributes, classes)


def _embed(model: Embedder, prepared: list[PreparedFace]):
    """One embedder over prepared faces, each given the crop (and masks) the embedder takes."""
    crops = np.stack([p.identity_crop if model.crop == IDENTITY else p.crop for p in prepared])
    grid_masks = np.stack([p.grid_masks for p in prepared]) if model.uses_masks else None
    return model.embed(crops, grid_masks)


def _outcome(future: Future):
    """A future's result, or the exception it raised (KeyboardInterrupt still goes up)."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - handed to the caller, photo by photo
        return error
