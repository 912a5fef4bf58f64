"""What a search is restricted to: the `--where` filter language, compiled to SQL.

Filters are a small expression language over the stored class probabilities and photo metadata:

    male < 0.5 and smiling > 0.5
    30 <= age < 40                      (age: estimated years)
    (black_hair > 0.8 or blond_hair > 0.8) and not eyeglasses > 0.5
    path ~ '*/2019/*'                   (glob: * any characters, ? one; case-sensitive; a
                                        photo matches by any of its paths: copies, links)
    date >= 2019-06-01                  (the photo file's modification time, local time)
    indexed < 2026-11-22T18:00          (when the photo was indexed, local time)
    person = 'Alice'                    (faces of the person named Alice, index.people; a
                                        number is a person's id: person = 3)

Names: every class of spec.CLASSES and every other stored per-face number (spec.STORED_KEYS:
emotions, pixel attributes such as hair_red or eyes_blue, quality), case-insensitively (an exact-case spelling wins: `male` is
the gender class, `Male` CelebA's, `MALE` is an error), `age`, `path`, `date` (or `mtime`) and
`indexed` (or `indexed_at`), `person`. Operators: < <= > >= = == != (numbers, dates, paths), ~ and !~ (path
globs), `and`, `or`, `not`, parentheses. Values: numbers, 'single' or "double" quoted strings,
dates YYYY-MM-DD[THH:MM[:SS]]. A date names an interval (a day, a minute, a second): `date =
2019-06-01` is that whole day, `date > 2019-06-01` is after it.

Nothing is evaluated as Python (no eval): the text is tokenised and parsed by recursive descent
into a tree of comparisons; names are checked against the known ones; values are bound as SQL
parameters.

Where filters run: in SQL, on the faces, photos and face_classes tables. Hits read class
probabilities from the `faces.attributes` JSON column, but filtering JSON means parsing every
row's JSON (about 0.8 s for 100k faces in SQLite), so the store also keeps each face's
probabilities and age as plain FLOAT columns of `face_classes` (migration 0002), where the same
filter is a column comparison (tens of ms for 100k faces) on SQLite and PostgreSQL alike. A class
without a column (a future model's) falls back to the JSON (JSON_EXTRACT on SQLite, ->> on
PostgreSQL). The search (`planner.search_filtered`) picks its strategy by the share of faces that match,
estimated on a sample of rows: a common filter fetches k / share best faces and keeps the matching
ones; a selective one (or one whose over-fetch fell short) reads every matching vector id from SQL
and searches among those only (FAISS IDSelector, or exactly when they are few). Either way k hits
come back whenever k faces match.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Union

import sqlalchemy as sa

from facesearch.search.terms import COLUMNS, MAX_AGE, ClassTerm
from facesearch.spec import AGE_GROUPS, AGE_KEY, STORED_KEYS
from facesearch.errors import FaceSearchError

if TYPE_CHECKING:
    pass


class FilterError(FaceSearchError):
    """A --where filter that cannot be understood (one line, says where and why)."""


# --- the filter language ------------------------------------------------------------------------
_TOKENS = re.compile(r"""
    (?P<space>\s+)
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2})?)?)
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_0-9]))
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<op><=|>=|==|!=|!~|<|>|=|~)
  | (?P<paren>[()])
  | (?P<name>[A-Za-z0-9_]+)
""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not"}
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "==": "==", "!=": "!="}
_METADATA = {"age": "age", "path": "path", "date": "date", "mtime": "date",
             "indexed": "indexed", "indexed_at": "indexed", "person": "person"}
#: Every stored per-face number a filter may name (spec.STORED_KEYS but age, which is metadata):
#: classes, emotions, pixel attributes (hair_red, eyes_blue, ...), the quality record.
FILTER_KEYS: tuple[str, ...] = tuple(key for key in STORED_KEYS if key != AGE_KEY)
_CLASS_KEYS: dict[str, list[str]] = {}
for _name in FILTER_KEYS:
    _CLASS_KEYS.setdefault(_name.lower(), []).append(_name)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    at: int  # 1-based column


@dataclass(frozen=True)
class Field:
    kind: str  # "class", "age", "path", "date", "indexed", "person"
    name: str  # the class name, or the kind


