"""facesearch: face similarity search over 7-region master vectors, by photo or by description.

    from facesearch import FaceSearch
    fs = FaceSearch("indexes/default")
    fs.index(["./photos"])
    hits = fs.query(text="black hair, smiling", k=10)

The public surface is what this module exports; everything else is internal. Where a photo's
364 numbers come from, by module: pipeline/sources -> images -> detect -> alignment -> parse ->
prepare -> describer -> models/descriptor (README: Layout).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["FaceSearch", "Settings", "Face", "Hit", "Hits", "IndexReport", "FaceSearchError"]
__version__ = "0.1.0"

#: Public names and the modules they live in, imported on first use so that `facesearch train`
#: and the CLI's --help start without loading the search stack.
_EXPORTS = {"FaceSearch": "api", "Settings": "settings", "Face": "pipeline.faces",
            "Hit": "search.hits", "Hits": "search.hits", "IndexReport": "index.indexer",
            "FaceSearchError": "errors"}

if TYPE_CHECKING:
    from facesearch.api import FaceSearch
    from facesearch.errors import FaceSearchError
    from facesearch.index.indexer import IndexReport
    from facesearch.pipeline.faces import Face
    from facesearch.search.hits import Hit, Hits
    from facesearch.settings import Settings


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'facesearch' has no attribute {name!r}")
