"""What a query hands back: `Hit`s, best first, in a `Hits` list that remembers what a text
query was understood as."""
from __future__ import annotations

from dataclasses import dataclass, field

from facesearch.pipeline.detect.quality import is_unreliable
from facesearch.pipeline.faces import TrackSpan
from facesearch.search.terms import TextQuery


@dataclass
class Hit:
    """One search result: a stored face, its total score and the per-region similarities."""

    rank: int
    score: float
    path: str
    face_id: int
    bbox: list[float]            # [x0, y0, x1, y1] in pixels of the original photo
    #: region -> cosine similarity with the query's block; empty when the query has no vector
    #: to compare with (a text naming only pixel attributes, browsing by filter): `Hits.scored_by`
    regions: dict[str, float]
    attributes: dict[str, float]  # class -> stored probability, and "age" in years
    missing: bool = False        # the photo's file is gone from disk (`index --prune` drops it)
    other_paths: list[str] = field(default_factory=list)  # the same photo's other paths (copies, links)
    #: An image query's calibrated probability (0-1) that this face is the query face's person
    #: (identity space, models.arcface); None for text queries and indexes without identity vectors.
    same_person: float | None = None
    #: The person (index.people) this face belongs to: {"id", "name" (None until named)}, or None.
    person: dict | None = None
    #: "photo", or "video": `path` is a video and the face is a track (pipeline.tracking) seen from
    #: `start` to `end`, `bbox` and the thumbnail in its best frame at `time` (seconds); `track_id`
    #: numbers the video's tracks 1, 2, ... by start. All four None for photos.
    media: str = "photo"
    track_id: int | None = None
    start: float | None = None
    end: float | None = None
    time: float | None = None
    #: The face's quality, 0..1 (attributes["quality"], pipeline/detect/quality.py); None for
    #: faces indexed before quality was recorded. Set from `attributes` when not given.
    quality: float | None = None
    #: The face is half outside its photo (border_cut above quality.UNRELIABLE_BORDER_CUT): its
    #: attributes are not to be trusted. Set from `attributes` when not given.
    unreliable: bool | None = None

    def __post_init__(self) -> None:
        if self.quality is None:
            self.quality = self.attributes.get("quality")
        if self.unreliable is None:
            self.unreliable = is_unreliable(self.attributes)

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return dict(vars(self))


class Hits(list):
    """Search hits, best first, plus what a text query was understood as (`understood`) and
    what the score is (`scored_by`, one line: e.g. "fit to Smiling (0-1) + 0.05 x the
    class-centre score", "fit to hair_red (0-1) ...; no region compared", "quality, highest
    first"; None only where it is the plain sum of region similarities of an image query
    without a match mode)."""

    understood: TextQuery | None = None
    scored_by: str | None = None
    #: A video query's track (pipeline.faces.TrackSpan: which, and when, in seconds), else None.
    query_track: TrackSpan | None = None
    #: An image query's match mode (search.planner.MATCHES), None for a text or filter query.
    match: str | None = None

    def to_dicts(self) -> list[dict]:
        """JSON-ready hits; for a text or mixed query each also says what the text was
        understood as (`query`) and how well this face fits each understood class (`fits`);
        each says what its score is (`score_is`) when `scored_by` does."""
        extra = {} if self.scored_by is None else {"score_is": self.scored_by}
        if self.understood is None:
            return [hit.to_dict() | extra for hit in self]
        query = self.understood.as_dict()
        return [hit.to_dict() | {"query": query, "fits": self.understood.explain(hit.attributes)} | extra
                for hit in self]
