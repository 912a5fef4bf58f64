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

from facesearch.spec import AGE_GROUPS, AGE_KEY, CLASSES, GENDERS

#: Probabilities are floored here before logs: one very unsure class cannot sink a face alone.
PROBABILITY_FLOOR = 0.01
#: Spread (years) of the age estimate around the true age, for the age-group fit from `age`.
AGE_SPREAD = 6.0

#: Columns of a probability matrix: every class, then the age estimate in years.
COLUMNS: tuple[str, ...] = (*CLASSES, AGE_KEY)
_AGE_GROUPS = {name: (first, last) for name, first, last in AGE_GROUPS}


@dataclass(frozen=True)
class ClassTerm:
    """One class understood in a text query."""

    name: str       # a class of spec.CLASSES
    weight: float   # confidence in (0, 1]: the cosine similarity of the matching span
    negated: bool   # True: the face should NOT have this class
    phrase: str     # the text fragment it came from

    def __str__(self) -> str:
        return f"{'NOT ' if self.negated else ''}{self.name} ({self.weight:.2f})"


@dataclass
class TextQuery:
    """A parsed text query: the original text and the classes understood in it."""

    text: str
    terms: list[ClassTerm] = field(default_factory=list)

    def summary(self) -> str:
        """One readable line: `Black_Hair (0.91), Smiling (0.88), NOT Eyeglasses (0.85)`."""
        return ", ".join(str(term) for term in self.terms)

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> list[dict]:
        """The terms as a list of plain dicts (name, weight, negated, phrase)."""
        return [asdict(term) for term in self.terms]

    def as_dict(self) -> dict:
        """JSON-ready: the text, the one-line description and the terms."""
        return {"text": self.text, "understood": self.summary(), "terms": self.to_json()}

    def explain(self, attributes: dict[str, float]) -> dict[str, float]:
        """How well a face (its stored `attributes`) fits each term, e.g.
        {"Blond_Hair": 0.97, "NOT Eyeglasses": 0.99}: the evidence text queries rank by."""
        return explain(self.terms, attributes)


# --- class probabilities ---------------------------------------------------------------------
def probability_matrix(attributes: Sequence[Mapping[str, float]],
                       names: Sequence[str] = COLUMNS) -> np.ndarray:
    """(n, len(COLUMNS)) float32 from stored `attributes` dicts: the columns in `names` read
    (0.5 where a dict lacks one), the others left at 0.5."""
    matrix = np.full((len(attributes), len(COLUMNS)), 0.5, dtype=np.float32)
    for name in names:
        matrix[:, COLUMNS.index(name)] = [float(a.get(name, 0.5)) for a in attributes]
    return matrix


def needed_columns(terms: Sequence[ClassTerm]) -> list[str]:
    """The probability columns `term_probabilities` reads for these terms."""
    names = {term.name for term in terms}
    if names & set(GENDERS):
        names.add("Male")
    if names & set(_AGE_GROUPS):
        names.add(AGE_KEY)
    return sorted(names)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Φ(x), vectorised (Abramowitz & Stegun 7.1.26 for erf: error below 2e-7)."""
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
    both heads are noisy alone, and neighbouring age groups are easily confused.
    """
    probabilities = np.asarray(probabilities).reshape(-1, len(COLUMNS))

    def column(name: str) -> np.ndarray:
        return probabilities[:, COLUMNS.index(name)].astype(np.float64)

    columns = []
    for term in terms:
        p = column(term.name)
        if term.name in GENDERS:
            male = column("Male")
            p = (p + (male if term.name == "male" else 1.0 - male)) / 2
        elif term.name in _AGE_GROUPS:
            first, last = _AGE_GROUPS[term.name]
            age = column(AGE_KEY)
            in_group = (_normal_cdf((last + 1 - age) / AGE_SPREAD)
                        - _normal_cdf((first - age) / AGE_SPREAD))
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
    return {f"{'NOT ' if t.negated else ''}{t.name}": round(float(p), 4)
            for t, p in zip(terms, fits)}
