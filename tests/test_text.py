"""Text queries -> classes, with the real (pip-installed, offline) sentence encoder."""
from __future__ import annotations

import json

import pytest

from facesearch.spec import CLASSES, EMOTIONS, PIXEL_ATTRIBUTES
from facesearch.search.descriptions import DESCRIPTIONS, OPPOSITES
from facesearch.search.terms import ClassTerm, TextQuery
from facesearch.search.text import parse


def understood(text: str) -> set[tuple[str, bool]]:
    """(class, negated) pairs parsed from `text` (the "adult" a word such as "woman" implies
    is tested on its own, tests/test_query_language.py)."""
    return {(term.name, term.negated) for term in parse(text).terms if term.name != "adult"}


def test_every_class_has_descriptions() -> None:
    # the network's classes, and the probabilities without a class centre (pixel attributes,
    # emotions) that text can ask for too
    assert set(CLASSES) <= set(DESCRIPTIONS) <= set(CLASSES) | set(PIXEL_ATTRIBUTES) | set(EMOTIONS)
    assert all(len(phrases) >= 3 for phrases in DESCRIPTIONS.values())
    assert set(OPPOSITES) <= set(CLASSES)


@pytest.mark.parametrize(("text", "expected"), [
    ("dark-haired", {("Black_Hair", False)}),
    ("specs", {("Eyeglasses", False)}),
    ("clean-shaven", {("No_Beard", False)}),
    ("grinning", {("Smiling", False)}),
    ("East Asian", {("asian", False)}),
    ("blonde woman", {("Blond_Hair", False), ("female", False)}),
    ("a guy in horn-rimmed glasses", {("male", False), ("Eyeglasses", False)}),
    ("big fat lips", {("Big_Lips", False)}),
    ("a 45-year-old man", {("age_40_49", False), ("male", False)}),
    ("she is in her thirties", {("female", False), ("age_30_39", False)}),
    ("a bearded guy", {("No_Beard", True), ("male", False)}),
])
def test_paraphrases_map_to_their_classes(text: str, expected: set[tuple[str, bool]]) -> None:
    assert understood(text) == expected


def test_elderly_is_an_old_age_group() -> None:
    assert understood("elderly") in ({("age_70_plus", False)}, {("age_60_69", False)})


@pytest.mark.parametrize(("text", "expected"), [
    ("no glasses", {("Eyeglasses", True)}),
    ("not smiling", {("Smiling", True)}),
    ("without a beard", {("No_Beard", False)}),
    ("she isn't wearing a hat", {("female", False), ("Wearing_Hat", True)}),
    ("non-smiling man", {("Smiling", True), ("male", False)}),
    ("no earrings or necklace", {("Wearing_Earrings", True), ("Wearing_Necklace", True)}),
    ("a guy without his glasses", {("male", False), ("Eyeglasses", True)}),
])
def test_negation(text: str, expected: set[tuple[str, bool]]) -> None:
    assert understood(text) == expected


@pytest.mark.parametrize("text", ["a red car", "the weather is nice", "asdf", "", "  ,;  "])
def test_unrelated_text_gives_no_terms(text: str) -> None:
    assert parse(text).terms == []


def test_several_phrases() -> None:
    assert understood("black hair, smiling") == {("Black_Hair", False), ("Smiling", False)}
    assert understood("a smiling woman with black hair and no glasses") == {
        ("Smiling", False), ("female", False), ("Black_Hair", False), ("Eyeglasses", True),
    }


def test_one_gender_per_phrase() -> None:
    terms = parse("a smiling woman").terms
    assert [term.name for term in terms if term.name in ("male", "female")] == ["female"]


def test_query_output() -> None:
    query = parse("black hair and no glasses")
    assert isinstance(query, TextQuery) and query.text == "black hair and no glasses"
    assert all(isinstance(term, ClassTerm) and 0 < term.weight <= 1 for term in query.terms)
    assert str(query) == query.summary() == "Black_Hair (1.00), NOT Eyeglasses (1.00)"
    rows = json.loads(json.dumps(query.to_json()))
    assert rows[1] == {"name": "Eyeglasses", "weight": 1.0, "negated": True, "phrase": "glasses"}
