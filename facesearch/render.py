"""What people look at: result tables, contact sheets of hits, overlays of faces and regions."""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facesearch.errors import FaceSearchError
from facesearch.models.arcface import SAME_PERSON_PROBABILITY
from facesearch.pipeline.detect.quality import UNRELIABLE_BORDER_CUT, is_unreliable
from facesearch.pipeline.faces import Face, TrackSpan
from facesearch.pipeline.sources import load_still
from facesearch.search.compare import Comparison, unreliable_because
from facesearch.search.hits import Hit, Hits
from facesearch.spec import CLASSES, EMOTIONS, PIXEL_ATTRIBUTES, REGIONS

#: Attributes shown per row of a table: the most confident ones.
SHOWN_ATTRIBUTES = 4
THUMB = 160  # contact-sheet tile side in pixels
#: The colour (RGB) each region is drawn in.
REGION_COLORS: dict[str, tuple[int, int, int]] = {
    "background": (40, 40, 40), "hair": (150, 75, 20), "face_skin": (240, 190, 150),
    "eyes": (40, 120, 255), "eyebrows": (120, 40, 160), "lips": (230, 30, 60),
    "nose": (40, 200, 90),
}


def overlay(crop: np.ndarray, masks: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An (H, W, 3) uint8 crop with each region of its (7, H, W) masks tinted in its colour."""
    colors = np.array([REGION_COLORS[name] for name in REGIONS], dtype=np.float32)
    tint = np.tensordot(masks.transpose(1, 2, 0), colors, axes=1)
    return (crop * (1 - alpha) + tint * alpha).clip(0, 255).astype(np.uint8)


def top_attributes(attributes: dict[str, float], n: int = SHOWN_ATTRIBUTES) -> str:
    """The n most likely classes (CelebA's and ours) and the age, as 'Smiling .97, ...'. Gender
    is shown once, the gender head's `male` / `female` (what `--where "female > 0.5"` and the
    JSON read; CelebA's `Male` only for faces without it): the two heads side by side could say
    "female 0.83, Male 0.77" on one face. When CelebA's `Male` says the other gender (the two
    disagree across 0.5), it follows in brackets, "female 0.93 (Male attribute 0.99)": a text's
    "woman" reads both (search.terms), and a trial could not see why such a face fit it 0.47."""
    male = attributes.get("male", attributes.get("Male"))
    shown = {name: p for name, p in attributes.items() if (name in CLASSES or name in EMOTIONS)
             and name not in ("No_Beard", "Male", "male", "female")}
    gender = ""
    if isinstance(male, (int, float)):
        shown |= {"male": male} if male >= 0.5 else {"female": 1.0 - male}
        celeba = attributes.get("Male")
        if "male" in attributes and isinstance(celeba, (int, float)) and (celeba >= 0.5) != (male >= 0.5):
            gender = "male" if male >= 0.5 else "female"
    likely = sorted(((p, name) for name, p in shown.items()), reverse=True)[:n]
    text = ", ".join(f"{name} {p:.2f}" + (f" (Male attribute {attributes['Male']:.2f})" if name == gender else "")
                     for p, name in likely)
    return f"{text}, age {attributes['age']:.0f}" if "age" in attributes else text


def quality_note(attributes: dict[str, float]) -> str:
    """A face's quality record as 'quality 0.82 (face 120 px, border cut 0.00, blur 340)', then
    a warning when it is half outside its photo (is_unreliable); '' without a record."""
    if "quality" not in attributes:
        return ""
    note = (f"quality {attributes['quality']:.2f} (face {attributes.get('face_size', 0):.0f} px, "
            f"border cut {attributes.get('border_cut', 0):.2f}, blur {attributes.get('blur', 0):.0f})")
    return note + ("  " + UNRELIABLE_NOTE if is_unreliable(attributes) else "")


def expression_note(attributes: dict[str, float]) -> str:
    """A face's most probable expression (spec.EMOTIONS) as 'expression neutral 0.62', or ''
    when it has none (no emotion head)."""
    if not all(name in attributes for name in EMOTIONS):
        return ""
    best = max(EMOTIONS, key=lambda name: attributes[name])
    return f"expression {best} {attributes[best]:.2f}"


def pixel_note(attributes: dict[str, float]) -> str:
    """What the pixels say of a face's hair and eyes (spec.PIXEL_ATTRIBUTES), the likelier of
    each pair or set, as 'hair short 0.94, red 0.00  eyes brown 0.65'; a part the pixels could
    not read is left out ('' when neither was)."""
    parts = []
    if "hair_long" in attributes or "hair_red" in attributes:
        hair = []
        if "hair_long" in attributes and "hair_short" in attributes:
            length = max(("long", "short"), key=lambda name: attributes[f"hair_{name}"])
            hair.append(f"{length} {attributes[f'hair_{length}']:.2f}")
        if "hair_red" in attributes:
            hair.append(f"red {attributes['hair_red']:.2f}")
        parts.append("hair " + ", ".join(hair))
    eyes = [name for name in PIXEL_ATTRIBUTES if name.startswith("eyes_") and name in attributes]
    if eyes:
        best = max(eyes, key=lambda name: attributes[name])
        parts.append(f"eyes {best.removeprefix('eyes_')} {attributes[best]:.2f}")
    return "  ".join(parts)


#: What a face half outside its photo says instead of trusting its attributes.
UNRELIABLE_NOTE = f"UNRELIABLE: half outside the photo (border cut > {UNRELIABLE_BORDER_CUT})"


def video_times(track_id: int | None, start: float | None, end: float | None,
                time: float | None) -> str:
    """A video face's times, e.g. 'video track 3: 3.0-7.0 s, shown at 3.5 s'."""
    return f"video track {track_id}: {_span(start, end)}, shown at {time:.1f} s"


def _span(start: float | None, end: float | None) -> str:
    """When a track is seen, seconds from the video's start: '3.0-7.0 s'."""
    return f"{start:.1f}-{end:.1f} s"


def face_label(index: int, track: TrackSpan | None) -> str:
    """Which face of a photo or video: 'face 0' (0 = largest) for a photo's, 'track 3
    (3.0-7.0 s)' for a video's (a track, pipeline.tracking; its times in seconds)."""
    return f"face {index}" if track is None else f"track {track.track_id} ({_span(track.start, track.end)})"


def comparisons_table(pairs: list[Comparison]) -> str:
    """One line per compared pair (search.compare): 'face 0 - track 3 (3.0-7.0 s): same person
    (probability 0.98, identity similarity 0.61)', '; genders differ' inside the brackets when
    that lowered the probability; a video's face named by its track, and a
    photo's face by its box too ('face 2 [40,12,88,70]') when that photo has several faces."""
    several = (len({pair.first for pair in pairs}) > 1, len({pair.second for pair in pairs}) > 1)

    def label(index: int, track: TrackSpan | None, bbox: list[float], boxed: bool) -> str:
        box = f" [{','.join(f'{v:.0f}' for v in bbox)}]" if boxed and track is None else ""
        return face_label(index, track) + box

    lines = []
    for pair in pairs:
        verdict = "same person" if pair.same_person else "not the same person"
        lines.append(f"{label(pair.first, pair.first_track, pair.first_bbox, several[0])} - "
                     f"{label(pair.second, pair.second_track, pair.second_bbox, several[1])}: "
                     f"{verdict} (probability {pair.probability:.2f}, identity similarity {pair.similarity:.3f}"
                     + ("; genders differ" if pair.genders_conflict else "") + ")"
                     + ("" if pair.reliable else f"; UNRELIABLE: {pair.why}"))
    return "\n".join(lines)


#: The line hits_table prints where the hits fall below the same-person operating point
#: (models.arcface.SAME_PERSON_PROBABILITY).
SAME_PERSON_DIVIDER = f"-- below: not the same person (same_person < {SAME_PERSON_PROBABILITY}) --"


def same_person_boundary(hits: list[Hit]) -> int | None:
    """Where image-query hits (person and default modes: the query's person first) cross the
    same-person operating point: the position of the first hit below the operating point that
    follows one at or above it (SAME_PERSON_PROBABILITY); None when they never cross (all one side, or no same_person:
    a text query) and for look-alike mode's hits (Hits.match), which are not ordered by it."""
    if getattr(hits, "match", None) == "look-alike":
        return None
    for n in range(1, len(hits)):
        before, after = hits[n - 1].same_person, hits[n].same_person
        if before is not None and after is not None and before >= SAME_PERSON_PROBABILITY > after:
            return n
    return None


def hits_table(hits: list[Hit] | Hits) -> str:
    """A readable table of hits: rank, score, best regions, file, box, same-person probability
    (image queries; a SAME_PERSON_DIVIDER line where they fall below the operating point),
    person (name, else id), attributes; for a text query (`hits.understood`,
    search.hits.Hits) first how well the face fits each understood class, then the rest."""
    if not hits:
        return "no hits"
    understood = getattr(hits, "understood", None)
    scored_by = getattr(hits, "scored_by", None)  # the score is not a region similarity: what it is
    lines = [f"score: {scored_by}"] if scored_by else []
    lines.append(f"{'#':>3} {'score':>7}  {'best regions':<32} {'face':>6}  path / box / attributes")
    boundary = same_person_boundary(hits)
    for n, hit in enumerate(hits):
        if n == boundary:
            lines.append(SAME_PERSON_DIVIDER)
        regions = sorted(hit.regions.items(), key=lambda item: -item[1])[:2]
        best = ", ".join(f"{name} {value:.2f}" for name, value in regions) or "-"
        box = ",".join(f"{v:.0f}" for v in hit.bbox)
        gone = "  (file missing)" if hit.missing else ""
        lines.append(f"{hit.rank:>3} {hit.score:>7.3f}  {best:<32} {hit.face_id:>6}  {hit.path}{gone}")
        if hit.media == "video":
            lines.append(f"{'':>52}{video_times(hit.track_id, hit.start, hit.end, hit.time)}")
        why = unreliable_because(hit.attributes).split(" (")[0] if hit.same_person is not None else ""
        person = "" if hit.same_person is None else f"same person {hit.same_person:.2f}" + (
            f" (unreliable: {why}), " if why else ", ")
        if hit.person is not None:  # the person (index.people) the face belongs to
            person += f"person {hit.person['name'] or hit.person['id']}, "
        warning = "  (unreliable: half outside the photo)" if hit.unreliable else ""
        explained = {} if understood is None else understood.explain(hit.attributes)
        fits = "fits " + ", ".join(f"{name} {value:.2f}" for name, value in explained.items()) + "; " if explained else ""
        lines.append(f"{'':>52}[{box}]  {person}{fits}{top_attributes(hit.attributes)}{warning}")
    return "\n".join(lines)


def faces_table(faces: list[Face]) -> str:
    """One line per face found in a photo (a video's face, a track: and a line with its times)."""
    lines = []
    for i, face in enumerate(faces):
        box = ",".join(f"{v:.0f}" for v in face.bbox)
        lines.append(f"face {i}: box [{box}] score {face.score:.2f}  {top_attributes(face.attributes, 6)}")
        if face.track is not None:  # a video's face: a track
            lines.append(f"{'':>8}{video_times(face.track.track_id, face.track.start, face.track.end, face.track.time)}"
                         f", seen in {face.track.frames} sampled frame(s)")
        notes = [note for note in (expression_note(face.attributes), pixel_note(face.attributes),
                                   quality_note(face.attributes)) if note]
        if notes:
            lines.append(f"{'':>8}{'  '.join(notes)}")
    return "\n".join(lines)


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def face_crop(pixels: np.ndarray, bbox: list[float], scale: float = 1.0, side: int = THUMB) -> Image.Image:
    """A `side` x `side` RGB square around a face: `pixels` (H, W, 3) uint8 of a photo decoded at
    1/`scale` of its original size, `bbox` [x0, y0, x1, y1] in original pixels. The square is
    1.6 box sides wide, so hair and chin show; parts outside the photo are black."""
    x0, y0, x1, y1 = (v / scale for v in bbox)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0) * 0.8
    image = Image.fromarray(pixels)
    box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
    return image.crop(box).resize((side, side), Image.Resampling.LANCZOS)


