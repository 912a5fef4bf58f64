"""What people look at: result tables, contact sheets of hits, overlays of faces and regions."""
from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facesearch.spec import CLASSES, REGIONS
from facesearch.errors import FaceSearchError
from facesearch.pipeline.images import load_image
from facesearch.pipeline.faces import Face
from facesearch.search.hits import Hit

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
    """The n most likely classes (CelebA's and ours) and the age, as 'Smiling .97, ...'."""
    likely = sorted(((p, name) for name, p in attributes.items()
                     if name in CLASSES and name != "No_Beard"), reverse=True)[:n]
    text = ", ".join(f"{name} {p:.2f}" for p, name in likely)
    return f"{text}, age {attributes['age']:.0f}" if "age" in attributes else text


def hits_table(hits: list[Hit]) -> str:
    """A readable table of hits: rank, score, best regions, file, box, attributes."""
    if not hits:
        return "no hits"
    lines = [f"{'#':>3} {'score':>7}  {'best regions':<26} {'face':>6}  path / box / attributes"]
    for hit in hits:
        regions = sorted(hit.regions.items(), key=lambda item: -item[1])[:2]
        best = ", ".join(f"{name} {value:.2f}" for name, value in regions)
        box = ",".join(f"{v:.0f}" for v in hit.bbox)
        lines.append(f"{hit.rank:>3} {hit.score:>7.3f}  {best:<26} {hit.face_id:>6}  {hit.path}")
        lines.append(f"{'':>46}[{box}]  {top_attributes(hit.attributes)}")
    return "\n".join(lines)


def faces_table(faces: list[Face]) -> str:
    """One line per face found in a photo."""
    lines = []
    for i, face in enumerate(faces):
        box = ",".join(f"{v:.0f}" for v in face.bbox)
        lines.append(f"face {i}: box [{box}] score {face.score:.2f}  {top_attributes(face.attributes, 6)}")
    return "\n".join(lines)


def _font(size: int = 12):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _face_thumb(path: str, bbox: list[float], side: int = THUMB) -> Image.Image:
    """A square thumbnail around a face box (a grey tile if the photo is gone)."""
    try:
        photo = load_image(path)
    except FaceSearchError:
        return Image.new("RGB", (side, side), (90, 90, 90))
    x0, y0, x1, y1 = (v / photo.scale for v in bbox)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * 0.8
    image = Image.fromarray(photo.pixels)
    return image.crop((int(cx - half), int(cy - half), int(cx + half), int(cy + half))).resize((side, side))


def _region_bars(draw: ImageDraw.ImageDraw, x: int, y: int, regions: dict[str, float], width: int) -> None:
    """Seven small bars, one per region similarity (cosine from -1 to 1), in region colours."""
    bar_w = width // len(REGIONS)
    for i, name in enumerate(REGIONS):
        value = max(0.0, min(1.0, (regions.get(name, 0.0) + 1) / 2))
        height = int(24 * value)
        draw.rectangle([x + i * bar_w + 1, y + 24 - height, x + (i + 1) * bar_w - 2, y + 24],
                       fill=REGION_COLORS[name])


def contact_sheet(hits: list[Hit], image: str | os.PathLike | None = None,
                  text: str | None = None, columns: int = 5) -> Image.Image:
    """The query (photo and/or text) then every hit with rank, score and per-region bars."""
    tile_h = THUMB + 52
    rows = 1 + (len(hits) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * THUMB, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font()
    if image is not None:
        photo = Image.open(image).convert("RGB")
        photo.thumbnail((THUMB, THUMB))
        sheet.paste(photo, (0, 0))
    label = "query" + (f": {text}" if text else "")
    draw.text((THUMB + 8 if image is not None else 8, 8), label, fill=(0, 0, 0), font=_font(16))
    legend_x = THUMB + 8 if image is not None else 8
    for i, name in enumerate(REGIONS):
        draw.rectangle([legend_x, 40 + i * 16, legend_x + 12, 52 + i * 16], fill=REGION_COLORS[name])
        draw.text((legend_x + 18, 40 + i * 16), name, fill=(0, 0, 0), font=font)
    for n, hit in enumerate(hits):
        x, y = (n % columns) * THUMB, (1 + n // columns) * tile_h
        sheet.paste(_face_thumb(hit.path, hit.bbox), (x, y))
        draw.text((x + 4, y + THUMB + 2), f"#{hit.rank}  {hit.score:.3f}  {Path(hit.path).name}"[:26],
                  fill=(0, 0, 0), font=font)
        _region_bars(draw, x + 4, y + THUMB + 20, hit.regions, THUMB - 8)
    return sheet


def save_contact_sheet(out: Path, hits: list[Hit], image=None, text: str | None = None) -> None:
    """Save a contact sheet as a picture (.png/.jpg) or a self-contained HTML page (.html)."""
    sheet = contact_sheet(hits, image, text)
    if out.suffix.lower() in (".html", ".htm"):
        buffer = io.BytesIO()
        sheet.save(buffer, format="PNG")
        rows = "".join(
            f"<tr><td>{hit.rank}</td><td>{hit.score:.3f}</td><td>{html.escape(hit.path)}</td>"
            f"<td>{' '.join(f'{k} {v:.2f}' for k, v in hit.regions.items())}</td></tr>" for hit in hits)
        out.write_text(
            "<!doctype html><meta charset='utf-8'><title>facesearch results</title>"
            f"<h1>facesearch: {html.escape(text or str(image))}</h1>"
            f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}'>"
            f"<table border=1><tr><th>#</th><th>score</th><th>path</th><th>regions</th></tr>{rows}</table>")
    else:
        sheet.save(out)


def save_overlay(out: Path, image: str | os.PathLike, faces: list[Face]) -> None:
    """The photo with boxes and landmarks, and beside it each aligned face with its regions."""
    photo = load_image(image)
    picture = Image.fromarray(photo.pixels)
    draw = ImageDraw.Draw(picture)
    for i, face in enumerate(faces):
        x0, y0, x1, y1 = (v / photo.scale for v in face.bbox)
        draw.rectangle([x0, y0, x1, y1], outline=(0, 255, 0), width=2)
        draw.text((x0 + 3, y0 + 2), str(i), fill=(0, 255, 0), font=_font(14))
        for x, y in face.landmarks:
            draw.ellipse([x / photo.scale - 2, y / photo.scale - 2, x / photo.scale + 2,
                          y / photo.scale + 2], fill=(255, 0, 0))
    tiles = [np.hstack([face.crop, overlay(face.crop, face.masks)]) for face in faces]
    strip = Image.fromarray(np.vstack(tiles)).resize((tiles[0].shape[1] * 2, len(tiles) * tiles[0].shape[0] * 2))
    height = max(picture.height, strip.height)
    canvas = Image.new("RGB", (picture.width + strip.width, height), (255, 255, 255))
    canvas.paste(picture, (0, 0))
    canvas.paste(strip, (picture.width, 0))
    canvas.save(out)

