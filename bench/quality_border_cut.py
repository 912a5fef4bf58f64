"""How far the attributes of a face cut by the photo's border can be trusted: the figures behind
pipeline/detect/quality.UNRELIABLE_BORDER_CUT.

    python bench/quality_border_cut.py [--photos 40] [--out border_cut.json]

Every 25th CelebA in-the-wild photo (the first `--photos`) is described whole, then cut through
its main face at 10, 25, 40, 55 and 70% of the face box's width from the left; the cut face
found nearest the uncut one is compared with it: its border_cut, how many of the 40 CelebA
attribute decisions (p > 0.5) changed, and how far the gender probability and the age moved.
Printed by border_cut band. Default detector (mediapipe), default settings; no index is written.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from facesearch import FaceSearch
from facesearch.pipeline.images import load_image
from facesearch.settings import Settings
from facesearch.spec import CELEBA_ATTRIBUTES

FRACTIONS = (0.1, 0.25, 0.4, 0.55, 0.7)
BANDS = ((0, 0.15), (0.15, 0.3), (0.3, 0.45), (0.45, 1.01))


def measure(photos: int) -> list[dict]:
    files = sorted((Settings.from_env().data_dir / "celeba" / "wild").glob("*.jpg"))[::25][:photos]
    rows = []
    with tempfile.TemporaryDirectory() as folder, FaceSearch(Path(folder) / "index") as fs:
        for path in files:
            pixels = load_image(path).pixels
            faces = fs.describe(pixels)
            if not faces:
                continue
            face = faces[0]
            base = np.array([face.attributes[a] for a in CELEBA_ATTRIBUTES]) > 0.5
            x0, y0, x1, y1 = face.bbox
            for fraction in FRACTIONS:
                edge = int(x0 + fraction * (x1 - x0))
                found = fs.describe(np.ascontiguousarray(pixels[:, edge:]))
                centre = ((max(x0, edge) + x1) / 2, (y0 + y1) / 2)
                near = [(abs((g.bbox[0] + g.bbox[2]) / 2 + edge - centre[0])
                         + abs((g.bbox[1] + g.bbox[3]) / 2 - centre[1]), n) for n, g in enumerate(found)]
                near = [(d, n) for d, n in near if d < 0.5 * (y1 - y0)]
                if not near:
                    rows.append({"file": path.name, "fraction": fraction, "found": False})
                    continue
                cut = found[min(near)[1]]
                now = np.array([cut.attributes[a] for a in CELEBA_ATTRIBUTES]) > 0.5
                rows.append({"file": path.name, "fraction": fraction, "found": True,
                             "border_cut": cut.attributes["border_cut"], "flips": int((now != base).sum()),
                             "male_change": abs(cut.attributes["male"] - face.attributes["male"]),
                             "age_change": abs(cut.attributes["age"] - face.attributes["age"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None, help="also write every row as JSON")
    args = parser.parse_args()
    rows = measure(args.photos)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    found = [r for r in rows if r["found"]]
    print(f"{len(rows)} cut faces tried, {len(found)} found")
    for low, high in BANDS:
        band = [r for r in found if low <= r["border_cut"] < high]
        if band:
            print(f"border_cut {low:.2f}-{min(high, 1):.2f}: {len(band):3d} faces, "
                  f"{np.mean([r['flips'] for r in band]):.1f} of 40 CelebA decisions changed, "
                  f"gender probability moved {np.mean([r['male_change'] for r in band]):.3f}, "
                  f"age {np.mean([r['age_change'] for r in band]):.1f} years")


if __name__ == "__main__":
    main()