def jpeg_bytes(picture: Image.Image | np.ndarray, quality: int = 85) -> bytes:
    """A picture (PIL image or (H, W, 3) uint8 RGB array) encoded as JPEG."""
    image = Image.fromarray(picture) if isinstance(picture, np.ndarray) else picture
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _face_thumb(path: str, bbox: list[float], side: int = THUMB,
                time: float | None = None) -> Image.Image | None:
    """A square thumbnail around a face box (in a video: in its frame at `time` seconds), or None
    if the photo cannot be read (gone)."""
    try:
        photo = load_still(path, time)
    except FaceSearchError:
        return None
    return face_crop(photo.pixels, bbox, photo.scale, side)


#: Short labels of the regions, for bars on a sheet.
REGION_LABELS: dict[str, str] = {"background": "backgr.", "hair": "hair", "face_skin": "skin",
                                 "eyes": "eyes", "eyebrows": "brows", "lips": "lips", "nose": "nose"}
_TILE_W = THUMB + 24   # a hit's column on a picture sheet
_BAR_ROW = 14          # one region's bar row, pixels
_INK, _GREY, _RED = (20, 20, 20), (110, 110, 110), (190, 30, 30)


def short_path(path: str, width: float, measure=len) -> str:
    """`path` shortened to fit `width` (in `measure` units: characters by default, or a font's
    getlength): the file name is kept, leading folders give way to "…/"; a file name too long
    alone keeps its start and its last characters ("14_1_0_20170…chip.jpg": names often begin
    with what tells photos apart)."""
    if measure(path) <= width:
        return path
    parts = Path(path).parts
    for start in range(1, len(parts)):
        candidate = "…/" + "/".join(parts[start:])
        if measure(candidate) <= width:
            return candidate
    name = parts[-1] if parts else path
    tail = name[-8:]
    head = name[:-8]
    while head and measure(head + "…" + tail) > width:
        head = head[:-1]
    return head + "…" + tail if head else _fit(name, width, measure)


