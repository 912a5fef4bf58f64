"""The Python API: `FaceSearch(index_dir).index(...)`, `.query(...)`, `.describe(...)`.

A thin facade: it composes the pipeline (pipeline.describer), the index (index.store,
index.spaces, index.indexer, index.lock) and the query planner (search.planner); the work is
done there.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from functools import cached_property
from pathlib import Path

import numpy as np

from facesearch.errors import FaceSearchError, counted, require_type
from facesearch.index.distributed import RayDescriber
from facesearch.index.indexer import Indexer, IndexReport, reconcile
from facesearch.index.lock import IndexBusyError, IndexLock
from facesearch.index import people as people_store
from facesearch.index.repair import CheckReport, check, open_spaces, require_sqlite_file, salvage_sqlite
from facesearch.index.spaces import FAISS_FILENAME, Spaces, VectorSpace, space_signatures
from facesearch.index.store import (DB_FILENAME, DamagedDatabaseError, PhotoStatus, Store, database_exists,
                                    database_url, redacted)
from facesearch.models import master_card
from facesearch.models.arcface import unreliable_age, young_child
from facesearch.pipeline.describer import DESCRIBED_KEYS, Describer, pipeline_version
from facesearch.pipeline.faces import Face, TrackSpan
from facesearch.pipeline.images import truncated_at_end
from facesearch.pipeline.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, content_hash, find_images, photo_key
from facesearch.search.compare import Comparison, compare_faces
from facesearch.search.filters import Filter, parse_filter
from facesearch.search.hits import Hit, Hits
from facesearch.search.planner import LOOKALIKE_AGREEMENT_WEIGHT, MATCHES, Request, StoreCatalog, rank
from facesearch.search.ranking import MIXED_FIT_WEIGHT, RERANK_VECTOR_WEIGHT, parse_weights, region_weights
from facesearch.search.terms import COLUMNS, class_fit, needed_columns, probability_matrix
from facesearch.search.text import asks_for_everyone, not_understood, parse
from facesearch.settings import Settings
from facesearch.spec import AGE_KEY, IDENTITY, REGIONS, VECTOR_DIM, region_similarities
# browsing (faces and photos by id, thumbnails): the web page's reads
import threading

from sqlalchemy import select as sa_select

from facesearch.index.store import FaceRow, PhotoRow
from facesearch.pipeline.sources import load_still
from facesearch.render import THUMB, face_crop, jpeg_bytes


class FaceSearch:
    """A face index in a folder: SQL metadata, a FAISS index of master vectors, the model.

    >>> fs = FaceSearch("indexes/default")
    >>> fs.index(["./photos"])
    >>> fs.query(text="black hair, smiling", k=5)

    `index_dir` and `db_url` default to `settings` (itself `Settings.from_env()` by default:
    FACESEARCH_INDEX, FACESEARCH_DB_URL, ...). Use as a context manager, or call `close()`.
    """

    def __init__(self, index_dir: str | os.PathLike | None = None, db_url: str | None = None,
                 *, settings: Settings | None = None, on_notice=None):
        """`on_notice(line)` hears what the index repaired on its own (a vector file rebuilt
        from the database, ...) and why a query came back empty when it can say (nothing at
        `min_same_person`: the likeliest probability); default: printed to stderr as "note: ..."."""
        require_type(index_dir, (str, os.PathLike, type(None)), "index_dir", "a folder's path (str or os.PathLike)")
        require_type(db_url, (str, type(None)), "db_url", "a database URL (str)")
        settings = settings if settings is not None else Settings.from_env()
        self.on_notice = on_notice if on_notice is not None else _print_notice
        self.settings = settings.replace(index_dir=index_dir, db_url=db_url)
        self.index_dir = self.settings.index_dir
        self.db_url = self.settings.db_url

    def __enter__(self) -> FaceSearch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- opening --------------------------------------------------------------------------------
    def _exists(self) -> bool:
        """Whether an index was made here: its database (the FAISS file is rebuilt from it)."""
        return database_exists(self.index_dir, self.db_url) and (
            self.db_url is not None or (self.index_dir / FAISS_FILENAME).exists()
            or (self.index_dir / DB_FILENAME).stat().st_size > 0)

    def _require_index(self) -> None:
        if not self._exists():
            raise FaceSearchError(f"no index at {self.index_dir} (run `facesearch index FOLDER` first)")

    @cached_property
    def store(self) -> Store:
        """The SQL metadata (opened, and migrated to the newest schema, on first use)."""
        return Store.for_index_dir(self.index_dir, self.db_url)

    @cached_property
    def spaces(self) -> Spaces:
        """Every vector space of the index as last read from disk (`refresh()` reads them again);
        the files' signature is taken after opening, which may have saved repaired files."""
        spaces = open_spaces(self.index_dir, self.store, self.settings.compression,
                             self.settings.ivf_threshold, notice=self.on_notice, save=self._save_repaired)
        self._signature = space_signatures(self.index_dir)
        return spaces

    def _save_repaired(self, spaces: Spaces) -> bool:
        """Save vector files rebuilt from SQL when no writer holds the index (else they are
        rebuilt in memory only, and that writer's reconcile saves them)."""
        try:
            with IndexLock(self.index_dir, "repair"):
                spaces.save()
            return True
        except IndexBusyError:
            return False

    @property
    def vectors(self) -> VectorSpace:
        """The master vectors (the space queries rank), as last read from disk."""
        return self.spaces.master

    @cached_property
    def describer(self) -> Describer:
        """Photos -> faces (pipeline.describer), with this index's settings."""
        return Describer(self.settings)

    @property
    def _model(self):
        return self.describer.model

    @property
    def _card(self):
        """The master model's `version` and `centres`: read from its weights alone while no photo
        was described (a text query loads no network, nor torch), else the loaded model's."""
        if "describer" not in self.__dict__:
            card = master_card()
            if card is not None:
                return card
        return self._model

    @property
    def _version(self) -> str:
        """The version stamped on photos this FaceSearch describes and compared with the index's:
        the master model's, plus a detector or parser other than the defaults."""
        return pipeline_version(self._card.version, self.settings)

    def refresh(self) -> bool:
        """Pick up what another process committed since the vectors were read (an `index` or
        `remove` run): re-read the vector spaces if one of their FAISS files changed. Returns
        whether it did. Queries call it, so a long-lived FaceSearch (a server) stays fresh; SQL
        reads are always fresh."""
        if "spaces" not in self.__dict__:
            return False
        if space_signatures(self.index_dir) == self._signature:
            return False
        self.__dict__.pop("spaces")
        return True

    def _open_existing(self) -> None:
        self._require_index()
        self.refresh()
        if len(self.vectors) == 0:
            raise FaceSearchError(f"the index at {self.index_dir} is empty (no faces indexed yet)")
        if self.store.get_meta("model_version") != self._version:
            problem = self._record_model()
            if problem:  # vectors of two models do not compare
                raise FaceSearchError(problem)

    def _record_model(self) -> str | None:
        """Record this model as the index's when it described every indexed photo; otherwise say
        which photos another model described (after an upgrade `index` describes them again)."""
        count, example = self.store.photos_of_other_models(self._version)
        if count:
            return (f"{count} indexed photo(s), e.g. {example.path}, were described by model "
                    f"{example.model_version or 'unknown'}, not by this facesearch's {self._version}: "
                    f"run `facesearch index` on their folders again to re-describe them")
        self.store.set_meta("model_version", self._version)
        return None

    # --- describing -----------------------------------------------------------------------------
    def describe(self, image: str | os.PathLike | np.ndarray) -> list[Face]:
        """Every face in a photo (path or RGB array), largest first, with its master vector; a
        video's faces are its tracks in the order they first appear (describer.describe_video),
        so `face=N` of a video query is its (N+1)-th track (by default a video query uses its
        largest face's: see query). ArgumentTypeError (a FaceSearchError)
        for anything else than a path or an array."""
        return next(self.describe_many([image]))

    def describe_many(self, images: Iterable[str | os.PathLike | np.ndarray]) -> Iterator[list[Face]]:
        """describe() over many photos, yielding each photo's faces in order, faster: photos are
        prepared on Settings.describe_threads threads while the network describes the faces of
        Settings.describe_batch photos at a time. A bad photo raises (FaceSearchError)."""
        for result in self.describer.stream(map(_image_argument, _iterable(images, "images"))):
            if isinstance(result, Exception):
                raise result
            yield result[1]  # (original size, faces)

    def compare(self, first: str | os.PathLike | np.ndarray,
                second: str | os.PathLike | np.ndarray) -> list[Comparison]:
        """Same person or not, for every pair of faces of two photos (paths or RGB arrays) or
        videos (paths; a video's faces are its tracks, each Comparison carrying its TrackSpan):
        search.compare.Comparison with the identity similarity and the calibrated probability,
        face i of `first` (largest first) against face j of `second`; a photo given twice has
        its faces compared with each other once (i < j). Needs no index.
        FaceSearchError (one line) when a photo cannot be read or shows no face."""
        same_photo = _same_file(first, second)
        described = []
        for image in (first,) if same_photo else (first, second):
            faces = self.describe(image)
            if not faces:
                raise no_face_error(image)
            described.append(faces)
        return compare_faces(described[0], described[-1], same_photo=same_photo)

    # --- indexing -------------------------------------------------------------------------------
    def index(self, paths: Iterable[str | os.PathLike], progress: bool = False,
              on_problem=None, prune: bool = False, ray: str | None = None) -> IndexReport:
        """Index every image and video under `paths`: new and changed photos are described, vanished ones
        dropped, unchanged ones skipped; moved and copied photos are recognised by content
        (indexer.Indexer.run). Photos missing from disk elsewhere are counted (`missing`), and
        dropped with `prune`. Bad files are recorded and reported, not fatal. A video's faces
        are tracks (Settings.video_fps frames a second, pipeline.tracking). One index or remove run at a time: another one holding the index
        raises IndexBusyError. Ctrl-C raises indexer.IndexInterrupted once what was described
        is saved. Then new faces join their people and new people are found (index.people;
        `report.people` says what changed). With `ray` (else Settings.ray_address), a Ray
        cluster's actors describe the photos and this process commits them
        (index.distributed)."""
        paths = _path_list(paths, "paths")
        self._refuse_vanished_roots(paths)
        problems: list[tuple[str, str]] = []
        skipped: list[tuple[str, str]] = []
        files = find_images(paths, on_error=lambda folder, reason: problems.append((folder, reason)),
                            on_skipped=lambda path, reason: skipped.append((path, reason)))
        # bad paths failed above, before an index folder is made
        ray = ray or self.settings.ray_address
        with (RayDescriber(self.settings, ray, version=self._version) if ray else nullcontext()) as on_ray, \
                IndexLock(self.index_dir, "index"):
            self.__dict__.pop("spaces", None)  # what is on disk now, not what we read before
            reconcile(self.store, self.spaces)
            self.store.set_meta("dims", str(VECTOR_DIM))
            self.store.set_meta("index_type", self.vectors.index_type)
            indexer = Indexer(self.store, self.spaces,
                              on_ray.stream if on_ray is not None else self.describer.stream, self._version,
                              commit_every=self.settings.commit_every,
                              checkpoint_seconds=self.settings.checkpoint_seconds,
                              refresh_keys=DESCRIBED_KEYS)
            report = indexer.run(paths, files, progress=progress, on_problem=on_problem,
                                 problems=problems, prune=prune)
            report.skipped = skipped
            if IDENTITY in self.spaces and (report.faces or report.removed
                                            or not people_store.grouped(self.store)):
                # new faces join their persons, new persons are found (index.people)
                report.people = people_store.update_people(
                    self.store, people_store.grouping_threshold(), self.settings.people_min_faces,
                    self.settings.people_min_samples)
            if self.vectors.meta.get("compression_notice"):
                self.on_notice(self.vectors.meta["compression_notice"])
            self._record_model()  # photos outside `paths` may still be another model's
            return report

    def _refuse_vanished_roots(self, paths: list) -> None:
        """A folder given to index that is gone but held indexed photos: say what to do."""
        if not database_exists(self.index_dir, self.db_url):
            return
        for path in paths:
            if os.path.lexists(path):
                continue
            under = self._stored_under(path)
            if under:
                raise FaceSearchError(
                    f"{path}: no such folder, but {len(under)} indexed photo(s) were there: "
                    f"`facesearch relocate {path} NEW` if it moved, `facesearch remove {path}` "
                    "to take them out of the index")

    def _stored_under(self, path: str | os.PathLike) -> list[str]:
        """Stored photo paths equal to `path` or under it (a folder, gone or not)."""
        root = os.path.abspath(path)
        return [photo.path for photo in self.store.photos()
                if photo.path == root or photo.path.startswith(root.rstrip(os.sep) + os.sep)]

    def remove(self, paths: Iterable[str | os.PathLike], missing_ok: bool = True) -> int:
        """Take photos (their faces and vectors) out of the index for good; returns how many.
        Vectors go first; with SQLite the deleted rows are overwritten, not just unlinked. A
        path that is no indexed photo, folder of them or other path of one removes nothing;
        with `missing_ok=False` (the CLI) such a path is a FaceSearchError, raised before
        anything is removed."""
        self._require_index()
        paths = _path_list(paths, "paths")
        with IndexLock(self.index_dir, "remove"):
            self.__dict__.pop("spaces", None)
            reconcile(self.store, self.spaces)  # vectors a crashed run left behind go too
            keys = [photo_key(Path(path)) or os.path.abspath(path) for path in paths]
            known_aliases = self.store.aliases()
            aliases = [key for key in keys if key in known_aliases]
            unknown = [str(path) for path, key in zip(paths, keys)
                       if key not in aliases and not self._stored_under(key)]
            if unknown and not missing_ok:
                more = f" (and {counted(len(unknown) - 1, 'other path')})" if len(unknown) > 1 else ""
                raise FaceSearchError(f"not in the index: {unknown[0]}{more}; nothing removed")
            self.store.delete_aliases(aliases)  # another path of a photo: the photo stays
            removed = sorted({stored for key in keys if key not in aliases
                              for stored in self._stored_under(key)})
            if not removed:
                return len(aliases)
            with self.store.erasing() as session:
                self.spaces.remove(self.store.delete_photos(removed, session))
                self.spaces.save()  # vectors first: a kill now leaves rows that reconcile drops
            self.prune_thumbnails()  # and no crop of a removed face stays in the folder
            return len(removed) + len(aliases)

    def check(self, repair: bool = False) -> CheckReport:
        """Check everything (SQLite integrity, each vector file against SQL, photo files on
        disk; see index.repair.check); with `repair`, fix what can be: vector files rebuilt from
        SQL, photos missing from disk dropped, and a damaged SQLite file salvaged (what can be
        read is copied into a new file; the damaged one is kept beside it)."""
        self._require_index()
        with IndexLock(self.index_dir, "check"):
            salvaged: list[str] = []
            try:
                problems = self.store.integrity_problems()
            except FaceSearchError as error:  # the file cannot even be opened
                problems = [str(error)]
            if problems and repair:
                self.close()
                damaged = self.index_dir / DB_FILENAME if self.db_url is None else None
                kept_aside, rows = salvage_sqlite(require_sqlite_file(damaged))
                salvaged.append(f"database salvaged into a new file ({counted(rows.get('photos', 0), 'photo')}, "
                                f"{counted(rows.get('faces', 0), 'face')} read); the damaged one is {kept_aside.name}")
                if rows.get("photos_dropped"):
                    salvaged.append(f"dropped {rows['photos_dropped']} photo(s) that lost part of their "
                                    "rows (`facesearch index` describes them again)")
            self.__dict__.pop("spaces", None)
            try:
                report = check(self.index_dir, self.store, self.settings.compression,
                               self.settings.ivf_threshold, repair=repair)
            except DamagedDatabaseError as error:
                return CheckReport(database=problems or [str(error)])
            report.database = report.database or ([] if repair else problems)
            report.repaired[:0] = salvaged
            return report

    def relocate(self, old: str | os.PathLike, new: str | os.PathLike) -> int:
        """The folder `old` moved to `new`: rewrite every stored path under it (photos keep their
        faces; nothing is described again). Returns how many paths changed; FaceSearchError if
        `new` is not a folder or nothing was stored under `old`."""
        self._require_index()
        if not Path(new).is_dir():
            raise FaceSearchError(f"{new}: no such folder")
        old_root, new_root = os.path.abspath(old), os.path.abspath(new)
        if old_root == new_root:
            raise FaceSearchError(f"{old} and {new} are the same folder: nothing to relocate")
        with IndexLock(self.index_dir, "relocate"):
            stored = self._stored_under(old)
            if stored and not any(os.path.exists(new_root + path[len(old_root):]) for path in stored):
                raise FaceSearchError(f"none of the {len(stored)} indexed photo(s) under {old} is under "
                                      f"{new} (e.g. {stored[0][len(old_root) + 1:]}): nothing relocated")
            changed = self.store.relocate(old, new)
        if not changed:
            raise FaceSearchError(f"no indexed photo is under {old}")
        return changed

    # --- querying -------------------------------------------------------------------------------
    def query(self, image: str | os.PathLike | np.ndarray | None = None, text: str | None = None,
              k: int | None = None, face: int | None = None, *, weights: Mapping[str, float] | None = None,
              region: str | None = None, where: str | Filter | None = None,
              exclude: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
              match: str = "default", person: str | int | None = None,
              min_same_person: float | None = None,
              exclude_faces: Iterable[int] | None = None, one_per_person: bool = False) -> Hits:
        """The k stored faces (default Settings.k) most like a photo's face (`face`-th largest;
        default the largest), a description, or a photo's face changed as the description says;
        best first. A video query's faces are its tracks: by default the track with the largest
        face (box area, width x height in original pixels, in the track's best frame: the box
        its face is stored with), `face=N` its (N+1)-th track by start; on_notice says which
        track was used. With
        `where` alone (or a text such as "a person" that names no class) it browses: the faces
        meeting the filter, best fit to the classes it names first; when it names none, by the
        first other number it compares (`quality > 0.5`: highest quality first, scored by it),
        else in index order (a path). Without a query vector (browsing, or a text naming only
        pixel attributes) no region is compared: hits' `regions` are empty and the Hits'
        `scored_by` says what the score is.

        `exclude` leaves out the faces of these photos (e.g. the query photo itself), and
        `exclude_faces` these stored faces (face ids; more_like_face's own face), not the other
        faces of their photo or video. A query
        photo that is indexed and unchanged since (size and modification time) is not described
        again: its stored vectors are used.

        `weights` scales regions in the score (`{"hair": 2, "background": 0}`; unnamed regions
        keep 1) and `region="hair"` ranks by one region alone; each hit's `regions` still holds
        the plain per-region similarities. `where` keeps only the faces that meet a filter
        (facesearch.search.filters), e.g. "male < 0.5 and smiling > 0.5" or "path ~ '*/2019/*'";
        k hits come back whenever k faces match. Ranked by search.planner.rank, the one query
        path. Raises FaceSearchError (one line) for anything a user can get wrong.

        `match` (image queries): "person" (the same person first, by the identity space),
        "look-alike" (faces like it among other people: faces judged its person are left out)
        or "default" (its person first, then look-alikes); each hit of an image query then
        carries `same_person`, a calibrated probability (search.planner's match modes).

        `min_same_person` (0-1, image queries in "person" or "default" mode) drops the hits
        whose `same_person` is below it: a stricter cut than the operating point 0.5 (at 0.95,
        0.017% false accepts and 9.5% false rejects on the validation identities; README "Same
        person or look-alike"), so fewer than k hits may come back.

        `one_per_person` (look-alike mode) keeps one face per other person (index.people, or
        judged one person by identity), for a list of different people; fewer than k hits may
        come back.

        `person` keeps only the faces of the person with that name (or id; `fs.people()`),
        like `where="person = 'Alice'"` (alone, it browses that person's faces); every hit
        carries its `person` ({"id", "name"} or None)."""
        k = self.settings.k if k is None else k
        _check_query_types(image, text, where, region, match, person, face)
        weights = _weights_argument(weights)
        _check_min_same_person(min_same_person, image, match)
        require_type(one_per_person, bool, "one_per_person", "True or False")
        if one_per_person and match != "look-alike":
            raise FaceSearchError("--one-per-person (one_per_person=) applies to look-alike mode only: "
                                  "add --match (match=) look-alike")
        if image is None and text is None and where is None and person is None:
            raise FaceSearchError("give an image, a text, a --where (where=) filter, or a combination to query")
        require_type(k, (int, np.integer), "k", "a whole number of hits")
        if k < 1:
            raise FaceSearchError(f"k must be at least 1 (got {k})")
        if face and image is None:  # face=0 without an image: the old default, let pass
            raise FaceSearchError("--face (face=) picks a face of the query image, and no --image (image=) was given")
        block_weights = region_weights(weights, region)
        restriction = parse_filter(where) if isinstance(where, str) else where
        if person is not None:  # a name, or a person's id (an int or its digits)
            restriction = self._with_person(restriction, str(person))
        understood = None
        terms: list = []
        if text is not None:
            if not text.strip():
                raise FaceSearchError("the text query is empty")
            understood = parse(text)
            terms = understood.terms
            if not terms and not asks_for_everyone(text):
                raise FaceSearchError(f"nothing face-related was understood in {text!r}: "
                                      f"{not_understood(text)}")
        if match in MATCHES and match != "default" and (image is None or terms):
            raise FaceSearchError(f"match {match!r} applies to image queries without a text: leave out the "
                                  "text (--text), or use match default" if image is not None else
                                  f"match {match!r} applies to image queries: there is no image (--image) "
                                  "whose face to match")
        browsing = image is None and not terms and restriction is not None
        if browsing:
            terms = restriction.terms()  # browsing: best fit to what the filter asks first
        self._open_existing()
        for named in restriction.persons() if restriction is not None else ():
            people_store.person_ids_named(self.store, str(named))  # else one line, not "no hits"
        query_face = query_identity = query_attributes = track = None
        if image is not None:
            faces = self._query_faces(image)
            if not faces:
                raise no_face_error(image)
            largest = face is None
            face = _largest_face(faces) if largest else face
            if not 0 <= face < len(faces):
                what = "the video has {} track(s)" if faces[0][4] is not None else "the image has {} face(s)"
                raise FaceSearchError(f"--face (face=) {face} is out of range: " + what.format(len(faces)))
            query_face, query_identity, query_attributes, _, track = faces[face]
            if track is not None:  # a video query: say which track it is
                self.on_notice(_video_query_note(face, track, largest))
            age = float(query_attributes[COLUMNS.index(AGE_KEY)])
            if query_identity is not None and unreliable_age(age):
                self.on_notice(f"the query face is {unreliable_age(age).split(' (')[0]}: same_person is "
                               f"not reliable for {'young children' if young_child(age) else 'the very old'}")
        left_out = self._vector_ids_of(exclude) | {
            found[0].vector_id for found in map(self._face_rows, exclude_faces or ()) if found is not None}
        catalog = StoreCatalog(self.store)
        request = Request(k=k + len(left_out), face=query_face, terms=terms,
                          block_weights=block_weights, where=restriction, identity=query_identity,
                          match=match, attributes=query_attributes, one_per_person=one_per_person)
        ranked = rank(request, self._card.centres, self.vectors, catalog, self.spaces.get(IDENTITY))
        ranked.candidates = [c for c in ranked.candidates if c[1] not in left_out][:k]
        if min_same_person is not None:
            if ranked.same_person is None:
                raise FaceSearchError("--min-same-person (min_same_person=) needs identity vectors, which this index lacks "
                                      "for some faces: run `facesearch index` on its folders again to add them")
            best = max((ranked.same_person.get(c[1], 0.0) for c in ranked.candidates), default=None)
            ranked.candidates = [c for c in ranked.candidates
                                 if ranked.same_person.get(c[1], 0.0) >= min_same_person]
            if not ranked.candidates and best is not None:  # say how far the best one was
                self.on_notice(f"no face at same_person >= {min_same_person:g}; the likeliest "
                               f"was at {best:.2f}")
        ids = [i for _, i in ranked.candidates]
        stored = self.vectors.reconstruct(ids) if ids else np.zeros((0, VECTOR_DIM), np.float32)
        hits = Hits()
        hits.understood = understood
        hits.query_track = track
        hits.match = ranked.strategy if ranked.strategy in MATCH_ORDER else None
        compared = bool(np.any(ranked.vector))  # else no region has a query block to compare with
        if not compared:
            hits.scored_by = _scored_by(ranked.strategy, request.terms, restriction)
        elif browsing:  # ranked as the text of what the filter asks: say so, not region cosines
            hits.scored_by = (f"fit to {', '.join(term.label for term in request.terms)} (0-1) + "
                              f"{RERANK_VECTOR_WEIGHT:g} x the class-centre score: the faces meeting "
                              "the filter, best fit first")
        elif ranked.strategy in MATCH_ORDER:  # an image query's match mode: the score is not the order
            hits.scored_by = f"{region_score(block_weights)}; {MATCH_ORDER[ranked.strategy]}"
        elif request.terms:  # a text, alone or with a face (search.ranking.rerank)
            labels = ", ".join(term.label for term in request.terms)
            hits.scored_by = (
                f"{region_score(block_weights)} with the query face moved toward {labels}, + "
                f"{MIXED_FIT_WEIGHT:g} x log(fit to {labels}, 0-1)" if query_face is not None else
                f"fit to {labels} (0-1) + {RERANK_VECTOR_WEIGHT:g} x the class-centre score")
        other_paths = self.store.aliases_of(catalog.rows[i][1].id for _, i in ranked.candidates)
        persons = people_store.persons_of_faces(self.store, [catalog.rows[i][0].id
                                                             for _, i in ranked.candidates])
        for rank_, ((score, vector_id), similarity) in enumerate(
                zip(ranked.candidates, region_similarities(ranked.vector, stored)), start=1):
            row, photo = catalog.rows[vector_id]
            hits.append(Hit(rank=rank_, score=round(score, 4), path=photo.path, face_id=row.id,
                            bbox=[round(v, 1) for v in (row.x0, row.y0, row.x1, row.y1)],
                            regions=dict(zip(REGIONS, (round(float(v), 4) for v in similarity)))
                            if compared else {},
                            attributes=row.attributes, missing=not os.path.exists(photo.path),
                            other_paths=other_paths.get(photo.id, []),
                            same_person=(ranked.same_person or {}).get(vector_id),
                            person=persons.get(row.id), **row.media_fields(photo)))
        if request.terms and image is None and hits:
            self._note_weak_fit(request.terms, hits)
        return hits

    def _note_weak_fit(self, terms: list, hits: Hits) -> None:
        """A notice when even the best hit of a text (or a filter browsed) fits what was asked
        poorly (class fit at most WEAK_FIT, search.terms.class_fit): hits are still listed, best
        first, but none clearly shows it ("red hair" where nobody has red hair)."""
        best = float(class_fit(terms, probability_matrix([hit.attributes for hit in hits],
                                                         needed_columns(terms))).max())
        if best <= WEAK_FIT:
            self.on_notice(f"no face here clearly fits {', '.join(term.label for term in terms)}: "
                           f"the best fit is {best:.2f} (0-1); the hits are the closest there are")

    def _with_person(self, restriction: Filter | None, person: str) -> Filter:
        """`restriction` and "person = <person>" (FaceSearchError if no person has that name
        or id)."""
        self._open_existing()
        people_store.person_ids_named(self.store, person)
        quote = "'" if "'" not in person else '"'
        if quote in person:
            raise FaceSearchError("a person's name with both kinds of quote cannot be searched for")
        value = person if person.strip().isdigit() else f"{quote}{person}{quote}"
        alone = f"person = {value}"
        return parse_filter(alone if restriction is None else f"({restriction.text}) and {alone}")

    # --- people ---------------------------------------------------------------------------------
    def people(self) -> list[dict]:
        """The persons of the index (index.people), most faces first: each {"id", "name" (None
        until named), "faces": [{"face_id", "path", "bbox", "det_score", "media" and a video
        face's track_id, start, end, time}, best detection first]}. Persons are found by `index`."""
        self._open_existing()
        return people_store.people(self.store)

    def name_person(self, person_id: int | str, name: str) -> int:
        """Name (or rename) a person, given by id or by its present name (kept across index
        runs); returns its id. FaceSearchError: unknown person, empty name, or a name another
        person has."""
        require_type(name, str, "name", "a string")
        self._open_existing()
        found = self._person_id(person_id, "person_id")
        people_store.name_person(self.store, found, name)
        return found

    def merge_people(self, keep: int | str, other: int | str) -> None:
        """Move person `other`'s faces to person `keep` (each by id or name; `keep` keeps its id
        and name, or takes `other`'s name if it has none) and drop `other`. FaceSearchError for
        unknown persons."""
        self._open_existing()
        keep, other = self._person_id(keep, "keep"), self._person_id(other, "other")
        people_store.merge_people(self.store, keep, other)

    def _person_id(self, value: object, name: str) -> int:
        """A person's id given as an int, its digits, or the person's name (FaceSearchError when
        no person or several are called so; ArgumentTypeError for another type)."""
        if isinstance(value, str) and not value.strip().isdigit():
            found = people_store.person_ids_named(self.store, value)
            if len(found) > 1:
                raise FaceSearchError(f"{len(found)} persons are called {value!r} (ids "
                                      f"{', '.join(map(str, found))}): give the id")
            return found[0]
        return _person_id(value, name)

    def remove_face(self, face_id: int) -> int:
        """Take a face out of its person for good (never assigned automatically again); returns
        that person's id. FaceSearchError if the face is unknown or in no person."""
        self._open_existing()
        require_type(face_id, (int, np.integer), "face_id", "a face id (a whole number)")
        return people_store.remove_face(self.store, face_id)

    def _query_faces(self, image: str | os.PathLike | np.ndarray
                     ) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray, list[float], TrackSpan | None]]:
        """(master vector (364,), identity vector (512,) or None, class probabilities
        (len(terms.COLUMNS),), box [x0, y0, x1, y1] in original pixels (a video's: in the track's
        best frame), TrackSpan of a video's face or None) of a query photo's faces,
        largest first (a video's: its tracks by start): the stored ones when the photo is indexed by this model and unchanged on
        disk since (size and modification time, as `index` judges it; no network is loaded
        then; identity None for a photo indexed before the identity space), else described
        now. Raises FaceSearchError for a file that cannot be read as an image."""
        if not isinstance(image, np.ndarray) and Path(image).suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
            try:
                photo = self.store.photo_by_path(image)
                info = os.stat(image)
            except OSError:
                photo = None
            if (photo is not None and photo.status == PhotoStatus.INDEXED and photo.faces
                    and photo.model_version == self._version
                    and photo.size == info.st_size and photo.mtime == info.st_mtime):
                rows = sorted(photo.faces, key=lambda row: row.face_index)
                ids = [row.vector_id for row in rows]
                identity = self.spaces.get(IDENTITY)
                identities = (identity.reconstruct(ids) if identity is not None
                              and np.isin(ids, identity.ids()).all() else [None] * len(ids))
                tracks = [TrackSpan(row.track_id, row.track_start, row.track_end, row.frame_time,
                                    row.track_frames or 0) if photo.media == "video" else None
                          for row in rows]
                return list(zip(self.vectors.reconstruct(ids), identities,
                                probability_matrix([row.attributes for row in rows]),
                                [[row.x0, row.y0, row.x1, row.y1] for row in rows], tracks))
        return [(described.vector, described.identity, probability_matrix([described.attributes])[0],
                 list(described.bbox), described.track)
                for described in self.describe(image)]

    def _vector_ids_of(self, photos: str | os.PathLike | Iterable[str | os.PathLike] | None
                       ) -> set[int]:
        """The vector ids of the faces of these photos, found by path or by content (a copy of
        an indexed photo under another name is the same photo); photos not indexed have none."""
        if photos is None:
            return set()
        photos = _path_list(photos, "exclude")
        paths = set()
        for path in photos:
            paths.add(path)
            if Path(path).is_file():
                paths.update(row.path for row in self.store.photos_with_hash(content_hash(path)))
        found = (self.store.photo_by_path(path) for path in paths)
        return {face.vector_id for photo in found if photo is not None for face in photo.faces}

    # --- information ----------------------------------------------------------------------------
    def info(self) -> dict:
        """What is in the index: photos, videos, faces, failures, partial (truncated) photos, other
        paths of photos (copies), model, the vector index (type,
        compression, lists and nprobe, recall@10 measured when it was built, `rerank` (candidates
        re-ranked per hit by exact vectors, None when not), estimated memory,
        search device), every vector space ({name: dim, vectors, model_version, index_type}),
        database, size on disk."""
        self._require_index()
        self.refresh()
        files, faces = self.store.counts()
        size = sum(_size_if_present(f) for f in self.index_dir.iterdir())
        vectors = self.vectors.stats()
        library = self.store.library_counts()
        videos = library.pop("videos")
        return {"index": str(self.index_dir), "photos": files - videos, "videos": videos, "faces": faces,
                "vectors": len(self.vectors),
                "failed": [(p.path, p.error) for p in self.store.failed_photos()],
                **library,
                "model_version": self.store.get_meta("model_version"),
                "dims": int(self.store.get_meta("dims") or 0) or None, "index_type": vectors["index_type"],
                "compression": vectors["compression"], "nlist": vectors["nlist"],
                "nprobe": vectors["nprobe"], "recall_at_10": vectors["recall_at_10"],
                "rerank": vectors["rerank"],
                "index_memory_bytes": vectors["memory_bytes"],
                "search_device": vectors["search_device"],
                "compression_notice": vectors["compression_notice"],
                "spaces": {name: {"dim": space.dim, "vectors": len(space),
                                  "model_version": space.model_version,
                                  "index_type": space.index_type}
                           for name, space in self.spaces.items()},
                "database": redacted(database_url(self.index_dir, self.db_url)),
                "size_bytes": size}

    def close(self) -> None:
        """Let go of the database connection and the preparing threads (their models)."""
        if "store" in self.__dict__:
            self.__dict__.pop("store").close()
        if "describer" in self.__dict__:
            self.__dict__.pop("describer").close()


    # --- browsing: faces and photos by id (the web page's reads, facesearch.server) -----------
    def face(self, face_id: int) -> dict | None:
        """One stored face: {face_id, photo_id, face_index, path, bbox [x0, y0, x1, y1] in original
        pixels, attributes, missing (whether its photo file is gone)}; None if no such face."""
        found = self._face_rows(face_id)
        return None if found is None else _face_dict(*found)

    def photo(self, photo_id: int) -> dict | None:
        """One stored photo: {photo_id, path, width, height (original pixels, may be None),
        status, error, missing, media ("photo" or "video"), duration (a video's seconds), faces:
        [face(...) of each, largest first; a video's by track, with their times]}; None if
        unknown."""
        with self.store.session() as session:
            photo = session.get(PhotoRow, int(photo_id))
            if photo is None:
                return None
            return {"photo_id": photo.id, "path": photo.path, "width": photo.width,
                    "height": photo.height, "status": photo.status, "error": photo.error,
                    "missing": not Path(photo.path).is_file(), "media": photo.media or "photo",
                    "duration": photo.duration,
                    "faces": [_face_dict(face, photo) for face in photo.faces]}

    def face_thumbnail(self, face_id: int, side: int = THUMB) -> bytes | None:
        """A JPEG of a `side`-pixel square around a stored face (render.face_crop), made once and
        kept in the index folder (thumbnails/, named by face and photo content so a re-indexed
        photo gets new ones). None if there is no such face or its photo can no longer be read."""
        found = self._face_rows(face_id)
        if found is None:
            return None
        face, photo = found
        cache = self.index_dir / THUMBNAILS_DIRNAME / f"{face.id}-{photo.content_hash[:16]}-{side}.jpg"
        if cache.is_file():
            return cache.read_bytes()
        try:  # a video's face: its best frame
            decoded = load_still(photo.path, face.frame_time if photo.media == "video" else None,
                                 self.settings.max_decode_side)
        except FaceSearchError:
            return None
        data = jpeg_bytes(face_crop(decoded.pixels, [face.x0, face.y0, face.x1, face.y1],
                                    decoded.scale, side))
        cache.parent.mkdir(exist_ok=True)
        partial = cache.with_name(f".{cache.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, cache)  # readers see a whole file or none
        return data

    def photo_image(self, photo_id: int, max_side: int = 1600, time: float | None = None) -> bytes | None:
        """A JPEG of a stored photo as displayed, its longest side at most `max_side` pixels (read
        with the bounded loader); for a video, its frame at `time` seconds (default: the best
        frame of its first track, else its first frame). None if there is no such photo or its
        file is gone."""
        with self.store.session() as session:
            photo = session.get(PhotoRow, int(photo_id))
            if photo is None:
                return None
            path, video = photo.path, photo.media == "video"
            if video and time is None:
                time = photo.faces[0].frame_time if photo.faces else 0.0
        try:
            return jpeg_bytes(load_still(path, time if video else None, max_side).pixels)
        except FaceSearchError:
            return None

    def more_like_face(self, face_id: int, k: int | None = None, **options) -> Hits:
        """query() by a stored face ("more like this face"): its photo is described again and
        that face (by its place, largest first) is the query; `options` are query()'s weights,
        region, where, match... (`exclude_faces=[face_id]` leaves the face itself out of its
        hits, as the web API's /similar does). Raises FaceSearchError if the face is unknown or
        its photo is gone."""
        found = self._face_rows(face_id)
        if found is None:
            raise FaceSearchError(f"no face {face_id} in the index")
        face, photo = found
        return self.query(image=photo.path, k=k, face=face.face_index, **options)

    def prune_thumbnails(self) -> int:
        """Delete cached thumbnails of faces no longer in the index (removed or re-indexed
        photos); returns how many went."""
        folder = self.index_dir / THUMBNAILS_DIRNAME
        if not folder.is_dir():
            return 0
        with self.store.session() as session:
            current = {f"{face_id}-{content_hash[:16]}" for face_id, content_hash in session.execute(
                sa_select(FaceRow.id, PhotoRow.content_hash).join(FaceRow.photo))}
        gone = [f for f in folder.iterdir()  # ".name.tmp": being written now
                if not f.name.startswith(".") and f.name.rsplit("-", 1)[0] not in current]
        for file in gone:
            file.unlink(missing_ok=True)
        return len(gone)

    def _face_rows(self, face_id: int) -> tuple[FaceRow, PhotoRow] | None:
        """A face's row and its photo's row (read, detached), or None."""
        with self.store.session() as session:
            face = session.get(FaceRow, int(face_id))
            return None if face is None else (face, face.photo)


#: Where face thumbnails are cached, inside the index folder.
THUMBNAILS_DIRNAME = "thumbnails"


def _largest_face(faces: list[tuple]) -> int:
    """Which of a query's faces (FaceSearch._query_faces) is the default one: a photo's first
    (its faces are largest first), a video's track whose face box (in its best frame, original
    pixels) has the largest area, width x height; the first such on a tie."""
    if not faces or faces[0][4] is None:
        return 0
    areas = [max(0.0, x1 - x0) * max(0.0, y1 - y0) for x0, y0, x1, y1 in (face[3] for face in faces)]
    return int(np.argmax(areas))


def _video_query_note(face: int, track: TrackSpan, largest: bool) -> str:
    """The notice naming the track a video query used (`face`: its index, tracks by start),
    e.g. 'the video query uses track 3 (1.0-1.5 s, best frame at 1.0 s): the largest face
    (--face N picks the (N+1)-th track)'."""
    why = ("the largest face (--face N picks the (N+1)-th track)" if largest
           else f"face {face} (--face {face}), its tracks taken by start")
    return (f"the video query uses track {track.track_id} ({track.start:.1f}-{track.end:.1f} s, "
            f"best frame at {track.time:.1f} s): {why}")


def _face_dict(face: FaceRow, photo: PhotoRow) -> dict:
    """The JSON-ready description of a stored face (FaceSearch.face)."""
    return {"face_id": face.id, "photo_id": photo.id, "face_index": face.face_index,
            "path": photo.path, "bbox": [round(v, 1) for v in (face.x0, face.y0, face.x1, face.y1)],
            "attributes": face.attributes, "missing": not Path(photo.path).is_file(),
            **face.media_fields(photo)}


#: What ranks the hits of an image query in each match mode (search.planner.rank_match), said
#: beside the score (`region_score`), which is then not in order (Hits.scored_by).
MATCH_ORDER: dict[str, str] = {
    "person": "hits ranked by same_person (identity), not by this score",
    "default": "the query's person first (by same_person), then the other faces by this score",
    "look-alike": f"hits ranked by it plus {LOOKALIKE_AGREEMENT_WEIGHT:g} x 7 x the share of "
                  f"attributes expected to agree",
}


def region_score(block_weights: np.ndarray | None) -> str:
    """What an image query's score is: the sum of the 7 region cosines (-7 to 7), or with region
    weights (`--region`, `--weights`: (7,) per block) their weighted sum, whose range is minus
    to plus the sum of the weights' absolute values."""
    if block_weights is None:
        return f"sum of the {len(REGIONS)} region cosines (-{len(REGIONS)} to {len(REGIONS)})"
    reach = float(np.abs(np.asarray(block_weights, np.float64)).sum())
    return f"weighted sum of the {len(REGIONS)} region cosines ({-reach:g} to {reach:g})"


#: At or below this fit (0-1) of the best hit, a text query says nothing fits it well: the
#: weighted geometric mean of the asked classes' probabilities (search.terms.class_fit), so one
#: class at even odds or worse (a pixel attribute nobody could read fits at
#: search.terms.UNMEASURED_PIXEL_FIT, below it: "long hair" among face chips that show no hair).
WEAK_FIT = 0.5


def _scored_by(strategy: str, terms: list, restriction: Filter | None) -> str:
    """What a query's score is when it has no query vector, so no region is compared (Hits.
    scored_by): browsing by a filter alone (the number it orders by, planner.rank), or a text
    whose classes have no class centre (pixel attributes): their fit, 0-1."""
    if strategy == "browse":
        order = restriction.ordering() if restriction is not None else []
        if order:
            key, descending = order[0]
            return f"{key} ({'highest' if descending else 'lowest'} first); no region compared"
        return "1: every face meets the filter (listed in index order); no region compared"
    labels = ", ".join(term.label for term in terms)
    return (f"fit to {labels} (0-1, read from the photo's pixels); no region compared (no class "
            "centre to compare with)")


def _same_file(first: object, second: object) -> bool:
    """Whether two compare arguments are paths of one existing file."""
    if not all(isinstance(x, (str, os.PathLike)) for x in (first, second)):
        return False
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def _print_notice(line: str) -> None:
    """The default on_notice: one line on stderr."""
    import sys

    print(f"note: {line}", file=sys.stderr)


def no_face_error(image: str | os.PathLike | np.ndarray) -> FaceSearchError:
    """The one-line error for a photo (path or array) in which no face was found, saying when the
    file is truncated (images.truncated_at_end: only its first part could be read)."""
    if isinstance(image, np.ndarray):
        return FaceSearchError("no face found in the image")
    cut = " (the file is truncated: read as far as it goes)" if truncated_at_end(image) else ""
    return FaceSearchError(f"no face found in {image}{cut}")


def _check_min_same_person(value: float | None, image: object, match: str) -> None:
    """FaceSearchError (one line) unless `value` is None or a probability 0-1 asked of an image
    query in a mode that shows the query's person ("person", "default")."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not 0.0 <= float(value) <= 1.0:
        raise FaceSearchError(f"--min-same-person (min_same_person=) must be a probability between 0 and 1 (got {value!r})")
    if image is None:
        raise FaceSearchError("--min-same-person (min_same_person=) applies to image queries (their hits carry same_person)")
    if match == "look-alike":
        raise FaceSearchError("a minimum same-person probability keeps the query's person, which match "
                              "look-alike leaves out: use match person (or default)")


# --- the Python API's arguments: a wrong type is one line (errors.ArgumentTypeError) -----------
_PATH = "a path (str or os.PathLike)"
_NONE = type(None)


def _check_query_types(image: object, text: object, where: object, region: object, match: object,
                       person: object, face: object) -> None:
    """ArgumentTypeError unless query()'s arguments have the types it takes."""
    _image_argument(image, none_ok=True)
    require_type(text, (str, _NONE), "text", "a string")
    require_type(where, (str, Filter, _NONE), "where", "a filter string (\"smiling > 0.5\") or a Filter")
    require_type(region, (str, _NONE), "region", "a region's name (str)")
    require_type(match, str, "match", f"a string, one of {', '.join(MATCHES)}")
    require_type(person, (str, int, np.integer, _NONE), "person", "a person's name (str) or id (int)")
    require_type(face, (int, np.integer, _NONE), "face", "a face's place in the image (int, 0 = largest)")


def _weights_argument(weights: object) -> Mapping[str, float] | None:
    """query()'s `weights`: a {region: number} mapping, or the CLI's "hair=2,eyes=1" string
    (ranking.parse_weights); ArgumentTypeError for other types or a region that is no string,
    FaceSearchError for a weight that is no number."""
    if isinstance(weights, str):
        return parse_weights(weights)
    require_type(weights, (Mapping, _NONE), "weights",
                 "a mapping of region to number ({\"hair\": 2}) or a string \"hair=2,eyes=1\"")
    for name, value in (weights or {}).items():
        require_type(name, str, "each region named in weights", "a region's name (str)")
        try:
            float(value)
        except (TypeError, ValueError):
            raise FaceSearchError(f"weights: {name}={value!r} is not a number") from None
    return weights


def _image_argument(image: object, none_ok: bool = False) -> str | os.PathLike | np.ndarray | None:
    """`image` itself when it is a path or an RGB array (or None with `none_ok`), else
    ArgumentTypeError."""
    require_type(image, (str, os.PathLike, np.ndarray) + ((_NONE,) if none_ok else ()), "image",
                 "a path (str or os.PathLike) or an RGB array (numpy, H x W x 3)")
    return image


def _iterable(values: object, name: str, expected: str = "a list (or other iterable)") -> Iterable:
    """`values` when it is an iterable other than a string, bytes or array, else ArgumentTypeError."""
    if isinstance(values, (str, bytes, np.ndarray)) or not isinstance(values, Iterable):
        require_type(values, (), name, expected)
    return values


def _path_list(paths: object, name: str) -> list:
    """A path or an iterable of paths as a list; ArgumentTypeError for anything else in it."""
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    listed = list(_iterable(paths, name, f"{_PATH} or a list of paths"))
    for path in listed:
        require_type(path, (str, os.PathLike), f"each of {name}", _PATH)
    return listed


def _person_id(value: object, name: str) -> int:
    """A person's id given as an int or its digits; ArgumentTypeError for anything else
    (FaceSearch._person_id reads names too)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    require_type(value, (int, np.integer), name, "a person's id (int; `people()` lists them)")
    return int(value)


def _size_if_present(path: Path) -> int:
    """A file's size, 0 for folders and for files gone since listed (an indexer's temp file)."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except FileNotFoundError:
        return 0
