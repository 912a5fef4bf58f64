"""The networks facesearch runs, one file per model, with their weights and model cards
(`weights/`): `base` (the `Embedder` interface: name, version, dim, crops -> vectors),
`descriptor` (the 364-dim master-vector network of the patent, ours, an Embedder named
"master"), `mediapipe` (the detectors, face mesh and person segmenter that ship inside
mediapipe)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from facesearch.registry import Backends
from facesearch.spec import MASTER

if TYPE_CHECKING:
    from facesearch.models.base import Embedder
    from facesearch.settings import Settings

#: Embedders by the vector space they fill: name -> "module:Class" (imported when asked for).
#: The identity space's embedder will be registered here beside the master one.
EMBEDDERS: Backends[Embedder] = Backends("embedder", {
    MASTER: "facesearch.models.descriptor:DescriptorModel",
})


def embedder(name: str, settings: Settings) -> Embedder:
    """The embedder of a vector space by name ("master"), configured by `settings`;
    FaceSearchError (one line, naming the known ones) for an unknown name."""
    return EMBEDDERS.create(name, settings)