def _fit(text: str, width: float, measure=len) -> str:
    """`text` cut at the end, with "…", to fit `width`."""
    if measure(text) <= width:
        return text
    while text and measure(text + "…") > width:
        text = text[:-1]
    return text + "…"


def sheet_caption(hits: list[Hit], image: str | os.PathLike | None = None, text: str | None = None,
                  *, face: int = 0, where: str | None = None,
                  weights: dict[str, float] | None = None, region: str | None = None) -> list[str]:
    """The lines that say what a sheet's query was: photo (and face), text and what it was
    understood as, filter, region weights, number of hits."""
    lines = []
    track = getattr(hits, "query_track", None)
    if image is not None and track is not None:  # a video's face: its track, and when
        lines.append(f"video: {Path(image).name}, {face_label(face, track)}, shown at {track.time:.1f} s")
    elif image is not None:
        lines.append(f"photo: {Path(image).name}" + (f" (face {face})" if face else ""))
    if text:
        lines.append(f"text: {text}")
    understood = getattr(hits, "understood", None)
    if understood is not None:
        lines.append(f"understood: {understood.summary()}")
    if where:
        lines.append(f"filter: {where}")
    if region:
        lines.append(f"ranked by one region: {region}")
    elif weights:
        lines.append("region weights: " + ", ".join(f"{k}={v:g}" for k, v in weights.items())
                     + " (others 1)")
    scored_by = getattr(hits, "scored_by", None)
    if scored_by:
        lines.append(f"score: {scored_by}")
    lines.append(f"{len(hits)} hit(s)" + ("" if scored_by and not any(hit.regions for hit in hits)
                                          else "; bars: per-region cosine similarity, -1 to 1"))
    return lines


