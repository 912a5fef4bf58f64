"""Text queries end to end on real photos (the shared small index), and the text-query eval.

Like the rest of the suite these check behaviour that holds for any trained weights: rankings
follow the stored class probabilities the way facesearch.search.ranking says, not particular accuracies.
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facesearch import FaceSearchError
from facesearch.training import text_eval
from facesearch.search import ranking
from facesearch.spec import CELEBA_ATTRIBUTES, CLASSES
from facesearch.search import terms as terms_
from facesearch.search.terms import ClassTerm


def mean_probability(hits, name: str, top: int = 3) -> float:
    return float(np.mean([hit.attributes[name] for hit in hits[:top]]))


# --- the API on real photos --------------------------------------------------------------------
def test_negation_turns_the_ranking_around(built_index) -> None:
    fs, n = built_index.fs, built_index.report.faces
    wearing = fs.query(text="wearing glasses", k=n)
    without = fs.query(text="no glasses", k=n)
    assert [str(t) for t in without.understood.terms] == ["NOT Eyeglasses (1.00)"]
    assert mean_probability(wearing, "Eyeglasses") > mean_probability(without, "Eyeglasses")
    # the face that most surely wears glasses comes first; "no glasses" ends with glasses
    surest = max(wearing, key=lambda hit: hit.attributes["Eyeglasses"]).face_id
    assert wearing[0].face_id == surest
    assert without[-1].attributes["Eyeglasses"] > without[0].attributes["Eyeglasses"]


def test_paraphrase_ranks_like_the_attribute_names(built_index) -> None:
    fs = built_index.fs
    plain = fs.query(text="blond hair, smiling", k=5)
    paraphrase = fs.query(text="a grinning blonde", k=5)
    assert {t.name for t in paraphrase.understood.terms} == {"Blond_Hair", "Smiling"}
    assert [hit.face_id for hit in paraphrase] == [hit.face_id for hit in plain]


@pytest.mark.parametrize("text", ["a red car", "the weather is nice today"])
def test_unknown_text_is_a_clear_error(built_index, text: str) -> None:
    with pytest.raises(FaceSearchError, match="nothing face-related was understood"):
        built_index.fs.query(text=text)


def test_mixed_query_moves_toward_the_text(built_index, data_dir: Path) -> None:
    """A dark-haired man's face with "blond hair": the top hits are blonder than without it."""
    fs, n = built_index.fs, built_index.report.faces
    photo = data_dir / "celeba" / "wild" / "000461.jpg"  # black hair (labels.csv)
    alone = fs.query(image=photo, k=3)
    mixed = fs.query(image=photo, text="blond hair", k=3)
    assert alone.understood is None and [t.name for t in mixed.understood.terms] == ["Blond_Hair"]
    assert mean_probability(mixed, "Blond_Hair") > mean_probability(alone, "Blond_Hair")
    everything = fs.query(image=photo, text="blond hair", k=n)
    assert [hit.face_id for hit in everything[:3]] == [hit.face_id for hit in mixed]


def test_hits_explain_the_classes_and_serialise(built_index) -> None:
    hits = built_index.fs.query(text="a smiling woman without glasses", k=4)
    understood = hits.understood
    # "woman" also implies an adult (an age range from 15, text.ADULT_FROM)
    assert {str(t).split(" (")[0] for t in understood.terms} == {"Smiling", "female", "NOT Eyeglasses", "age >= 15"}
    for hit in hits:
        fits = understood.explain(hit.attributes)
        assert set(fits) == {"Smiling", "female", "NOT Eyeglasses", "age >= 15"}
        assert fits["Smiling"] == pytest.approx(hit.attributes["Smiling"], abs=1e-4)
        assert fits["NOT Eyeglasses"] == pytest.approx(1 - hit.attributes["Eyeglasses"], abs=1e-4)
        assert 0 <= fits["female"] <= 1
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    # what the CLI's --json can carry: the understood query and each hit's fit
    payload = [hit.to_dict() | {"query": understood.as_dict(),
                                "fits": understood.explain(hit.attributes)} for hit in hits]
    again = json.loads(json.dumps(payload))
    assert again[0]["query"]["understood"] == understood.summary()
    assert {t["name"] for t in again[0]["query"]["terms"]} == {"Smiling", "female", "Eyeglasses", "adult"}


