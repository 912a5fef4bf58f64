"""The web page and its JSON API (`facesearch serve`): FastAPI on uvicorn, calling FaceSearch
only. `create_app(settings)` builds the app; `serve(...)` runs it."""
from facesearch.server.app import create_app, serve

__all__ = ["create_app", "serve"]
