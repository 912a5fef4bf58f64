"""Make docs/regions.png: the 7 region masks that facesearch cuts on real faces, in the region
colours alone (render.REGION_COLORS; no face pixels: the CelebA photos may not be redistributed).

    python docs/regions_picture.py [--photos 10] [--parser learned|mesh] [--out docs/regions.png]

The first N CelebA aligned photos of ../shared/data (every 37th file, for variety), prepared as
indexing prepares them (Settings: detector, parser), each face's aligned crop's masks shown at
twice their size side by side.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from facesearch.pipeline.images import load_image
from facesearch.pipeline.prepare import FacePreparer
from facesearch.render import REGION_COLORS
from facesearch.settings import Settings
from facesearch.spec import REGIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10)
    parser.add_argument("--parser", default=None, help="region parser (default: Settings.parser)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("regions.png"))
    args = parser.parse_args()
    settings = Settings.from_env()
    if args.parser:
        settings = replace(settings, parser=args.parser)
    preparer = FacePreparer(settings)
    photos = sorted((settings.data_dir / "celeba" / "aligned").glob("*.jpg"))[::37]
    colours = np.array([REGION_COLORS[name] for name in REGIONS], np.uint8)
    tiles = []
    for path in photos:
        faces = preparer.prepare(load_image(path).pixels)
        if faces:
            tile = colours[faces[0].masks.argmax(0)]
            tiles.append(np.pad(tile.repeat(2, 0).repeat(2, 1), ((4, 4), (4, 4), (0, 0)), constant_values=255))
        if len(tiles) == args.photos:
            break
    Image.fromarray(np.concatenate(tiles, axis=1)).save(args.out)
    print(f"{args.out}: {len(tiles)} faces, parser {settings.parser}")


if __name__ == "__main__":
    main()
