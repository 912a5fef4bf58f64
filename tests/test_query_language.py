"""Queries as people ask them (issue 17): the numpy sentence encoder and the shipped description
bank, age phrases, what happens when nothing is understood, `vocabulary`, browsing by filter,
--exclude-self, and the CLI's edges (--version, flag typos, output paths, --face, info numbers)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from clitools import assert_one_line_error, run
from conftest import REPO_ROOT, BuiltIndex, rgb

from facesearch.errors import FaceSearchError
from facesearch.search import text
from facesearch.search.filters import parse_filter
from facesearch.search.terms import COLUMNS, MAX_AGE, ClassTerm, class_fit
from facesearch.spec import AGE_KEY


# --- the encoder and the bank ---------------------------------------------------------------------
def test_numpy_encoder_gives_sentence_transformers_embeddings() -> None:
    from sentence_transformers import SentenceTransformer

    from facesearch.search.encoder import encoder, model_path

    phrases = ["a gloomy fellow", "black hair", "a smiling woman with black hair and no glasses", "x"]
    reference = SentenceTransformer(str(model_path()), device="cpu").encode(
        phrases, normalize_embeddings=True, convert_to_numpy=True)
    ours = encoder().encode(phrases)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-4


def test_shipped_bank_matches_the_vocabulary_and_the_encoder() -> None:
    """The .npz in the package was built for today's descriptions (rebuild it with
    `python -m facesearch.search.text` after editing search/descriptions.py)."""
    stored = text._stored_bank()
    assert stored is not None, "description_bank.npz is stale: run python -m facesearch.search.text"
    fresh = text._embed([phrase for _, phrase, _ in text._bank_rows()[:20]])
    assert np.abs(stored[:20] - fresh).max() < 1e-4


def test_a_cold_text_query_loads_neither_torch_nor_transformers(built_index: BuiltIndex) -> None:
    code = ("import sys; from facesearch import FaceSearch; "
            f"hits = FaceSearch({str(built_index.index_dir)!r}).query(text='a gloomy man with a pointy nose, under 40', k=3); "
            "assert len(hits) == 3; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert time.perf_counter() - start < 10  # ~1 s on 2 idle cores; generous for a busy machine


# --- ages ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("phrase, years", [
    ("under 20", (0, 20)), ("over 60", (60, MAX_AGE)), ("younger than thirty", (0, 30)),
    ("between 25 and 35", (25, 36)), ("a 25-35 year old woman", (25, 36)),
    ("about 40", (36, 45)), ("60+", (60, MAX_AGE)), ("a man 50 or older", (50, MAX_AGE)),
    ("someone aged 20 to 30", (20, 31)), ("under the age of 18", (0, 18)), ("over age 50", (50, MAX_AGE)),
    ("between thirty and forty", (30, 41)), ("18 or under", (0, 19)),
    # in the open-ended oldest group (70+) an age or a decade is a range, not "70 or more"
    ("a man in his eighties", (80, 90)), ("in her late 80s", (80, 90)), ("in his nineties", (90, 100)),
    ("a 90 year old", (86, 95)), ("aged 96", (92, 101)), ("in his seventies", (70, 80)),
])
def test_age_ranges_read_from_numbers(phrase: str, years: tuple[float, float]) -> None:
    parsed = text.parse(phrase)
    ranges = [term for term in parsed.terms if term.years is not None]
    assert len(ranges) == 1 and ranges[0].years == years
    assert not ranges[0].negated and not parsed.not_understood


def test_under_20_is_no_longer_the_twenties_and_other_classes_stay() -> None:
    terms = text.parse("men over sixty with glasses").terms
    assert {t.label for t in terms} == {"age >= 60", "male", "Eyeglasses"}
    assert [t.label for t in text.parse("not over 60").terms] == ["NOT age >= 60"]
    assert all(t.name != "age_20_29" for t in text.parse("under 20").terms)


@pytest.mark.parametrize("phrase, group", [
    ("a woman in her thirties", "age_30_39"), ("teenager", "age_10_19"), ("elderly", "age_70_plus"),
    ("a 45-year-old man", "age_40_49"),
])
def test_decades_and_age_words_name_their_age_group(phrase: str, group: str) -> None:
    assert group in {t.name for t in text.parse(phrase).terms}


def test_an_age_range_fits_by_the_age_estimate() -> None:
    rows = np.zeros((3, len(COLUMNS)), np.float32)
    rows[:, COLUMNS.index(AGE_KEY)] = [12, 35, 70]
    for row, group in enumerate(("age_10_19", "age_30_39", "age_70_plus")):  # the age-group head
        rows[row, COLUMNS.index(group)] = 1.0
    under_20 = ClassTerm("age_10_19", 1.0, False, "under 20", (0.0, 20.0))
    fit = class_fit([under_20], rows)
    assert fit[0] > 0.9 and fit[1] < 0.1 and fit[2] < 0.1
    over_60 = ClassTerm("age_60_69", 1.0, False, "over 60", (60.0, MAX_AGE))
    assert np.argmax(class_fit([over_60], rows)) == 2


# --- not understood, vocabulary -----------------------------------------------------------------
def test_nothing_understood_names_the_words_and_suggests_known_ones() -> None:
    message = text.not_understood("freckls")
    assert "not understood: freckls" in message and "nearest known:" in message
    assert "facesearch vocabulary" in message
    spelled = text.not_understood("eyeglases")
    assert "'eyeglasses' (Eyeglasses)" in spelled  # a close spelling comes first


def test_colours_no_class_has_are_not_understood() -> None:
    """A new user's trial: "purple hair" and "blue hair" became Blond_Hair, "green hair" and
    "hazel eyes" Brown_Hair, "pink hair" Rosy_Cheeks, "grey eyes" eyes_brown (the encoder's
    nearest descriptions). A colour said of hair or eyes names a class only if that class has
    the colour; the known colours are listed; gibberish gets no suggestions by meaning."""
    for phrase in ("purple hair", "blue hair", "green hair", "pink hair", "grey eyes", "hazel eyes",
                   "a woman with purple hair"):
        assert not {t.name for t in text.parse(phrase).terms} - {"female", "adult"}, phrase
    assert "colours known: hair black, blond, brown, grey, red" in text.not_understood("purple hair")
    assert [t.name for t in text.parse("a woman with purple hair, smiling").terms] == ["female", "Smiling", "adult"]
    for phrase, name in (("red hair", "hair_red"), ("a red-haired man", "hair_red"), ("white hair", "Gray_Hair"),
                         ("dark hair", "Black_Hair"), ("light brown hair", "Brown_Hair"),
                         ("light blue eyes", "eyes_blue"), ("dark brown eyes", "eyes_brown"),
                         ("green eyes", "eyes_green"), ("blue-eyed", "eyes_blue"), ("long red hair", "hair_red")):
        assert name in {t.name for t in text.parse(phrase).terms}, phrase
    assert "Wearing_Lipstick" in {t.name for t in text.parse("red lips").terms}  # not a hair or eye colour
    assert "nearest known" not in text.not_understood("zzzz qqq")


def test_emotion_words_are_understood_as_emotion_classes() -> None:
    """The emotion classes (models/emotion.py) answer emotion words; none is unknown now."""
    assert [t.name for t in text.parse("sad").terms] == ["sad"]
    assert text.unknown_emotions("sad, angry, scared") == [] and not text.vocabulary()["not_yet_known"]


def test_vocabulary_lists_classes_ages_and_words_for_everyone() -> None:
    words = text.vocabulary()
    assert "black hair" in words["classes"]["Black_Hair"]
    assert "under 20" in words["ages"] and "everyone" in words["everyone"]
    assert text.asks_for_everyone("a person") and text.asks_for_everyone("Everyone")
    assert not text.asks_for_everyone("a person with glasses")


def test_a_filter_names_its_classes_as_terms() -> None:
    assert [t.label for t in parse_filter("male < 0.5 and smiling > 0.5").terms()] == ["NOT male", "Smiling"]
    assert [t.label for t in parse_filter("not eyeglasses > 0.5").terms()] == ["NOT Eyeglasses"]
    assert [t.label for t in parse_filter("age < 30").terms()] == ["age < 30"]
    assert parse_filter("path ~ '*/2019/*'").terms() == []
    with pytest.raises(FaceSearchError, match=r"unexpected '\*' \(a pattern is quoted: path ~ '\*holiday\*'\)$"):
        parse_filter("path ~ *utk*")  # a trial left the pattern unquoted


# --- the API --------------------------------------------------------------------------------------
def test_browsing_by_filter_alone_returns_the_faces_meeting_it_best_fit_first(built_index: BuiltIndex) -> None:
    fs = built_index.fs
    hits = fs.query(where="eyeglasses > 0.5", k=20)
    assert hits, "the shared index holds faces with glasses (032591.jpg)"
    assert all(hit.attributes["Eyeglasses"] > 0.5 for hit in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # ranked as the text of what it asks: the hits say so (not region cosines), text and JSON
    assert hits.scored_by is not None and hits.scored_by.startswith("fit to Eyeglasses (0-1) + ")
    assert hits.to_dicts()[0]["score_is"] == hits.scored_by
    assert fs.query(where="age > 50", k=3).scored_by.startswith("fit to age >= 50 (0-1)")
    everyone = fs.query(text="a person", k=100)
    assert len(everyone) == fs.store.counts()[1]
    assert len({h.face_id for h in everyone}) == len(everyone)
    by_path = fs.query(where=f"path ~ '*{built_index.photos[0].name}'", k=5)
    assert {h.path for h in by_path} == {str(built_index.photos[0])}


def test_exclude_leaves_the_query_photo_out(built_index: BuiltIndex) -> None:
    fs, photo = built_index.fs, built_index.photos[0]
    plain = fs.query(image=photo, k=5)
    assert plain[0].path == str(photo)
    excluded = fs.query(image=photo, k=5, exclude=photo)
    assert len(excluded) == 5 and str(photo) not in {h.path for h in excluded}
    assert [h.face_id for h in excluded[:3]] == [h.face_id for h in plain if h.path != str(photo)][:3]


def test_exclude_knows_a_copy_of_the_query_photo(built_index: BuiltIndex, tmp_path) -> None:
    """A copy of an indexed photo under another name is that photo: excluded all the same."""
    import shutil

    fs, photo = built_index.fs, built_index.photos[0]
    copy = Path(shutil.copy2(photo, tmp_path / "renamed copy.jpg"))
    assert str(photo) not in {h.path for h in fs.query(image=copy, k=5, exclude=copy)}


def test_an_indexed_query_photo_gives_the_same_hits_as_describing_it(built_index: BuiltIndex) -> None:
    fs, photo = built_index.fs, built_index.photos[1]
    stored = fs.query(image=photo, k=5)
    described = fs.query(image=rgb(photo), k=5)  # an array: always described
    assert [h.face_id for h in stored] == [h.face_id for h in described]


def test_face_without_an_image_and_nothing_understood_are_errors(built_index: BuiltIndex) -> None:
    with pytest.raises(FaceSearchError, match=r"--face \(face=\) picks a face of the query image"):
        built_index.fs.query(text="smiling", face=1)
    with pytest.raises(FaceSearchError, match="not understood: qwzx"):
        built_index.fs.query(text="qwzx")


# --- the CLI --------------------------------------------------------------------------------------
def test_cli_edges(built_index: BuiltIndex, facesearch_command: list[str], tmp_path: Path) -> None:
    index = ["--index", built_index.index_dir]
    done = run(facesearch_command, "--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("facesearch ")
    typo = assert_one_line_error(run(facesearch_command, "query", "--txt", "smiling", *index, cwd=tmp_path))
    assert "--txt" in typo and "did you mean --text?" in typo
    missing = tmp_path / "no" / "sheet.png"
    line = assert_one_line_error(run(facesearch_command, "query", "--text", "smiling", "--sheet", missing,
                                     *index, cwd=tmp_path))
    assert "does not exist" in line
    photo = built_index.photos[0]
    line = assert_one_line_error(run(facesearch_command, "query", "--image", photo, "--sheet", photo,
                                     *index, cwd=tmp_path))
    assert "input file" in line
    line = assert_one_line_error(run(facesearch_command, "describe", photo, "--out", tmp_path / "no" / "o.png",
                                     cwd=tmp_path))
    assert "does not exist" in line
    for face in ("0", "1"):  # even the default, given with a text only, is a mistake said
        line = assert_one_line_error(run(facesearch_command, "query", "--text", "smiling", "--face", face,
                                         *index, cwd=tmp_path))
        assert "--face picks a face of --image" in line


def test_cli_browse_exclude_self_vocabulary_and_info_numbers(built_index: BuiltIndex,
                                                           facesearch_command: list[str], tmp_path: Path) -> None:
    index = ["--index", built_index.index_dir]
    done = run(facesearch_command, "query", "--where", "eyeglasses > 0.5", "--json", *index, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(hit["attributes"]["Eyeglasses"] > 0.5 for hit in json.loads(done.stdout))
    photo = built_index.photos[0]
    done = run(facesearch_command, "query", "--image", photo, "--exclude-self", "-k", "3", "--json", *index,
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(photo) not in {hit["path"] for hit in json.loads(done.stdout)}
    done = run(facesearch_command, "vocabulary", cwd=tmp_path)
    assert done.returncode == 0 and "Black_Hair" in done.stdout and "under 20" in done.stdout
    details = json.loads(run(facesearch_command, "info", "--json", *index, cwd=tmp_path).stdout)
    assert details["dims"] == 364


def test_words_left_out_of_a_partly_understood_text_are_named() -> None:
    understood = text.parse("smiling woman with freckles and a tattoo")
    assert {t.name for t in understood.terms} == {"Smiling", "female", "adult"}
    assert understood.not_understood == ["freckles", "tattoo"]
    assert understood.as_dict()["not_understood"] == ["freckles", "tattoo"]
    # a fully understood text leaves nothing out: linking words, filler and pronouns are no words
    for phrase in ("a man over 50 with glasses, not smiling", "clean-shaven guy with specs",
                 "someone in her thirties with black hair"):
        assert text.parse(phrase).not_understood == [], phrase


def test_a_word_for_a_grown_person_implies_an_adult_without_steering() -> None:
    """"surprised woman" put four 1-year-olds first: "woman" (not "girl") now adds an age range
    from 15 at half weight, which re-ranks (a baby whose surprise is likelier falls behind a
    woman) but never moves the query vector; a text that asks an age keeps only its own."""
    import numpy as np

    from facesearch.search import ranking
    from facesearch.search.terms import COLUMNS

    terms = text.parse("surprised woman").terms
    adult = [t for t in terms if t.name == "adult"]
    assert len(adult) == 1 and adult[0].years == (text.ADULT_FROM, MAX_AGE) and adult[0].weight == 0.5
    assert not ranking.class_shift(adult[0], np.ones((60, 364), np.float32)).any()
    assert not any(t.name == "adult" for t in text.parse("a surprised girl").terms)
    assert not any(t.name == "adult" for t in text.parse("a man over 50").terms)
    groups = [name for name in COLUMNS if name.startswith("age_")]
    baby = {"surprise": 0.83, "female": 0.6, "male": 0.4, "age": 1.2} | {g: 0.0 for g in groups} | {"age_0_2": 1.0}
    woman = {"surprise": 0.4, "female": 0.95, "male": 0.05, "age": 31.0} | {g: 0.0 for g in groups} | {"age_30_39": 1.0}
    ranked = ranking.rerank(terms, [(0.2, 1), (0.1, 2)], [baby, woman])
    assert [i for _, i in ranked] == [2, 1]
    without = [t for t in terms if t.name != "adult"]  # the baby first, as before
    assert [i for _, i in ranking.rerank(without, [(0.2, 1), (0.1, 2)], [baby, woman])] == [1, 2]
