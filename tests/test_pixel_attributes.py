"""Hair length, red hair and eye colour read from real photos' pixels (pipeline/pixel_attributes.py),
carried in described faces' attributes, stored, filtered and asked for in words.

The photos named here were checked by eye: wild/187412 and aligned/152772 red hair, and in
celeba/wild 002184 long brown hair, 002767 long blond hair, 000987 and 000461 short dark hair
(men)."""
from __future__ import annotations

import numpy as np
import pytest

from facesearch.pipeline.detect.mediapipe import MediapipeDetector
from facesearch.pipeline.pixel_attributes import (EYE_PROTOTYPES, PixelMeasurer, eye_probabilities,
                                                  length_probabilities, red_probability)
from facesearch.search.text import parse
from facesearch.spec import PIXEL_ATTRIBUTES
from tests.conftest import rgb


@pytest.fixture(scope="module")
def measured(data_dir):
    detector, measurer = MediapipeDetector(), PixelMeasurer()
    values = {}
    for name in ("wild/187412.jpg", "aligned/152772.jpg", "wild/002184.jpg", "wild/002767.jpg",
                 "wild/000987.jpg", "wild/000461.jpg"):
        pixels = rgb(data_dir / "celeba" / name)
        values[name] = measurer.measure(pixels, detector.detect(pixels)[0])
    return values


def test_hair_length_and_red_hair_on_checked_photos(measured):
    red_1, red_2, brown, blond, short_1, short_2 = measured.values()
    assert red_1["hair_red"] > 0.5 and red_2["hair_red"] > 0.5
    assert brown["hair_long"] > 0.5 and blond["hair_long"] > 0.5
    assert brown["hair_red"] < 0.5 and blond["hair_red"] < 0.5
    for short in (short_1, short_2):
        assert short["hair_short"] > 0.5 and short["hair_long"] < 0.5 and short["hair_red"] < 0.5
    for values in measured.values():
        assert set(values) <= set(PIXEL_ATTRIBUTES)
        assert all(0.0 <= v <= 1.0 for v in values.values())


def test_eye_colour_only_where_the_eyes_are_large_enough(data_dir):
    detector, measurer = MediapipeDetector(), PixelMeasurer()
    pixels = rgb(data_dir / "celeba" / "wild" / "000987.jpg")
    face = detector.detect(pixels)[0]
    eyes = measurer.eyes(pixels, face)
    assert set(eyes) == {"eyes_blue", "eyes_green", "eyes_brown"}
    assert abs(sum(eyes.values()) - 1) < 1e-6
    small = pixels[::6, ::6].copy()  # eyes a few pixels wide: no colour can be read
    found = detector.detect(small)
    if found:
        assert measurer.eyes(small, found[0]) == {}


def test_probability_rules():
    red, brown, blond = np.array([35.0, 30.0, 18.0]), np.array([20.0, 6.0, 9.0]), np.array([60.0, 6.0, 22.0])
    assert red_probability(red) > 0.9 and red_probability(brown) < 0.1 and red_probability(blond) < 0.1
    assert length_probabilities(1.0)["hair_long"] > 0.9 > length_probabilities(-0.5)["hair_long"]
    assert length_probabilities(-0.8)["hair_short"] > 0.9 > length_probabilities(0.0)["hair_short"]
    for name, prototype in EYE_PROTOTYPES.items():
        assert max(eye_probabilities(np.array(prototype)).items(), key=lambda kv: kv[1])[0] == name


def test_words_for_pixel_attributes():
    cases = {"red hair": "hair_red", "a ginger": "hair_red", "auburn": "hair_red",
             "long hair": "hair_long", "short-haired": "hair_short", "blue eyes": "eyes_blue",
             "green-eyed": "eyes_green", "brown eyes": "eyes_brown"}
    for text, name in cases.items():
        assert [t.name for t in parse(text).terms] == [name], text
    both = parse("a woman with long blond hair").terms
    assert {t.name for t in both} == {"female", "hair_long", "Blond_Hair"}


def test_indexed_faces_carry_store_and_rank_them(built_index):
    fs = built_index.fs
    every = fs.query(where="hair_red >= 0", k=100)  # stored, and filtered as a column
    assert len(every) >= 10 and all(0 <= h.attributes["hair_red"] <= 1 for h in every)
    reddest = max(h.attributes["hair_red"] for h in every)
    hits = fs.query(text="red hair", k=3)
    assert hits[0].attributes["hair_red"] == reddest
    assert all(h.attributes["hair_red"] >= reddest for h in fs.query(where=f"hair_red >= {reddest}", k=20))
    assert all(h.attributes["hair_red"] < reddest for h in fs.query(where=f"hair_red < {reddest}", k=20))
    short = fs.query(text="a man with short hair", k=3)
    assert all(h.attributes["hair_short"] > 0.5 for h in short)
