"""Region parsers behind one interface (`base.Parser`: the 7 region masks of an aligned face),
one file per backend, chosen by name.

    from facesearch.pipeline.parse import parser
    masks = parser(settings.parser, settings).masks(crop, face_in_crop)   # (7, 112, 96)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from facesearch.registry import Backends
from facesearch.pipeline.parse.base import Parser, coarse_masks

if TYPE_CHECKING:
    from facesearch.settings import Settings

#: Known parsers: name -> "module:Class" (imported when asked for).
PARSERS: Backends[Parser] = Backends("parser", {
    "mesh": "facesearch.pipeline.parse.mesh:MeshParser",
    "learned": "facesearch.pipeline.parse.learned:LearnedParser",
})


def parser(name: str, settings: Settings) -> Parser:
    """A new parser backend by name, configured by `settings`; FaceSearchError (one line,
    naming the known backends) for an unknown name."""
    return PARSERS.create(name, settings)


__all__ = ["PARSERS", "Parser", "coarse_masks", "parser"]
