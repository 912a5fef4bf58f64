"""The classes a query names (`ClassTerm`, `TextQuery`) and how well a face fits them.

A face's fit to a term is read from its stored class probabilities (`term_probabilities`); its
fit to a whole description is their weighted geometric mean (`class_fit`). Text queries re-rank
by it (search/ranking.py) and hits explain themselves with it (`TextQuery.explain`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from facesearch.pipeline.detect.quality import RELIABLE_QUALITY
from facesearch.spec import AGE_GROUPS, AGE_KEY, CLASSES, EMOTIONS, GENDERS, PIXEL_ATTRIBUTES

#: Probabilities are floored here before logs: one very unsure class cannot sink a face alone.
PROBABILITY_FLOOR = 0.01
#: Spread (years) of the age estimate around the true age, for the age-group fit from `age`.
AGE_SPREAD = 6.0
#: Oldest age a range reaches ("over 60" is 60 to MAX_AGE).
MAX_AGE = 120.0
#: The fit of a pixel attribute nobody could read (hair cut off by a tight crop, eyes behind
#: glasses or too small): below a likely reading, above an unlikely one. At 0.5 (even odds, as
#: before) unknown faces outranked women measured short-haired, whose hair_short is at most
#: 0.3 (pipeline.pixel_attributes.SHORT_IF_FEMALE; likewise men's long hair), and on UTKFace
#: chips an unknown iris took a place in the "green eyes" top 10.
UNMEASURED_PIXEL_FIT = 0.25

#: Columns of a probability matrix: every class, the age estimate in years, then the
#: probabilities that are not the network's classes (no class centre): emotions, and the
#: attributes read from pixels (pipeline/pixel_attributes.py).
COLUMNS: tuple[str, ...] = (*CLASSES, AGE_KEY, *EMOTIONS, *PIXEL_ATTRIBUTES)
_AGE_GROUPS = {name: (first, last) for name, first, last in AGE_GROUPS}


@dataclass(frozen=True)
class ClassTerm:
    """One class understood in a text query."""

    name: str       # a class of spec.CLASSES ("adult": the age range a word implies, search.text)
    weight: float   # confidence in (0, 1]: the cosine similarity of the matching span
    negated: bool   # True: the face should NOT have this class
    phrase: str     # the text fragment it came from
    #: An age range [first, last) in years ("under 20": (0, 20)): the face fits by its age
    #: estimate; `name` is then the age group holding the range's middle (its direction in
    #: master-vector space).
    years: tuple[float, float] | None = None

    @property
    def label(self) -> str:
        """"Eyeglasses", "NOT Eyeglasses", "age 0-20"."""
        if self.years is not None:
            first, last = self.years
            what = (f"age < {last:g}" if first <= 0 else f"age >= {first:g}" if last >= MAX_AGE
                    else f"age {first:g}-{last - 1:g}")
        else:
            what = self.name
        return f"{'NOT ' if self.negated else ''}{what}"

    def __str__(self) -> str:
        return f"{self.label} ({self.weight:.2f})"


@dataclass
class TextQuery:
    """A parsed text query: the original text and the classes understood in it."""

    text: str
    terms: list[ClassTerm] = field(default_factory=list)
    #: Words of the text the model cannot answer yet (e.g. emotions), said rather than dropped.
    not_known: list[str] = field(default_factory=list)
    #: Other words of the text that no understood term covers ("freckles" in "smiling, with
    #: freckles"): the query ran without them, and says so.
    not_understood: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One readable line: `Black_Hair (0.91), Smiling (0.88), NOT Eyeglasses (0.85)`."""
        return ", ".join(str(term) for term in self.terms)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> list[dict]:
        """The terms as a list of plain dicts (name, weight, negated, phrase; and years,
        [first, last), for an age range)."""
        return [{key: value for key, value in asdict(term).items()
                 if key != "years" or value is not None} for term in self.terms]

    def as_dict(self) -> dict:
        """JSON-ready: the text, the one-line description and the terms."""
        return {"text": self.text, "understood": self.summary(), "terms": self.to_json(),
                "not_known": list(self.not_known), "not_understood": list(self.not_understood)}

    def explain(self, attributes: dict[str, float]) -> dict[str, float]:
        """How well a face (its stored `attributes`) fits each term, e.g.
        {"Blond_Hair": 0.97, "NOT Eyeglasses": 0.99}: the evidence text queries rank by."""
        return explain(self.terms, attributes)


# --- class probabilities ---------------------------------------------------------------------
def probability_matrix(attributes: Sequence[Mapping[str, float]],
                       names: Sequence[str] = COLUMNS) -> np.ndarray:
    """(n, len(COLUMNS)) float32 from stored `attributes` dicts: the columns in `names` read
    (where a dict lacks one or holds None, unknown: 0.5, or UNMEASURED_PIXEL_FIT for a pixel
    attribute), the others left at 0.5."""
    matrix = np.full((len(attributes), len(COLUMNS)), 0.5, dtype=np.float32)
    for name in names:
        unknown = UNMEASURED_PIXEL_FIT if name in PIXEL_ATTRIBUTES else 0.5
        matrix[:, COLUMNS.index(name)] = [unknown if a.get(name) is None else float(a[name])
                                          for a in attributes]
    return matrix