@dataclass(frozen=True)
class Compare:
    field: Field
    op: str
    value: Union[float, str, tuple[datetime, datetime]]  # noqa: UP007 (dataclass field)


@dataclass(frozen=True)
class Logic:
    op: str  # "and", "or", "not"
    parts: tuple[Node, ...]


Node = Union[Compare, Logic]  # noqa: UP007


class Filter:
    """A parsed --where expression; `clause(dialect)` is its SQL condition on faces ⋈ photos."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenise(text)
        if not self.tokens:
            raise FilterError("the filter is empty")
        self._pos = 0
        self.tree = self._or()
        if self._pos < len(self.tokens):
            self._fail(self.tokens[self._pos], "expected 'and', 'or' or the end")

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"

    # recursive descent: or := and ('or' and)*; and := not ('and' not)*; not := 'not' not | atom
    def _peek(self) -> _Token | None:
        return self.tokens[self._pos] if self._pos < len(self.tokens) else None

    def _take(self) -> _Token:
        token = self._peek()
        if token is None:
            raise FilterError(f"filter {self.text!r} ends too early")
        self._pos += 1
        return token

    def _is_word(self, word: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == "name" and token.text.lower() == word

    def _or(self) -> Node:
        return self._joined("or", self._and)

    def _and(self) -> Node:
        return self._joined("and", self._not)

    def _joined(self, word: str, operand) -> Node:
        """operand (word operand)*: one node, or a Logic of them all."""
        parts = [operand()]
        while self._is_word(word):
            self._take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else Logic(word, tuple(parts))

    def _not(self) -> Node:
        if self._is_word("not"):
            self._take()
            return Logic("not", (self._not(),))
        token = self._peek()
        if token is not None and token.kind == "paren" and token.text == "(":
            self._take()
            inner = self._or()
            closing = self._take()
            if closing.text != ")":
                self._fail(closing, "expected ')'")
            return inner
        return self._comparison()

    def _comparison(self) -> Node:
        """NAME OP VALUE, VALUE OP NAME, or VALUE OP NAME OP VALUE (a range)."""
        first = self._operand()
        op = self._take()
        if op.kind != "op":
            self._fail(op, "expected a comparison (< <= > >= = != ~ !~)")
        second = self._operand()
        if isinstance(first, Field) == isinstance(second, Field):
            self._fail(op, "a comparison needs one name and one value")
        if isinstance(first, Field):
            return self._compare(first, op, second)
        low = self._compare(second, _Token("op", _FLIPPED.get(op.text, op.text), op.at), first)
        following = self._peek()
        if following is not None and following.kind == "op":
            self._take()
            return Logic("and", (low, self._compare(second, following, self._operand())))
        return low

    def _operand(self) -> Field | _Token:
        token = self._take()
        if token.kind == "name" and token.text.lower() not in _KEYWORDS:
            return self._field(token)
        if token.kind in ("number", "string", "date"):
            return token
        self._fail(token, "expected a name or a value")

    def _field(self, token: _Token) -> Field:
        if token.text in FILTER_KEYS:
            return Field("class", token.text)
        key = token.text.lower()
        if key in _METADATA:
            return Field(_METADATA[key], _METADATA[key])
        spelled = _CLASS_KEYS.get(key, [])
        if len(spelled) == 1:
            return Field("class", spelled[0])
        if spelled:
            self._fail(token, f"{token.text!r} is ambiguous: write {' or '.join(spelled)} exactly")
        known = list(FILTER_KEYS) + list(_METADATA)
        close = difflib.get_close_matches(key, [name.lower() for name in known], n=1, cutoff=0.7)
        hint = f" (did you mean {next(n for n in known if n.lower() == close[0])}?)" if close else ""
        self._fail(token, f"unknown name {token.text!r}{hint}; names are {FILTER_NAMES}")

    def _compare(self, field: Field, op: _Token, value: Field | _Token) -> Compare:
        if isinstance(value, Field):
            self._fail(op, "a comparison needs one name and one value")
        if field.kind in ("class", "age"):
            if op.text in ("~", "!~"):
                self._fail(op, f"{op.text} matches paths only")
            if value.kind != "number":
                self._fail(value, f"{field.name} is compared with a number")
            return Compare(field, op.text, float(value.text))
        if field.kind == "path":
            if op.text not in ("~", "!~", "=", "==", "!="):
                self._fail(op, "path takes ~ or !~ (glob) or = / != (exact)")
            if value.kind != "string":
                self._fail(value, "a path is given in quotes, e.g. path ~ '*/2019/*'")
            return Compare(field, op.text, value.text[1:-1])
        if field.kind == "person":
            if op.text not in ("=", "==", "!="):
                self._fail(op, "person takes = or != (a name in quotes, or a person's id)")
            if value.kind not in ("string", "number") or (value.kind == "number"
                                                          and not value.text.isdigit()):
                self._fail(value, "a person is a name in quotes (person = 'Alice') or an id")
            return Compare(field, op.text, value.text[1:-1] if value.kind == "string" else int(value.text))
        if op.text in ("~", "!~"):
            self._fail(op, f"{op.text} matches paths only")
        text = value.text[1:-1] if value.kind == "string" else value.text
        if value.kind == "number" or not re.fullmatch(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?", text):
            self._fail(value, f"{field.name} is compared with a date like 2019-06-01 or 2019-06-01T12:30")
        try:
            return Compare(field, op.text, _interval(text))
        except ValueError as error:
            self._fail(value, str(error))

    def _fail(self, token: _Token, problem: str):
        raise FilterError(f"filter {self.text!r}, at column {token.at}: {problem}")

    def terms(self) -> list[ClassTerm]:
        """The classes and age ranges the filter asks for, as query terms, so that faces meeting
        it can be ranked best fit first: `eyeglasses > 0.5` is Eyeglasses, `smiling < 0.5` is
        NOT Smiling, `age < 30` the range [0, 30). Terms under `not` are negated; path and date
        comparisons name no class (an empty list when nothing else is compared)."""
        found: list[ClassTerm] = []

        def visit(node: Node, negated: bool) -> None:
            if isinstance(node, Logic):
                for part in node.parts:
                    visit(part, negated != (node.op == "not"))
                return
            field, op, value = node.field, node.op, node.value
            if field.kind not in ("class", "age") or op in ("=", "==", "!="):
                return
            if field.kind == "class" and field.name not in COLUMNS:  # quality record: no class
                return
            above = op in (">", ">=")
            if field.kind == "class":
                term = ClassTerm(field.name, 1.0, negated == above, self.text)
            else:
                years = (float(value), MAX_AGE) if above else (0.0, float(value))
                group = next((name for name, first, last in AGE_GROUPS
                              if first <= (years[0] + min(years[1], 90.0)) / 2 <= last + 1),
                             AGE_GROUPS[-1][0])
                term = ClassTerm(group, 1.0, negated, self.text, years)
            if all(t.label != term.label for t in found):
                found.append(term)

        visit(self.tree, False)
        return found

    def ordering(self) -> list[tuple[str, bool]]:
        """The stored numbers the filter compares that name no class (`terms` leaves them
        out: the quality record, spec.QUALITY_KEYS), as (key, descending), in the order
        written, so that faces meeting a filter alone can be listed best fit first: `quality >
        0.5` is the highest quality first, `blur < 100` the lowest blur first (reversed under
        `not`). Equality and path, date or person comparisons give none."""
        found: dict[str, bool] = {}

        def visit(node: Node, negated: bool) -> None:
            if isinstance(node, Logic):
                for part in node.parts:
                    visit(part, negated != (node.op == "not"))
                return
            field, op = node.field, node.op
            if field.kind == "class" and field.name not in COLUMNS and op in ("<", "<=", ">", ">="):
                found.setdefault(field.name, (op in (">", ">=")) != negated)

        visit(self.tree, False)
        return list(found.items())

    def persons(self) -> list[str | int]:
        """The persons the filter names (`person = 'Alice'`: a name, or an id), each once, in the
        order written, so that a name no person has can be reported rather than match nothing."""
        found: list[str | int] = []

        def visit(node: Node) -> None:
            if isinstance(node, Logic):
                for part in node.parts:
                    visit(part)
            elif node.field.kind == "person" and node.value not in found:
                found.append(node.value)

        visit(self.tree)
        return found

    # --- SQL ------------------------------------------------------------------------------------
    def clause(self, dialect: str) -> sa.ColumnElement[bool]:
        """The condition on faces joined with photos, for a dialect ("sqlite", "postgresql")."""
        return _sql(self.tree, dialect)


#: What a filter can compare, in words (the unknown-name error and `facesearch vocabulary`).
FILTER_NAMES = ("class names (e.g. Smiling, male), expressions (happy, sad, ...), hair_long, "
                "hair_short, hair_red, eyes_blue, eyes_green, eyes_brown, quality, face_size, "
                "border_cut, blur, age, path, date, indexed, person")


def parse_filter(text: str) -> Filter:
    """Parse a --where expression (FilterError, one line, if it cannot be understood)."""
    return Filter(text)


def _tokenise(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKENS.match(text, pos)
        if match is None:
            hint = (" (a pattern is quoted: path ~ '*holiday*')" if text[pos] in "*?/\\."
                    else "")
            raise FilterError(f"filter {text!r}, at column {pos + 1}: unexpected {text[pos]!r}{hint}")
        if match.lastgroup != "space":
            tokens.append(_Token(match.lastgroup, match.group(), pos + 1))
        pos = match.end()
    return tokens


def _interval(text: str) -> tuple[datetime, datetime]:
    """A local date/time as its [start, end) interval in UTC (a day, a minute or a second)."""
    moment = datetime.fromisoformat(text.replace(" ", "T"))
    step = (timedelta(days=1) if len(text) == 10 else
            timedelta(minutes=1) if len(text) == 16 else timedelta(seconds=1))
    start = moment.astimezone(UTC)  # naive = local time
    return start, (moment + step).astimezone(UTC)


def _glob_to_like(pattern: str) -> str:
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _sql(node: Node, dialect: str) -> sa.ColumnElement[bool]:
    from facesearch.index.store import (
        CLASS_COLUMNS,
        FaceClasses,
        FaceRow,
        PersonRow,
        PhotoAlias,
        PhotoRow,
    )

    if isinstance(node, Logic):
        parts = [_sql(part, dialect) for part in node.parts]
        if node.op == "not":
            return sa.not_(parts[0])
        return sa.and_(*parts) if node.op == "and" else sa.or_(*parts)
    field, op, value = node.field, node.op, node.value
    if field.kind in ("class", "age"):
        key = AGE_KEY if field.kind == "age" else field.name
        if key in CLASS_COLUMNS:  # a plain column: no JSON parsing row by row
            return _compare(FaceClasses.__table__.c[CLASS_COLUMNS[key]], op, value)
        return _compare(FaceRow.attributes[key].as_float(), op, value)
    if field.kind == "path":  # a photo's path or any of its other paths (copies, links)
        def matching(column) -> sa.ColumnElement[bool]:
            if op in ("=", "==", "!="):
                return column == value
            if dialect == "sqlite":  # GLOB is case-sensitive like the files; '[' taken literally
                return column.op("GLOB")(value.replace("[", "[[]"))
            return column.like(_glob_to_like(value), escape="\\")

        any_path = sa.or_(matching(PhotoRow.path), sa.exists().where(
            PhotoAlias.photo_id == PhotoRow.id, matching(PhotoAlias.path)))
        return sa.not_(any_path) if op in ("!=", "!~") else any_path
    if field.kind == "person":  # by name, or by id for a number
        named = (PersonRow.id == value if isinstance(value, int) else PersonRow.name == value)
        of_person = FaceRow.person_id.in_(sa.select(PersonRow.id).where(named))
        return sa.or_(FaceRow.person_id.is_(None), sa.not_(of_person)) if op == "!=" else of_person
    start, end = value
    if field.kind == "date":
        column, start, end = PhotoRow.mtime, start.timestamp(), end.timestamp()
    else:
        column = PhotoRow.indexed_at
    if op in ("=", "=="):
        return sa.and_(column >= start, column < end)
    return {"!=": sa.or_(column < start, column >= end), "<": column < start,
            "<=": column < end, ">": column >= end, ">=": column >= start}[op]


def _compare(column, op: str, value):
    return {"<": column < value, "<=": column <= value, ">": column > value,
            ">=": column >= value, "=": column == value, "==": column == value,
            "!=": column != value}[op]