# --- the ranking code ----------------------------------------------------------------------------
def test_rerank_follows_class_fit() -> None:
    terms = [ClassTerm("Smiling", 1.0, False, "smiling"), ClassTerm("Eyeglasses", 1.0, True, "no glasses")]
    probabilities = np.full((3, len(terms_.COLUMNS)), 0.5, np.float32)
    probabilities[:, CLASSES.index("Smiling")] = [0.9, 0.9, 0.1]
    probabilities[:, CLASSES.index("Eyeglasses")] = [0.9, 0.1, 0.1]
    candidates = [(0.3, 10), (0.2, 11), (0.1, 12)]
    ranked = ranking.rerank(terms, candidates, probabilities)
    # fits 0.3, 0.9, 0.3: smiling without glasses first, then the vector score breaks the tie
    assert [i for _, i in ranked] == [11, 10, 12]
    fit = terms_.class_fit(terms, probabilities)
    assert fit[1] == pytest.approx(0.9)  # geometric mean of 0.9 and 1 - 0.1
    assert ranking.rerank(terms, candidates, probabilities,
                          settings=replace(ranking.DEFAULT, rerank=False)) == candidates


def test_an_unread_pixel_attribute_ranks_below_a_likely_reading() -> None:
    """"woman with short hair": a woman measured short-haired (hair_short at most 0.3 for women)
    comes before women whose hair length nobody could read, who come before long-haired ones."""
    terms = [ClassTerm("female", 1.0, False, "woman"), ClassTerm("hair_short", 1.0, False, "short hair")]
    woman = {"female": 0.99, "male": 0.01, "Male": 0.01}
    stored = [woman | {"hair_short": 0.02}, woman, woman | {"hair_short": 0.3}]  # long, unread, short
    ranked = ranking.rerank(terms, [(0.3, 10), (0.2, 11), (0.1, 12)], stored)
    assert [i for _, i in ranked] == [12, 11, 10]
    matrix = terms_.probability_matrix(stored, ["hair_short", "Smiling"])
    assert matrix[1, terms_.COLUMNS.index("hair_short")] == terms_.UNMEASURED_PIXEL_FIT
    assert matrix[1, terms_.COLUMNS.index("Smiling")] == 0.5  # a network class stays at even odds


def test_text_fit_of_a_low_quality_face_is_scaled_down() -> None:
    """A 13 px, blurred face (quality 0.02) whose classes are guesses falls behind a clear face
    that fits a little less; faces without a quality record keep their fit."""
    terms = [ClassTerm("fear", 1.0, False, "scared")]
    stored = [{"fear": 0.3, "quality": 0.02}, {"fear": 0.25, "quality": 0.8}, {"fear": 0.2}]
    weights = terms_.quality_weights(stored)
    assert weights == pytest.approx([0.2, 1.0, 1.0])
    candidates = [(0.3, 10), (0.2, 11), (0.1, 12)]
    assert [i for _, i in ranking.rerank(terms, candidates, stored, reliability=weights)] == [11, 12, 10]
    assert [i for _, i in ranking.rerank(terms, candidates, stored)] == [10, 11, 12]


def test_age_terms_use_the_estimate_too() -> None:
    old = ClassTerm("age_70_plus", 1.0, False, "elderly")
    attributes = {name: 0.0 for name in CLASSES} | {"age": 78.0}
    assert terms_.explain([old], attributes)["age_70_plus"] > 0.4
    assert terms_.explain([old], attributes | {"age": 25.0})["age_70_plus"] < 0.01


