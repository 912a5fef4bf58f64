"""facesearch: face similarity search over 7-region master vectors, by photo or by description.

    from facesearch import FaceSearch
    fs = FaceSearch("indexes/default")
    fs.index(["./photos"])
    hits = fs.query(text="black hair, smiling", k=10)
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["FaceSearch", "Face", "Hit", "Hits", "FaceSearchError"]
__version__ = "0.1.0"

#: Public names and the modules they live in, imported on first use so that `facesearch train`
#: and the CLI's --help start without loading the search stack.
_EXPORTS = {"FaceSearch": "api", "Hits": "api", "Face": "results", "Hit": "results",
            "FaceSearchError": "errors"}

if TYPE_CHECKING:
    from .api import FaceSearch, Hits
    from .errors import FaceSearchError
    from .results import Face, Hit


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'facesearch' has no attribute {name!r}")
