"""The FastAPI app behind `facesearch serve`: a JSON API (OpenAPI docs at /docs) and one page
(static/index.html, plain HTML, CSS and JavaScript shipped with the package: nothing is fetched
from the internet, so it works offline), with its search view at / and its people view at
/people (persons, cover faces, names edited in place).

Images are served only by face or photo id from the index, never by path. Uploaded photos are
limited to Settings.upload_max_bytes and decoded with the same bounded loader as indexing. One
FaceSearch serves every request; what touches its model or vectors runs under one lock (uvicorn
runs these sync endpoints on a thread pool). A token, when set (always, on a non-loopback host),
is needed for every request but the page's static files: as `?token=` (the page then keeps it in
a cookie), an `X-Facesearch-Token` header or the cookie.
"""
from __future__ import annotations

import ipaddress
import re
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from facesearch.api import FaceSearch
from facesearch.errors import FaceSearchError, as_arguments
from facesearch.pipeline.images import load_image
from facesearch.render import REGION_COLORS, top_attributes
from facesearch.search.planner import MATCHES
from facesearch.search.ranking import parse_weights
from facesearch.settings import Settings
from facesearch.spec import REGIONS

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Most hits one request may ask for.
MAX_K = 500
TOKEN_COOKIE = "facesearch_token"
TOKEN_HEADER = "x-facesearch-token"
#: Bytes a multipart body may carry beyond the photo itself (the form's text fields).
_FORM_OVERHEAD = 64 * 1024
_PHOTO_CACHE = "private, max-age=3600"
_MATCH_HELP = (f"an image query's match mode, one of {', '.join(MATCHES)} (person: that face's "
               "person first; look-alike: other people like it)")
_PERSON_HELP = "only the faces of the person with this name or id (GET /api/people)"
_ONE_PER_PERSON_HELP = "look-alike mode: one face per other person (fewer than k hits may come back)"
_MIN_SAME_HELP = ("image queries in person or default mode: drop hits whose same_person "
                  "probability is below this (0-1)")


#: The command line's flags as this API's parameters, for error messages the search path shares
#: with the CLI that name a flag alone ("--where filter" reads "where filter" here; a message that
#: names both, "--face (face=)", keeps the parameter: errors.as_arguments).
_FLAG_WORDS = {"--min-same-person": "min_same_person", "--image": "image", "--face": "face",
               "--weights": "weights", "--where": "where", "--text": "text", "--region": "region",
               "--match": "match", "--person": "person", "--exclude-self": "exclude"}


