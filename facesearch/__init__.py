"""facesearch: face similarity search over 7-region master vectors, by photo or by description.

    from facesearch import FaceSearch
    fs = FaceSearch("indexes/default")
    fs.index(["./photos"])
    hits = fs.query(text="black hair, smiling", k=10)
"""
from .api import FaceSearch, Hits
from .errors import FaceSearchError
from .results import Face, Hit

__all__ = ["FaceSearch", "Face", "Hit", "Hits", "FaceSearchError"]
__version__ = "0.1.0"