def _region_bars(draw: ImageDraw.ImageDraw, x: int, y: int, regions: dict[str, float], width: int,
                 font) -> int:
    """One labelled row per region: name, a bar from -1 to 1 (a tick marks 0) in the region's
    colour, the similarity as a number; "no region compared" without `regions`. Returns the
    height drawn."""
    if not regions:
        draw.text((x, y), "no region compared", fill=_GREY, font=font)
        return _BAR_ROW
    label_w, number_w = 44, 36
    bar_w = width - label_w - number_w
    for i, name in enumerate(REGIONS):
        value = float(regions.get(name, 0.0))
        top = y + i * _BAR_ROW
        draw.text((x, top), REGION_LABELS[name], fill=_INK, font=font)
        left = x + label_w
        draw.rectangle([left, top + 3, left + bar_w, top + _BAR_ROW - 3], fill=(232, 232, 232))
        filled = int(bar_w * max(0.0, min(1.0, (value + 1) / 2)))
        draw.rectangle([left, top + 3, left + max(filled, 1), top + _BAR_ROW - 3], fill=REGION_COLORS[name])
        draw.line([left + bar_w // 2, top + 1, left + bar_w // 2, top + _BAR_ROW - 1], fill=_GREY)
        number = f"{value:+.2f}"
        draw.text((x + width - font.getlength(number), top), number, fill=_INK, font=font)
    return len(REGIONS) * _BAR_ROW


def _missing_tile(side: int = THUMB) -> Image.Image:
    """What a hit whose photo file is gone shows: a hatched tile that says so."""
    tile = Image.new("RGB", (side, side), (225, 225, 225))
    draw = ImageDraw.Draw(tile)
    for offset in range(-side, side, 16):
        draw.line([offset, side, offset + side, 0], fill=(200, 200, 200), width=4)
    font = _font(15)
    for i, line in enumerate(("file missing", "(moved or deleted)")):
        width = font.getlength(line)
        draw.text(((side - width) / 2, side / 2 - 16 + i * 20), line, fill=_RED, font=font)
    return tile


def _is_missing(hit: Hit) -> bool:
    return bool(getattr(hit, "missing", False)) or not Path(hit.path).is_file()


def contact_sheet(hits: list[Hit], image: str | os.PathLike | None = None,
                  text: str | None = None, columns: int = 5, *, face: int = 0,
                  where: str | None = None, weights: dict[str, float] | None = None,
                  region: str | None = None, crops: list[Image.Image | None] | None = None
                  ) -> Image.Image:
    """A picture of a query's hits: a caption saying what the query was (sheet_caption), then a
    tile per hit: its face (or a "file missing" tile), rank and score, the path shortened to
    fit, a labelled bar and number per region, the top attributes. `crops` (one per hit, None
    for missing) saves reading the photos again."""
    crops = crops if crops is not None else [_face_thumb(hit.path, hit.bbox, time=hit.time) for hit in hits]
    font, bold = _font(12), _font(14)
    caption = sheet_caption(hits, image, text, face=face, where=where, weights=weights, region=region)
    query_side = THUMB if image is not None else 0
    head_h = max(query_side, 12 + 18 * len(caption)) + 12
    tile_h = THUMB + 40 + len(REGIONS) * _BAR_ROW + 34
    rows = max(1, -(-len(hits) // columns))
    sheet = Image.new("RGB", (max(columns, 1) * _TILE_W, head_h + rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if image is not None:
        try:
            track = getattr(hits, "query_track", None)  # a video query: its track's frame
            photo = Image.fromarray(load_still(image, None if track is None else track.time).pixels)
            photo.thumbnail((THUMB, THUMB))
            sheet.paste(photo, (8, 8))
        except FaceSearchError:
            sheet.paste(_missing_tile(), (8, 8))
    text_x = query_side + 20
    for i, line in enumerate(caption):
        fitted = short_path(line, sheet.width - text_x - 8, bold.getlength) if i == 0 else line
        draw.text((text_x, 10 + 18 * i), _fit(fitted, sheet.width - text_x - 8, bold.getlength), fill=_INK if i < len(caption) - 1 else _GREY,
                  font=bold)
    draw.line([0, head_h - 4, sheet.width, head_h - 4], fill=(200, 200, 200))
    inner = _TILE_W - 24
    for n, (hit, crop) in enumerate(zip(hits, crops)):
        x, y = (n % columns) * _TILE_W + 12, head_h + (n // columns) * tile_h
        sheet.paste(crop if crop is not None else _missing_tile(), (x, y))
        draw.text((x, y + THUMB + 3), f"#{hit.rank}", fill=_INK, font=bold)
        if hit.same_person is not None:  # an image query's match modes rank by it
            draw.text((x + bold.getlength(f"#{hit.rank}  "), y + THUMB + 4),
                      f"same {hit.same_person:.2f}", fill=_GREY, font=font)
        score = f"{hit.score:.3f}"
        draw.text((x + inner - bold.getlength(score), y + THUMB + 3), score, fill=_INK, font=bold)
        missing = crop is None or _is_missing(hit)
        path = short_path(hit.path, inner - (font.getlength(" (missing)") if missing else 0)
                          - (font.getlength(f" @ {hit.time:.1f} s") if hit.media == "video" else 0),
                          font.getlength) + (f" @ {hit.time:.1f} s" if hit.media == "video" else "")
        draw.text((x, y + THUMB + 21), path + (" (missing)" if missing else ""),
                  fill=_RED if missing else _GREY, font=font)
        bars_y = y + THUMB + 38
        used = _region_bars(draw, x, bars_y, hit.regions, inner, font)
        unreliable = "unreliable (half outside): " if getattr(hit, "unreliable", False) else ""
        attributes = _fit(unreliable + top_attributes(hit.attributes, 3), inner, font.getlength)
        draw.text((x, bars_y + used + 2), attributes, fill=_RED if unreliable else _GREY, font=font)
    return sheet


def contact_sheet_html(hits: list[Hit], image: str | os.PathLike | None = None,
                       text: str | None = None, *, face: int = 0, where: str | None = None,
                       weights: dict[str, float] | None = None, region: str | None = None,
                       crops: list[Image.Image | None] | None = None) -> str:
    """A self-contained HTML page of a query's hits: the caption, then a card per hit with its
    face crop (embedded JPEG), rank, score, path (whole on hover), per-region bars with numbers,
    top attributes and, for text queries, how well it fits each understood class."""
    crops = crops if crops is not None else [_face_thumb(hit.path, hit.bbox, time=hit.time) for hit in hits]
    caption = sheet_caption(hits, image, text, face=face, where=where, weights=weights, region=region)
    understood = getattr(hits, "understood", None)
    cards = []
    for hit, crop in zip(hits, crops):
        missing = crop is None or _is_missing(hit)
        picture = ("<div class='img missing'>file missing<br>(moved or deleted)</div>" if crop is None else
                   f"<img class='img' alt='face {hit.face_id}' src='data:image/jpeg;base64,"
                   f"{base64.b64encode(jpeg_bytes(crop)).decode()}'>")
        bars = "".join(
            f"<span>{REGION_LABELS[name]}</span><span class='bar'><i style='width:"
            f"{max(0.0, min(1.0, (hit.regions.get(name, 0.0) + 1) / 2)) * 100:.0f}%;background:"
            f"rgb{REGION_COLORS[name]}'></i></span><span class='num'>{hit.regions.get(name, 0.0):+.2f}</span>"
            for name in REGIONS) if hit.regions else "<span>no region compared</span>"
        fits = ""
        if understood is not None:
            fits = "<div class='fits'>fits: " + ", ".join(
                f"{html.escape(k)} {v:.2f}" for k, v in understood.explain(hit.attributes).items()) + "</div>"
        cards.append(
            f"<figure>{picture}<div class='head'><b>#{hit.rank}</b>"
            + (f"<span>same {hit.same_person:.2f}</span>" if hit.same_person is not None else "")
            + f"<b>{hit.score:.3f}</b></div>"
            f"<div class='path{' gone' if missing else ''}' title='{html.escape(hit.path)}'>"
            f"{html.escape(short_path(hit.path, 30))}{' (missing)' if missing else ''}</div>"
            f"<div class='bars'>{bars}</div>{fits}"
            + ("<div class='attrs gone'>unreliable: half outside the photo</div>"
               if getattr(hit, "unreliable", False) else "")
            + f"<div class='attrs'>{html.escape(top_attributes(hit.attributes))}</div></figure>")
    title = html.escape(caption[0] if caption else "facesearch results")
    return (
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        f"<title>facesearch: {title}</title><style>{_SHEET_CSS}</style>"
        "<h1>facesearch results</h1><ul class='caption'>"
        + "".join(f"<li>{html.escape(line)}</li>" for line in caption)
        + "</ul><main>" + "".join(cards) + "</main></html>\n")


_SHEET_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2rem;color:#1d1d1f}
h1{font-size:1.2rem;margin:0 0 .4rem}.caption{color:#444;margin:0 0 1rem;padding-left:1.2rem}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:.8rem}
figure{margin:0;border:1px solid #ddd;border-radius:8px;padding:.5rem}
.img{width:100%;aspect-ratio:1;display:block;border-radius:5px;object-fit:cover}
.missing{background:repeating-linear-gradient(45deg,#ddd 0 8px,#eee 8px 16px);color:#b3261e;
 display:flex;align-items:center;justify-content:center;text-align:center;font-weight:600}
.head{display:flex;justify-content:space-between;margin-top:.3rem}
.path{font:12px ui-monospace,monospace;color:#666;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
.gone{color:#b3261e}
.bars{display:grid;grid-template-columns:3.6rem 1fr 2.6rem;gap:1px .3rem;font-size:12px;align-items:center}
.bar{height:.55rem;background:#eee;border-radius:2px;position:relative;overflow:hidden}
.bar i{position:absolute;left:0;top:0;bottom:0}.num{text-align:right;font-variant-numeric:tabular-nums}
.fits,.attrs{font-size:12px;color:#555;margin-top:.2rem}
"""


def save_contact_sheet(out: Path, hits: list[Hit], image=None, text: str | None = None, *,
                       face: int = 0, where: str | None = None,
                       weights: dict[str, float] | None = None, region: str | None = None) -> None:
    """Save a contact sheet as a picture (.png/.jpg: contact_sheet) or a self-contained HTML
    page (.html: contact_sheet_html); the keywords are the query's settings, for the caption.
    Raises FaceSearchError for another suffix."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".png", ".jpg", ".jpeg"):
        raise FaceSearchError(f"--sheet {out}: use a .png, .jpg or .html file")
    crops = [_face_thumb(hit.path, hit.bbox, time=hit.time) for hit in hits]
    options = dict(face=face, where=where, weights=weights, region=region, crops=crops)
    if suffix in (".html", ".htm"):
        out.write_text(contact_sheet_html(hits, image, text, **options), encoding="utf-8")
    else:
        contact_sheet(hits, image, text, **options).save(out)


def save_overlay(out: Path, image: str | os.PathLike, faces: list[Face]) -> float | None:
    """The photo with boxes and landmarks, and beside it each aligned face with its regions. For
    a video's faces (tracks): the best frame of the first, with the faces whose best frame it is
    boxed (every track's aligned face is beside it) and the frame's time written on it; returns
    that time in seconds (None for a photo)."""
    time = faces[0].track.time if faces and faces[0].track is not None else None
    photo = load_still(image, time)
    picture = Image.fromarray(photo.pixels)
    draw = ImageDraw.Draw(picture)
    if time is not None:  # which frame this is
        label = overlay_frame_note(time, faces[0].track.track_id)
        font = _font(14)
        box = draw.textbbox((4, 4), label, font=font)
        draw.rectangle([box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3], fill=(0, 0, 0))
        draw.text((4, 4), label, fill=(255, 255, 255), font=font)
    for i, face in enumerate(faces):
        if time is not None and face.track is not None and face.track.time != time:
            continue  # in another frame
        x0, y0, x1, y1 = (v / photo.scale for v in face.bbox)
        draw.rectangle([x0, y0, x1, y1], outline=(0, 255, 0), width=2)
        draw.text((x0 + 3, y0 + 2), str(i), fill=(0, 255, 0), font=_font(14))
        for x, y in face.landmarks:
            draw.ellipse([x / photo.scale - 2, y / photo.scale - 2, x / photo.scale + 2,
                          y / photo.scale + 2], fill=(255, 0, 0))
    grid = _face_tiles(faces)
    height = max(picture.height, grid.height)
    canvas = Image.new("RGB", (picture.width + grid.width, height), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    canvas.paste(grid, (picture.width, 0))
    canvas.save(out)
    return time


#: Columns of the aligned faces beside an overlay (more faces: more rows).
OVERLAY_COLUMNS = 3


def _face_tiles(faces: list[Face]) -> Image.Image:
    """Each face's aligned crop and its regions, twice their size, in a grid of at most
    OVERLAY_COLUMNS columns, each named under it as the table names it ('face 2', or a video's
    'face 2: track 3 (3.0-7.0 s)'). A video of 15 tracks had made one strip 15 faces tall, unnamed."""
    tiles = [Image.fromarray(np.hstack([face.crop, overlay(face.crop, face.masks)])) for face in faces]
    width, height = tiles[0].width * 2, tiles[0].height * 2
    columns = min(len(tiles), OVERLAY_COLUMNS)
    rows = -(-len(tiles) // columns)
    caption = 20
    grid = Image.new("RGB", (columns * width, rows * (height + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for n, (face, tile) in enumerate(zip(faces, tiles)):
        x, y = (n % columns) * width, (n // columns) * (height + caption)
        grid.paste(tile.resize((width, height)), (x, y))
        name = f"face {n}" + (f": {face_label(n, face.track)}" if face.track is not None else "")
        draw.text((x + 4, y + height + 3), name, fill=(0, 0, 0), font=_font(13))
    return grid


def overlay_frame_note(time: float, track_id: int | None) -> str:
    """Which frame of a video an overlay shows: 'frame at 3.5 s, track 1's best'."""
    return f"frame at {time:.1f} s, track {track_id}'s best"

