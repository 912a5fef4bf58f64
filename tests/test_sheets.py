"""Contact sheets (facesearch.render): a caption with the query's settings, labelled per-region
bars with numbers, paths shortened to fit, missing files marked, a real HTML page with crops."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facesearch.errors import FaceSearchError
from facesearch.render import contact_sheet, save_contact_sheet, sheet_caption, short_path
from tests.conftest import BuiltIndex


def test_short_path_keeps_the_file_name() -> None:
    assert short_path("/a/b/c.jpg", 40) == "/a/b/c.jpg"
    assert short_path("/very/long/folder/names/here/photo.jpg", 22) == "…/names/here/photo.jpg"
    assert short_path("/very/long/folder/names/here/photo.jpg", 21) == "…/here/photo.jpg"
    assert short_path("/x/a_really_long_file_name.jpg", 12) == "a_r…name.jpg"  # its start and end
    assert short_path("/u/14_1_0_20170109204846649.jpg.chip.jpg", 21) == "14_1_0_20170…chip.jpg"
    assert len(short_path("/x/a_really_long_file_name.jpg", 5)) <= 5


def test_caption_says_what_the_query_was(built_index: BuiltIndex) -> None:
    hits = built_index.fs.query(text="black hair, smiling", k=3, where="age < 90")
    lines = sheet_caption(hits, text="black hair, smiling", where="age < 90", weights={"hair": 2.0})
    assert lines[0] == "text: black hair, smiling" and lines[1].startswith("understood: Black_Hair")
    assert "filter: age < 90" in lines and "region weights: hair=2 (others 1)" in lines
    assert lines[-1].startswith("3 hit(s)")


def test_picture_and_html_sheets_with_a_missing_file(built_index: BuiltIndex, tmp_path: Path) -> None:
    hits = built_index.fs.query(text="smiling", k=4)
    hits[1] = dataclasses.replace(hits[1], path=str(tmp_path / "gone" / "deleted_photo.jpg"))
    png, page = tmp_path / "sheet.png", tmp_path / "sheet.html"
    save_contact_sheet(png, hits, text="smiling", where="age < 90")
    save_contact_sheet(page, hits, text="smiling", where="age < 90")
    with Image.open(png) as picture:
        assert picture.width >= 5 * 160 and picture.height > 300
    html = page.read_text()
    assert len(re.findall(r"<img class='img' alt='face \d+' src='data:image/jpeg;base64,", html)) == 3
    assert html.count("file missing") == 1 and "deleted_photo.jpg (missing)" in html
    assert html.count("class='num'") == 4 * 7 and "filter: age &lt; 90" in html
    assert "fits: Smiling" in html


def test_a_hit_tile_draws_its_face_and_a_missing_one_is_marked(built_index: BuiltIndex, tmp_path: Path) -> None:
    hits = built_index.fs.query(text="smiling", k=2)
    hits[1] = dataclasses.replace(hits[1], path=str(tmp_path / "nowhere.jpg"))
    sheet = contact_sheet(hits, text="smiling", columns=2)
    top = sheet.height - (160 + 40 + 7 * 14 + 34)  # the hits' row
    face, missing = (sheet.crop((x, top, x + 160, top + 160)) for x in (12, 184 + 12))
    assert _colours(face) > 3000     # a photo's pixels
    assert _colours(missing) < 500   # the hatched "file missing" tile (grey, antialiased red text)


def _colours(picture: Image.Image) -> int:
    return len(np.unique(np.asarray(picture).reshape(-1, 3), axis=0))


def test_other_suffixes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FaceSearchError, match="png, .jpg or .html"):
        save_contact_sheet(tmp_path / "sheet.pdf", [])


def test_a_video_querys_sheet_shows_its_tracks_frame(data_dir: Path) -> None:
    """The query panel of a video query is the frame of the track it used, and the caption says
    which track (it said "file missing" and named no track)."""
    from facesearch.pipeline.faces import TrackSpan
    from facesearch.search.hits import Hits

    clip = data_dir / "video" / "short_hamilton_clip.mp4"
    hits = Hits()
    hits.query_track = TrackSpan(3, 1.0, 1.5, 1.0, 3)
    assert sheet_caption(hits, clip, face=2)[0] == \
        "video: short_hamilton_clip.mp4, track 3 (1.0-1.5 s), shown at 1.0 s"
    sheet = np.asarray(contact_sheet(hits, clip, face=2))
    panel = sheet[8:60, 8:60].astype(int)
    hatched = (np.abs(panel - 225).sum(-1) < 15) | (np.abs(panel - 200).sum(-1) < 15)  # _missing_tile
    assert hatched.mean() < 0.1 and panel.mean() < 150  # the frame (a dark stage), not the tile