def quality_weights(attributes: Sequence[Mapping[str, float]]) -> np.ndarray:
    """(n,) in (0, 1]: min(1, quality / RELIABLE_QUALITY) from stored `attributes` dicts (1
    without a quality record: faces indexed before it). A text's fit is scaled by it, so faces
    about 20 px or smaller, or badly blurred, whose classes are guesses, fall behind clear faces
    (pipeline.detect.quality.RELIABLE_QUALITY)."""
    return np.array([1.0 if not isinstance(a.get("quality"), (int, float))
                     else min(1.0, max(float(a["quality"]), 1e-3) / RELIABLE_QUALITY)
                     for a in attributes])


def _share_in(first_group: int, last_group: int, first: float, last: float) -> float:
    """The share of an age group's years (first_group..last_group, the last one capped at 90)
    that fall in the range [first, last)."""
    stop = min(last_group, 89) + 1
    overlap = max(0.0, min(stop, last) - max(first_group, first))
    return overlap / (stop - first_group)


def needed_columns(terms: Sequence[ClassTerm]) -> list[str]:
    """The probability columns `term_probabilities` reads for these terms."""
    names = {term.name for term in terms if term.years is None}
    if names & set(GENDERS):
        names.add("Male")
    if names & set(_AGE_GROUPS):
        names.add(AGE_KEY)
    if any(term.years is not None for term in terms):
        names |= {AGE_KEY, *_AGE_GROUPS}
    return sorted(names)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x) elementwise, same shape (float64 for float64 input), vectorised (Abramowitz & Stegun 7.1.26 for erf: error below 2e-7)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def term_probabilities(terms: Sequence[ClassTerm], probabilities: np.ndarray) -> np.ndarray:
    """(n, len(terms)): the probability that each face fits each term (1 - p if negated).

    Gender terms average the gender head with CelebA's `Male`; an age group averages the
    age-group head with the age estimate's chance to fall in the group (± AGE_SPREAD years):
    both heads are noisy alone, and neighbouring age groups are easily confused. An age range
    ("under 20", `ClassTerm.years`) likewise averages the estimate's chance to fall in the range
    with the age-group heads, each weighted by the share of its years inside the range (measured
    in training/text_eval.py, AGE_CASES: P@10 0.86 with both, 0.81 with the estimate alone).
    """
    probabilities = np.asarray(probabilities).reshape(-1, len(COLUMNS))

    def column(name: str) -> np.ndarray:
        return probabilities[:, COLUMNS.index(name)].astype(np.float64)

    columns = []
    for term in terms:
        if term.years is not None:
            first, last = term.years
            age = column(AGE_KEY)
            p = normal_cdf((last - age) / AGE_SPREAD) - normal_cdf((first - age) / AGE_SPREAD)
            head = sum(column(name) * _share_in(first_g, last_g, first, last)
                       for name, (first_g, last_g) in _AGE_GROUPS.items())
            p = (p + head) / 2
            columns.append(1.0 - p if term.negated else p)
            continue
        p = column(term.name)
        if term.name in GENDERS:
            male = column("Male")
            p = (p + (male if term.name == "male" else 1.0 - male)) / 2
        elif term.name in _AGE_GROUPS:
            first, last = _AGE_GROUPS[term.name]
            age = column(AGE_KEY)
            in_group = (normal_cdf((last + 1 - age) / AGE_SPREAD)
                        - normal_cdf((first - age) / AGE_SPREAD))
            p = (p + in_group) / 2
        columns.append(1.0 - p if term.negated else p)
    return np.stack(columns, axis=1) if columns else np.ones((len(probabilities), 0))


def class_fit(terms: Sequence[ClassTerm], probabilities: np.ndarray) -> np.ndarray:
    """(n,) in (0, 1]: weighted geometric mean over the terms of `term_probabilities`."""
    if not terms:
        return np.ones(len(probabilities))
    p = np.clip(term_probabilities(terms, probabilities), PROBABILITY_FLOOR, 1.0)
    weights = np.array([term.weight for term in terms])
    return np.exp(np.log(p) @ weights / max(weights.sum(), 1e-9))


def explain(terms: Sequence[ClassTerm], attributes: Mapping[str, float]) -> dict[str, float]:
    """Why a face fits a description: each understood term ("Blond_Hair", "NOT Eyeglasses")
    with the probability that the face fits it."""
    fits = term_probabilities(terms, probability_matrix([attributes], needed_columns(terms)))[0]
    return {t.label: round(float(p), 4) for t, p in zip(terms, fits)}