# --- the eval, on tiny inputs --------------------------------------------------------------------
def test_query_set_is_large_and_paraphrases_avoid_attribute_names() -> None:
    cases = text_eval.QUERIES
    assert len(cases) >= 40 and sum(c.paraphrase for c in cases) >= len(cases) / 2
    banned = text_eval.attribute_words()
    for case in cases:
        assert all(name.lstrip("!") in CELEBA_ATTRIBUTES for name in case.rule.split())
        if case.paraphrase:
            words = set(case.text.lower().replace("-", " ").split())
            assert not words & banned, (case.text, words & banned)


def test_average_precision_and_rules() -> None:
    relevant = np.array([1, 0, 1, 0, 0], bool)
    assert text_eval.average_precision(relevant, 2) == pytest.approx((1 + 2 / 3) / 2)
    assert text_eval.average_precision(relevant, 4) == pytest.approx((1 + 2 / 3) / 4)
    labels = np.zeros((3, len(CELEBA_ATTRIBUTES)), np.int8)
    labels[0, CELEBA_ATTRIBUTES.index("Male")] = 1
    labels[1, CELEBA_ATTRIBUTES.index("Smiling")] = 1
    assert text_eval.rule_mask("Male !Smiling", labels).tolist() == [True, False, False]


@pytest.fixture(scope="module")
def tiny_gallery(describer, data_dir: Path) -> text_eval.Gallery:
    """16 labelled aligned CelebA photos, described with the shipped model."""
    folder = data_dir / "celeba" / "aligned"
    with open(folder / "labels.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["file"])[::150][:16]
    faces = [describer.describe(folder / row["file"])[0] for row in rows]
    return text_eval.Gallery(
        vectors=np.stack([face.vector for face in faces]),
        probabilities=terms_.probability_matrix([face.attributes for face in faces]),
        celeba=np.array([[int(row[name]) for name in CELEBA_ATTRIBUTES] for row in rows], np.int8),
        files=np.array([row["file"] for row in rows]),
        identity=np.array([int(row["identity"]) for row in rows]))


def test_eval_functions_on_a_tiny_gallery(tiny_gallery: text_eval.Gallery) -> None:
    cases = [text_eval.TextCase("smiling", "Smiling", False),
             text_eval.TextCase("a guy", "Male", True),
             text_eval.TextCase("a red car", "Male", False)]
    report = text_eval.query_set_report(tiny_gallery, cases)
    rows = report["queries"]
    assert [row["text"] for row in rows] == [case.text for case in cases]
    assert rows[2]["understood"] == "" and rows[2]["P@10"] == 0.0  # not understood: a miss
    for row in rows[:2]:
        assert 0 <= row["P@10"] <= 1 and 0 <= row["AP@100"] <= 1 and 0 <= row["prevalence"] <= 1
    assert report["mean"]["all"]["queries"] == 3 and report["mean"]["paraphrase"]["queries"] == 1

    captions = {file: f"A {'smiling ' if i % 2 else ''}person with black hair."
                for i, file in enumerate(tiny_gallery.files[:8])}
    recall = text_eval.caption_report(tiny_gallery, captions)
    assert recall["photos"] == 8 and recall["random R@1"] == pytest.approx(1 / 8)
    assert 0 <= recall["R@1"] <= recall["R@5"] <= recall["R@10"] == 1.0  # 10 hits of 8 photos

    mixed = text_eval.mixed_report(tiny_gallery, queries_at_most=2)
    assert mixed["queries"] <= 2
    for name in ("image only", "image + text"):
        assert 0 <= mixed[name]["blond@10"] <= 1

    table = text_eval.format_report({"gallery_faces": len(tiny_gallery), "query_set": report,
                                     "captions": recall, "mixed": mixed})
    assert "mean paraphrase" in table and "R@10" in table
