"""People: the faces of an index grouped into persons by their identity vectors.

After every index run `update_people` does, in one transaction:

1. every face without a person (and not taken out of one by the user) whose identity vector is
   at least the grouping threshold (`grouping_threshold()`: the identity cosine at which the
   calibrated same-person probability is GROUPING_PROBABILITY, 0.95) from a person's centroid joins the nearest such person (`assign`);
2. the faces still without a person are clustered with scikit-learn's HDBSCAN (`cluster`): each
   cluster becomes a new person once it holds together (`consistent`: a member below the same
   threshold from the centroid of the other members, the rule a face joining a person meets,
   leaves it while min_faces stay; a smaller cluster stays whole only if its mean pairwise
   cosine reaches the threshold and every two of its faces are the same person by one pair's
   operating point); faces in no cluster wait for more photos. Incremental: only the faces new since the last run
   (face ids above the one recorded, TRIED_UP_TO) and the waiting faces at least the threshold
   from one of them are clustered, so faces that waited before are clustered again only when a
   new face may be their person (HDBSCAN takes time quadratic in the faces it is given: 8,000
   waiting faces took minutes each run, bench/people_grouping.py);
3. every person's centroid is recomputed from its faces (unit mean); a person left without faces
   and without a name is dropped (a named one is kept, with its last centroid, for its faces to
   come back to).

Faces whose quality record (pipeline/detect/quality.py) is below MIN_QUALITY are left out of
grouping: tiny or blurred faces in the background, whose identity vectors are alike whoever they
are. A face without a quality record (indexed before it) is grouped as before. So are faces
estimated younger than models.arcface.RELIABLE_FROM_AGE: the identity network tells young
children apart poorly (a trial's index had ten different babies as one person).

So a person keeps its id and name when its photos are described again (their new faces join it
through its centroid) and when more photos come. Persons are kept in SQL (store.PersonRow,
faces.person_id; migration 0006). Naming, merging and taking a face out are `name_person`,
`merge_people` and `remove_face`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from facesearch.errors import FaceSearchError
from facesearch.index.store import (
    CLASS_COLUMNS,
    FaceClasses,
    FaceRow,
    FaceVector,
    IndexMeta,
    PersonRow,
    PhotoRow,
    Store,
    decode_vectors,
    encode_vector,
    media_fields,
)
from facesearch.models.arcface import RELIABLE_FROM_AGE, SAME_PERSON_PROBABILITY, calibration
from facesearch.pipeline.detect.quality import RELIABLE_QUALITY
from facesearch.spec import AGE_KEY, IDENTITY, IDENTITY_DIM, unit_mean

#: Same-person probability (models.arcface calibration) with which a face joins a person's
#: centroid and every member of a new person must hold with the unit mean of the others. Stricter
#: than the 0.5 of one pair, because grouping compares a face with every person at once: at 0.5
#: (cosine 0.191), one face of each of 263 other CelebA identities added to the validation
#: identities' 432 faces as singletons fell into look-alike clusters (BCubed P 0.920 indexed at
#: once, 0.788 in two runs); at 0.95 (cosine 0.310) P is 0.989 both ways, and on the validation
#: faces alone F is 0.976 / 0.971 (was 0.978 / 0.962). (Those cosines are of the calibration
#: fitted on mediapipe's alignment; refitted for scrfd's, 0.5 is 0.186 and 0.95 is 0.303, and
#: the validation faces' F is again 0.976 / 0.971.) training/people_eval.py measures both.
GROUPING_PROBABILITY = 0.95
#: Faces of lower quality (the quality record's value, 0..1) join no person and make none
#: (pipeline.detect.quality.RELIABLE_QUALITY, where it was measured on the wild CelebA photos).
MIN_QUALITY = RELIABLE_QUALITY
#: Meta key set once `update_people` has grouped the index (an index made before people lacks it).
GROUPED = "people_grouped"
#: Meta key: the highest face id `update_people` has seen (faces above it are new to grouping).
TRIED_UP_TO = "people_tried_up_to"


@dataclass
class PeopleUpdate:
    """What `update_people` did."""

    assigned: int = 0      # faces that joined an existing person
    created: int = 0       # new persons
    clustered: int = 0     # faces in those new persons
    unassigned: int = 0    # faces left without a person (in no cluster yet)
    dropped: int = 0       # persons left without faces and without a name, removed


def cluster(vectors: np.ndarray, min_faces: int, min_samples: int) -> np.ndarray:
    """HDBSCAN clusters of unit identity vectors (n, 512) float32, Euclidean distance (on unit
    vectors a monotone function of the cosine), excess-of-mass selection: labels (n,) int64,
    0.. a cluster, -1 in none. Fewer than `min_faces` vectors: all -1. HDBSCAN never selects
    the root of its cluster tree, so vectors holding ONE group (a person's three photos among
    strangers' faces, or new photos of one person in an incremental run's pool) came out with no
    cluster at all (a video's speaker, two tracks and a photo, among 5 audience faces: none);
    when the first pass finds none, a second allows a single cluster (allow_single_cluster),
    which `consistent` checks like any other."""
    vectors = np.asarray(vectors, dtype=np.float64)
    if len(vectors) < max(min_faces, 2):
        return np.full(len(vectors), -1, np.int64)
    # scikit-learn takes a second to import: only when needed
    from sklearn.cluster import HDBSCAN

    for single in (False, True):
        found = HDBSCAN(min_cluster_size=min_faces, min_samples=min_samples, metric="euclidean",
                        cluster_selection_method="eom", allow_single_cluster=single,
                        copy=True).fit_predict(vectors)
        if (found >= 0).any():
            break
    return found.astype(np.int64)


def assign(vectors: np.ndarray, centroids: np.ndarray, threshold: float) -> np.ndarray:
    """For each vector (n, d) the index of the nearest centroid (m, d) by cosine when that
    cosine is at least `threshold`, else -1: (n,) int64. Rows are assumed unit norm."""
    if not len(vectors) or not len(centroids):
        return np.full(len(vectors), -1, np.int64)
    cosines = np.asarray(vectors, np.float32) @ np.asarray(centroids, np.float32).T
    best = cosines.argmax(axis=1)
    return np.where(cosines[np.arange(len(vectors)), best] >= threshold, best, -1).astype(np.int64)


def consistent(vectors: np.ndarray, labels: np.ndarray, threshold: float, min_faces: int,
               pair_threshold: float | None = None) -> np.ndarray:
    """Clusters (labels (n,) int64, -1 none) of unit vectors (n, d) checked as a person must
    hold together: members whose cosine with the unit mean of the cluster's OTHER members is
    below `threshold` leave it (repeated until none does) while at least `min_faces` stay; when
    fewer would stay, the cluster is kept as it is if its members' mean pairwise cosine reaches
    `threshold` and every two of them are the same person by one pair's operating point
    (`pair_threshold`, default the calibration's cosine at probability 0.5: a person with one
    odd photo, sunglasses or a new haircut), and dissolved (-1) otherwise. HDBSCAN can chain
    faces of several people seen once or twice into one cluster (in 512 dimensions there is no
    density gap between them); this takes them apart. (Without the pair rule, two photos of one
    person at cosine 0.72 kept a third person's face at 0.15 and 0.18 with them: their mean
    pairwise cosine, 0.35, passed; 3 of 8 persons of 100 wild CelebA photos mixed two people.)
    Returns new labels (n,) int64 (cluster numbers kept)."""
    if pair_threshold is None:
        pair_threshold = calibration().cosine(SAME_PERSON_PROBABILITY)
    labels = np.asarray(labels, np.int64).copy()
    vectors = np.asarray(vectors, np.float32)
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        while True:
            total = vectors[members].sum(axis=0)
            others = total[None, :] - vectors[members]
            norms = np.maximum(np.linalg.norm(others, axis=1), 1e-12)
            passing = np.einsum("nd,nd->n", vectors[members], others) / norms >= threshold
            if passing.all():
                break
            if passing.sum() >= min_faces:
                members = members[passing]
                continue
            n = len(members)
            pairwise = (float(total @ total) - n) / max(n * (n - 1), 1)
            cosines = vectors[members] @ vectors[members].T
            if pairwise < threshold or cosines[np.triu_indices(n, 1)].min(initial=1.0) < pair_threshold:
                members = members[:0]
            break
        labels[labels == label] = -1
        if len(members) >= min_faces:
            labels[members] = label
    return labels


def group(vectors: np.ndarray, centroids: np.ndarray, threshold: float, min_faces: int,
          min_samples: int, tried: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1 and 2 of the module's docstring for faces without a person: vectors (n, 512)
    unit, the persons' centroids (m, 512) unit; `tried` (n,) bool: faces an earlier run left
    waiting (None: none). Every face may join a person; of those that join none, the untried
    ones and the tried ones at least `threshold` (cosine) from an untried one are clustered
    (`cluster`, then `consistent`). Returns (joined (n,) int64: index of the person joined or
    -1; clusters (n,) int64: for faces that joined none, their new cluster 0.. or -1 (in none);
    -1 for faces that joined a person)."""
    vectors = np.asarray(vectors, np.float32)
    joined = assign(vectors, centroids, threshold)
    clusters = np.full(len(vectors), -1, np.int64)
    free = joined < 0
    new = free if tried is None else free & ~np.asarray(tried, bool)
    waiting = np.flatnonzero(free & ~new)
    near = np.zeros(len(vectors), bool)
    fresh = vectors[new]
    for start in range(0, len(waiting), 4096):  # (new x waiting) cosines, a block at a time
        block = waiting[start:start + 4096]
        if len(fresh):
            near[block] = (vectors[block] @ fresh.T >= threshold).any(axis=1)
    pool = np.flatnonzero(new | near)
    clusters[pool] = consistent(vectors[pool], cluster(vectors[pool], min_faces, min_samples),
                                threshold, min_faces)
    return joined, clusters


def grouping_threshold() -> float:
    """The identity cosine at GROUPING_PROBABILITY under the shipped calibration (0.303): the
    `threshold` of `update_people` and `group`."""
    return calibration().cosine(GROUPING_PROBABILITY)


def update_people(store: Store, threshold: float, min_faces: int, min_samples: int) -> PeopleUpdate:
    """Assign, cluster and recompute centroids (the module's docstring) in one transaction.
    `threshold`: the grouping cosine (`grouping_threshold()`); `min_faces`,
    `min_samples`: HDBSCAN's min_cluster_size and min_samples (Settings.people_min_faces,
    people_min_samples). Faces without an identity vector, faces below MIN_QUALITY and faces
    estimated younger than RELIABLE_FROM_AGE are left alone."""
    update = PeopleUpdate()
    with store.session() as session:
        quality = FaceClasses.__table__.c[CLASS_COLUMNS["quality"]]
        age = FaceClasses.__table__.c[CLASS_COLUMNS[AGE_KEY]]
        rows = session.execute(
            sa.select(FaceRow.id, FaceRow.person_id, FaceRow.person_locked, FaceVector.vector)
            .join(FaceVector, sa.and_(FaceVector.face_id == FaceRow.id, FaceVector.space == IDENTITY))
            .outerjoin(FaceClasses, FaceClasses.face_id == FaceRow.id)
            .where(FaceVector.vector.is_not(None))
            .where(sa.or_(quality.is_(None), quality >= MIN_QUALITY))
            .where(sa.or_(age.is_(None), age >= RELIABLE_FROM_AGE)).order_by(FaceRow.id)).all()
        if not rows:
            session.merge(IndexMeta(key=GROUPED, value="1"))
            return update
        face_ids = np.array([row[0] for row in rows], np.int64)
        person_of = np.array([row[1] if row[1] is not None else -1 for row in rows], np.int64)
        locked = np.array([bool(row[2]) for row in rows])
        vectors = decode_vectors([row[3] for row in rows], IDENTITY_DIM)
        persons = list(session.scalars(sa.select(PersonRow).where(PersonRow.centroid.is_not(None))
                                       .order_by(PersonRow.id)))
        before = person_of.copy()
        free = np.flatnonzero((person_of < 0) & ~locked)
        centroids = decode_vectors([p.centroid for p in persons], IDENTITY_DIM)
        seen = session.get(IndexMeta, TRIED_UP_TO)  # only with GROUPED (gone with persons)
        grouped_before = session.get(IndexMeta, GROUPED) is not None
        tried = face_ids[free] <= (int(seen.value) if seen is not None and grouped_before else -1)
        joined, labels = group(vectors[free], centroids, threshold, min_faces, min_samples, tried)
        person_of[free[joined >= 0]] = [persons[n].id for n in joined[joined >= 0]]
        update.assigned = int((joined >= 0).sum())
        for label in np.unique(labels[labels >= 0]):
            person = PersonRow()
            session.add(person)
            session.flush()
            members = free[labels == label]
            person_of[members] = person.id
            update.created += 1
            update.clustered += len(members)
        update.unassigned = int(((joined < 0) & (labels < 0)).sum())
        changed = person_of != before
        for person_id in np.unique(person_of[changed]):
            ids = face_ids[changed & (person_of == person_id)].tolist()
            for start in range(0, len(ids), 500):
                session.execute(sa.update(FaceRow).where(FaceRow.id.in_(ids[start:start + 500]))
                                .values(person_id=int(person_id))
                                .execution_options(synchronize_session=False))
        _recompute_centroids(session, person_of, vectors)
        update.dropped = _drop_empty(session)
        session.merge(IndexMeta(key=GROUPED, value="1"))
        session.merge(IndexMeta(key=TRIED_UP_TO, value=str(int(face_ids.max()))))
    return update


def grouped(store: Store) -> bool:
    """Whether `update_people` has run on this index (False for an index made before people)."""
    return store.get_meta(GROUPED) is not None


def _recompute_centroids(session: Session, person_of: np.ndarray, vectors: np.ndarray) -> None:
    """Each person's centroid from its faces' vectors; written only where it changed."""
    stored = {person_id: blob for person_id, blob
              in session.execute(sa.select(PersonRow.id, PersonRow.centroid))}
    members = np.flatnonzero(person_of >= 0)
    members = members[np.argsort(person_of[members], kind="stable")]
    ids, starts = np.unique(person_of[members], return_index=True)
    sums = np.add.reduceat(vectors[members], starts, axis=0) if len(members) else vectors[:0]
    changed = []
    for person_id, total in zip(ids, sums):  # one pass over the faces, not one per person
        centroid = encode_vector(total / max(float(np.linalg.norm(total)), 1e-12))
        if stored.get(int(person_id)) != centroid:
            changed.append({"id": int(person_id), "centroid": centroid})
    if changed:  # one executemany by primary key (per-row ORM updates took seconds per 1,000)
        session.execute(sa.update(PersonRow), changed)


def _drop_empty(session: Session) -> int:
    """Drop the persons without faces and without a name; returns how many."""
    has_face = sa.select(FaceRow.id).where(FaceRow.person_id == PersonRow.id).exists()
    return session.execute(sa.delete(PersonRow).where(~has_face, PersonRow.name.is_(None))).rowcount or 0


def _refresh_centroid(session: Session, person_id: int) -> None:
    """Recompute one person's centroid from its faces (kept as it was when it has none)."""
    blobs = session.scalars(sa.select(FaceVector.vector).join(FaceRow, FaceRow.id == FaceVector.face_id)
                            .where(FaceRow.person_id == person_id, FaceVector.space == IDENTITY,
                                   FaceVector.vector.is_not(None))).all()
    if blobs:
        session.execute(sa.update(PersonRow).where(PersonRow.id == person_id)
                        .values(centroid=encode_vector(unit_mean(decode_vectors(blobs, IDENTITY_DIM)))))


def _person(session: Session, person_id: int) -> PersonRow:
    person = session.get(PersonRow, int(person_id))
    if person is None:
        raise FaceSearchError(f"there is no person {person_id}: `facesearch people` lists them")
    return person


def people(store: Store) -> list[dict]:
    """Every person, most faces first: {"id", "name" (None until named), "faces": [{"face_id",
    "path", "bbox" [x0, y0, x1, y1] pixels, "det_score", "media" and a video face's track_id,
    start, end, time (FaceRow.media_fields)}, best detection first]}. An unnamed
    person whose photos were all removed since the last index run is left out."""
    with store.session() as session:
        persons = list(session.scalars(sa.select(PersonRow).order_by(PersonRow.id)))
        faces: dict[int, list[dict]] = {person.id: [] for person in persons}
        query = (sa.select(FaceRow.person_id, FaceRow.id, PhotoRow.path, FaceRow.x0, FaceRow.y0,
                           FaceRow.x1, FaceRow.y1, FaceRow.det_score, PhotoRow.media, FaceRow.track_id,
                           FaceRow.track_start, FaceRow.track_end, FaceRow.frame_time)
                 .join(FaceRow.photo).where(FaceRow.person_id.is_not(None))
                 .order_by(FaceRow.det_score.desc(), FaceRow.id))
        for person_id, face_id, path, x0, y0, x1, y1, score, *media in session.execute(query):
            faces[person_id].append({"face_id": face_id, "path": path,
                                     "bbox": [round(v, 1) for v in (x0, y0, x1, y1)],
                                     "det_score": round(float(score), 4), **media_fields(*media)})
        found = [{"id": person.id, "name": person.name, "faces": faces[person.id]}
                 for person in persons if faces[person.id] or person.name is not None]
    return sorted(found, key=lambda person: (-len(person["faces"]), person["id"]))


def persons_of_faces(store: Store, face_ids: list[int]) -> dict[int, dict]:
    """{face id: {"id", "name"}} of the person of each of these faces that has one."""
    found: dict[int, dict] = {}
    wanted = sorted({int(i) for i in face_ids})
    with store.session() as session:
        for start in range(0, len(wanted), 500):
            query = (sa.select(FaceRow.id, PersonRow.id, PersonRow.name)
                     .join(PersonRow, PersonRow.id == FaceRow.person_id)
                     .where(FaceRow.id.in_(wanted[start:start + 500])))
            for face_id, person_id, name in session.execute(query):
                found[face_id] = {"id": person_id, "name": name}
    return found


def name_person(store: Store, person_id: int, name: str) -> None:
    """Give a person a name (FaceSearchError: no such person, an empty name, a name of digits
    alone, which would read as a person's id wherever a person is given by name or id, or a name
    another person has, in any case: merge them instead)."""
    name = name.strip()
    if not name:
        raise FaceSearchError("a person's name cannot be empty")
    if name.isdigit():
        raise FaceSearchError(f"a person's name cannot be digits alone ({name!r} reads as a person's id)")
    with store.session() as session:
        person = _person(session, person_id)
        others = session.execute(sa.select(PersonRow.id, PersonRow.name).where(
            PersonRow.name.is_not(None), PersonRow.id != person.id)).all()
        other = next(((pid, taken) for pid, taken in others if taken.casefold() == name.casefold()), None)
        if other is not None:
            raise FaceSearchError(f"person {other[0]} is already called {other[1]!r}: "
                                  f"`facesearch people merge {other[0]} {person.id}` joins them")
        person.name = name


def merge_people(store: Store, keep: int, other: int) -> None:
    """Move every face of person `other` to person `keep` and drop `other`; `keep` keeps its id
    and its name (or takes `other`'s when it has none). FaceSearchError for an unknown person
    or a person merged with itself."""
    if int(keep) == int(other):
        raise FaceSearchError("a person cannot be merged with itself")
    with store.session() as session:
        kept, gone = _person(session, keep), _person(session, other)
        name = kept.name or gone.name
        session.execute(sa.update(FaceRow).where(FaceRow.person_id == gone.id).values(person_id=kept.id))
        session.delete(gone)
        session.flush()
        kept.name = name
        _refresh_centroid(session, kept.id)


def remove_face(store: Store, face_id: int) -> int:
    """Take a face out of its person, for good (it is never assigned automatically again);
    returns the person's id. The person's centroid is recomputed from its other faces.
    FaceSearchError if the face is unknown or in no person."""
    with store.session() as session:
        face = session.get(FaceRow, int(face_id))
        if face is None:
            raise FaceSearchError(f"there is no face {face_id} in the index")
        if face.person_id is None:
            raise FaceSearchError(f"face {face_id} is in no person")
        person_id = face.person_id
        face.person_id = None
        face.person_locked = True
        session.flush()
        _refresh_centroid(session, person_id)
    return person_id


def vector_ids_of_persons(store: Store, persons: list[int]) -> np.ndarray:
    """Vector ids (int64, ascending) of every face of these persons."""
    wanted = sorted({int(p) for p in persons})
    found: list[int] = []
    with store.session() as session:
        for start in range(0, len(wanted), 500):
            found += session.scalars(sa.select(FaceRow.vector_id)
                                     .where(FaceRow.person_id.in_(wanted[start:start + 500])))
    return np.sort(np.fromiter(found, dtype=np.int64, count=len(found)))


def person_ids_named(store: Store, name: str) -> list[int]:
    """The ids of the persons called `name` (a number names a person by id); FaceSearchError
    when there is none."""
    with store.session() as session:
        query = sa.select(PersonRow.id).where(PersonRow.name == name)
        if name.strip().isdigit():
            query = sa.select(PersonRow.id).where(sa.or_(PersonRow.name == name,
                                                         PersonRow.id == int(name)))
        found = list(session.scalars(query))
        if not found:  # a name that differs only in case (or barely): say which was meant
            names = list(session.scalars(sa.select(PersonRow.name).where(PersonRow.name.is_not(None))))
            meant = ([other for other in names if other.casefold() == name.casefold()]
                     or difflib.get_close_matches(name, names, n=1, cutoff=0.8))
            hint = f" (did you mean {meant[0]!r}?)" if meant else ""
            raise FaceSearchError(f"no person is called {name!r}{hint}: `facesearch people` lists them")
    return found