def api_words(message: str) -> str:
    """An error message with the CLI's flag names (`--min-same-person`) given as this API's
    parameter names (`min_same_person`)."""
    return re.sub(r"--[a-z][a-z-]*", lambda flag: _FLAG_WORDS.get(flag.group(0), flag.group(0)),
                  as_arguments(message))


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BodyLimit:
    """ASGI middleware: a request body longer than `limit` bytes gets 413 (by Content-Length up
    front, or once that many bytes have come), so an upload never fills memory or disk."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _too_large(self.limit)(scope, receive, send)
        received = 0

        async def limited_receive():  # a body without Content-Length: cut it off at the limit
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return {"type": "http.disconnect"} if received > self.limit else message

        await self.app(scope, limited_receive, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"the upload is too large (at most {limit // 1_000_000} MB)"},
                        status_code=413)


def create_app(settings: Settings | None = None, token: str | None = None,
               search: FaceSearch | None = None) -> FastAPI:
    """The app over the index of `settings` (default Settings.from_env()), or over `search` if
    given. With `token`, every request but the static files must carry it (see module doc)."""
    settings = search.settings if search is not None else (settings or Settings.from_env())
    fs = search if search is not None else FaceSearch(settings=settings)
    lock = threading.Lock()  # the describer and the vector spaces are not made for threads
    app = FastAPI(title="facesearch", version="1", docs_url=None, redoc_url=None,
                  description="Face similarity search by photo, by description, or both.")
    app.state.search = fs
    app.state.token = token

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if token is None or request.url.path.startswith("/static/"):
            return await call_next(request)
        given = (request.query_params.get("token") or request.headers.get(TOKEN_HEADER)
                 or request.cookies.get(TOKEN_COOKIE) or "")
        if not secrets.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"detail": "a token is needed: open the URL `facesearch serve` "
                                           "printed (…/?token=…)"}, status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.exception_handler(FaceSearchError)
    async def one_line_error(request: Request, error: FaceSearchError):
        return JSONResponse({"detail": api_words(str(error))}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def one_line_validation_error(request: Request, error: RequestValidationError):
        """A parameter FastAPI rejects (k=0, k=abc, a face id that is not a number, a bad JSON
        body): the same {"detail": one line} shape as every other error, status 422 kept."""
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    # The OpenAPI page's script and styles from the swagger-ui-bundle package, not from a CDN:
    # the docs work offline like the rest of the page (mounted before /static, which would
    # otherwise answer for /static/docs/...).
    app.mount("/static/docs", StaticFiles(directory=swagger_ui_path), name="docs-assets")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs():
        """The OpenAPI documentation (Swagger UI, served from the package)."""
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="facesearch API",
                                   swagger_js_url="/static/docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static/docs/swagger-ui.css",
                                   swagger_favicon_url="/static/docs/favicon-32x32.png")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The search page; it reads its query from the URL (`/?text=black+hair&k=20`)."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/people", include_in_schema=False)
    def people_page() -> FileResponse:
        """The same page, showing its people view."""
        return page()

    @app.get("/api/info", summary="What is in the index, and the page's limits")
    def info() -> dict:
        with lock:
            details = fs.info()
        return {"index": details["index"], "photos": details["photos"], "faces": details["faces"],
                "index_type": details["index_type"], "model_version": details["model_version"],
                "regions": list(REGIONS), "k": settings.k,
                "region_colors": {name: "#%02x%02x%02x" % REGION_COLORS[name] for name in REGIONS}, "max_k": MAX_K,
                "upload_max_bytes": settings.upload_max_bytes}

    def _options(weights: str | None, region: str | None, where: str | None,
                 match: str | None = None, person: str | None = None,
                 min_same_person: float | None = None, one_per_person: bool = False) -> dict[str, Any]:
        return {"weights": parse_weights(weights) if weights and weights.strip() else None,
                "region": region or None, "where": where if where and where.strip() else None,
                "match": match or "default", "person": person if person and person.strip() else None,
                "min_same_person": min_same_person, "one_per_person": one_per_person}

    def _answer(run, started: float) -> dict:
        with lock:
            hits = run()
        return {"hits": [hit | {"summary": top_attributes(hit["attributes"])} for hit in hits.to_dicts()],
                "understood": hits.understood.as_dict() if hits.understood is not None else None,
                "took_ms": round((time.perf_counter() - started) * 1000, 1)}

    @app.get("/api/search", summary="Faces fitting a description (and a filter)")
    def search_text(text: str | None = Query(None, description="e.g. black hair, smiling"),
                    k: int | None = Query(None, ge=1, le=MAX_K),
                    where: str | None = Query(None, description="filter, e.g. male<0.5 and age<30"),
                    weights: str | None = Query(None, description="e.g. hair=2,background=0"),
                    region: str | None = Query(None, description="rank by one region alone"),
                    match: str | None = Query(None, description=_MATCH_HELP),
                    person: str | None = Query(None, description=_PERSON_HELP)) -> dict:
        """Hits, best first: rank, score, face_id, bbox, regions (per-region similarity),
        attributes, summary (top attributes), person ({"id", "name"} or null), and for text
        `query`/`fits` (why it matched)."""
        started = time.perf_counter()
        options = _options(weights, region, where, match, person)
        return _answer(lambda: fs.query(text=text or None, k=k, **options), started)

    @app.post("/api/search", summary="Faces like an uploaded photo's (and/or a description)")
    def search_photo(request: Request, image: UploadFile | None = File(None), text: str | None = Form(None),
                     k: int | None = Form(None, ge=1, le=MAX_K), face: int = Form(0, ge=0),
                     where: str | None = Form(None), weights: str | None = Form(None),
                     region: str | None = Form(None),
                     match: str | None = Form(None, description=_MATCH_HELP),
                     person: str | None = Form(None, description=_PERSON_HELP),
                     min_same_person: float | None = Form(None, description=_MIN_SAME_HELP),
                     one_per_person: bool = Form(False, description=_ONE_PER_PERSON_HELP)) -> dict:
        """As GET /api/search, with a photo (multipart field `image`, at most
        Settings.upload_max_bytes): its `face`-th largest face is the query, and each hit
        carries `same_person` (probability 0-1 that it is that face's person). Its fields come
        as form fields: any in the URL's query string is refused (400), not silently ignored."""
        started = time.perf_counter()
        in_url = sorted(set(request.query_params) - {"token"})
        if in_url:
            raise FaceSearchError(f"POST /api/search takes its fields as form fields, not in the URL: "
                                  f"{', '.join(in_url)}")
        options = _options(weights, region, where, match, person, min_same_person, one_per_person)
        pixels = _read_upload(image, settings) if image is not None and image.filename else None
        return _answer(lambda: fs.query(image=pixels, text=text or None, k=k, face=face, **options),
                       started)

    @app.get("/api/faces/{face_id}", summary="One indexed face")
    def face(face_id: int) -> dict:
        return _found(fs.face(face_id), f"no face {face_id}")

    @app.get("/api/faces/{face_id}/similar", summary="More like this indexed face")
    def similar(face_id: int, k: int | None = Query(None, ge=1, le=MAX_K), where: str | None = None,
                weights: str | None = None, region: str | None = None,
                match: str | None = Query(None, description=_MATCH_HELP),
                person: str | None = Query(None, description=_PERSON_HELP),
                min_same_person: float | None = Query(None, description=_MIN_SAME_HELP),
                one_per_person: bool = Query(False, description=_ONE_PER_PERSON_HELP)) -> dict:
        """As POST /api/search with this indexed face as the photo, the face itself left out
        of its hits (the other faces of its photo or video stay)."""
        started = time.perf_counter()
        _found(fs.face(face_id), f"no face {face_id}")
        options = _options(weights, region, where, match, person, min_same_person, one_per_person)
        return _answer(lambda: fs.more_like_face(face_id, k=k, exclude_faces=[face_id], **options),
                       started)

    @app.get("/api/faces/{face_id}/thumbnail", summary="A square JPEG crop of a face",
             response_class=Response)
    def thumbnail(face_id: int) -> Response:
        data = _found(fs.face_thumbnail(face_id), f"no face {face_id}, or its photo is gone")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": _PHOTO_CACHE})

    @app.get("/api/photos/{photo_id}", summary="One indexed photo and its faces")
    def photo(photo_id: int) -> dict:
        return _found(fs.photo(photo_id), f"no photo {photo_id}")

    @app.get("/api/photos/{photo_id}/image", summary="A photo as a JPEG (longest side ≤ 1600 px)",
             response_class=Response)
    def photo_image(photo_id: int, time: float | None = Query(None, ge=0, description="a video's frame at this many seconds")) -> Response:
        data = _found(fs.photo_image(photo_id, time=time), f"no photo {photo_id}, or its file is gone")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": _PHOTO_CACHE})

    @app.get("/api/people", summary="The persons of the index, most faces first")
    def people() -> dict:
        """{"people": [{"id", "name" (null until named), "count" (faces), "cover" (face id of
        its best detected face), "faces": [{"face_id", "path", "bbox", "det_score"}]}]}."""
        with lock:
            found = fs.people()
        return {"people": [person | {"count": len(person["faces"]),
                                     "cover": person["faces"][0]["face_id"] if person["faces"] else None}
                           for person in found]}

    @app.post("/api/people/{person_id}", summary="Rename a person")
    def rename_person(person_id: int, name: str = Body(..., embed=True, max_length=200,
                                                        description="the new name")) -> dict:
        """Gives person `person_id` a name (needs the token when the server has one). 400 with
        a one-line `detail` for an unknown person, an empty name, or a name another person
        has (merge them instead)."""
        with lock:
            fs.name_person(person_id, name)
        return {"id": person_id, "name": name.strip()}

    @app.post("/api/people/{person_id}/merge", summary="Merge another person into this one")
    def merge_person(person_id: int, other: int = Body(..., embed=True,
                                                       description="the person merged in")) -> dict:
        """Moves person `other`'s faces to `person_id`, which keeps its id and name (or takes
        `other`'s when it has none); `other` is gone. 400 for an unknown person or itself."""
        with lock:
            fs.merge_people(person_id, other)
            merged = next((p for p in fs.people() if p["id"] == person_id), {"name": None, "faces": []})
        return {"id": person_id, "name": merged["name"], "count": len(merged["faces"])}

    app.add_middleware(_BodyLimit, limit=settings.upload_max_bytes + _FORM_OVERHEAD)
    return app


def _found(value, message: str):
    if value is None:
        raise HTTPException(404, message)
    return value


def _read_upload(upload: UploadFile, settings: Settings):
    """An uploaded photo's RGB pixels, decoded by the bounded loader from a private temp file;
    FaceSearchError if it is too large or not an image."""
    limit = settings.upload_max_bytes
    with tempfile.TemporaryDirectory(prefix="facesearch-upload-") as folder:
        path = Path(folder) / "upload"
        size = 0
        with open(path, "wb") as out:
            while chunk := upload.file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise FaceSearchError(f"the photo is too large (at most {limit // 1_000_000} MB)")
                out.write(chunk)
        if size == 0:
            raise FaceSearchError("the uploaded photo is empty")
        try:
            return load_image(path, settings.max_decode_side).pixels
        except FaceSearchError as error:  # name the upload, not our temp file
            raise FaceSearchError(str(error).replace(str(path), upload.filename or "the photo")) from None


def _check_can_listen(host: str, port: int) -> None:
    """FaceSearchError (one line) if `host`:`port` cannot be listened on (in use, no such
    address), before anything is loaded."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        raise FaceSearchError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def serve(settings: Settings | None = None, host: str = "127.0.0.1", port: int = 8000,
          token: str | None = None, echo=print) -> None:
    """Run the app on uvicorn until interrupted. A non-loopback `host` needs a token: one is
    generated if none is given. `echo` prints the URL to open (with the token)."""
    import uvicorn

    settings = settings or Settings.from_env()
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(18)
    if token is not None and not token.strip():
        raise FaceSearchError("--token is empty")
    _check_can_listen(host, port)
    app = create_app(settings, token=token)
    app.state.search.info()  # no index there: say so now, not on the first query
    app.state.search.prune_thumbnails()
    shown = f"[{host}]" if ":" in host else host
    echo(f"facesearch: serving {settings.index_dir} at http://{shown}:{port}/"
         + (f"?token={token}" if token else ""))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        app.state.search.close()
