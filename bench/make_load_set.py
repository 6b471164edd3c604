"""A labelled set of 1920x1080 JPEGs with 5-15 real faces each, for load tests at 1080p.

Every image is a 2x2 or 3x2 grid of faces-dev photos, each scaled to fit its cell (aspect kept,
centred on a dark grey canvas), with the photos' face (and ``ignore``) boxes scaled and moved
along. The set is deterministic for a given seed and written as JPEG (quality 90, 4:2:0) with an
``annotations.json`` in the faces-dev format. Usage:

    python bench/make_load_set.py [--count 100] [--seed 7] [--out .cache/load-1080p] [--data DIR]

Building is skipped when ``--out`` already holds the set made with the same parameters.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np
import simplejpeg

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "faces-dev"
DEFAULT_OUT = ROOT / ".cache" / "load-1080p"
WIDTH, HEIGHT = 1920, 1080
LAYOUTS = ((2, 2), (3, 2))  # (columns, rows)
MIN_FACES, MAX_FACES = 5, 15
MAX_FACES_PER_PHOTO = 8
BACKGROUND = (40, 40, 40)
QUALITY = 90
VERSION = 1  # bump when the way images are made changes

Box = list[float]


def _pool(data: Path) -> list[dict]:
    """faces-dev photos that can go on a tile: 1-8 faces, not the two huge WIDER originals."""
    images = json.loads((data / "annotations.json").read_text())["images"]
    pool = [
        im for im in images
        if 1 <= len(im["faces"]) <= MAX_FACES_PER_PHOTO and im["source"] != "wider_full"
    ]
    return sorted(pool, key=lambda im: im["file"])


def _pick(rng: np.random.Generator, pool: list[dict], cells: int, target: int) -> list[dict]:
    """``cells`` photos whose faces add up to ``target``."""
    for _ in range(100_000):
        chosen = [pool[i] for i in rng.choice(len(pool), size=cells, replace=False)]
        if sum(len(im["faces"]) for im in chosen) == target:
            return chosen
    raise RuntimeError(f"cannot find {cells} photos with {target} faces in all")


def _place(box: Box, scale: float, dx: int, dy: int) -> Box:
    x, y, w, h = box
    return [round(x * scale + dx, 1), round(y * scale + dy, 1), round(w * scale, 1), round(h * scale, 1)]


def compose(rng: np.random.Generator, pool: list[dict], data: Path) -> tuple[np.ndarray, dict]:
    """One 1080p RGB canvas and its annotation entry (without ``file``)."""
    target = int(rng.integers(MIN_FACES, MAX_FACES + 1))
    layouts = [(c, r) for c, r in LAYOUTS if c * r <= target]
    cols, rows = layouts[int(rng.integers(len(layouts)))]
    cell_w, cell_h = WIDTH // cols, HEIGHT // rows
    canvas = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    canvas[:] = BACKGROUND
    faces: list[Box] = []
    ignore: list[Box] = []
    photos = _pick(rng, pool, cols * rows, target)
    for index, photo in enumerate(photos):
        pixels = cv2.cvtColor(cv2.imread(str(data / photo["file"])), cv2.COLOR_BGR2RGB)
        height, width = pixels.shape[:2]
        scale = min(cell_w / width, cell_h / height)
        sized_w, sized_h = round(width * scale), round(height * scale)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        sized = cv2.resize(pixels, (sized_w, sized_h), interpolation=interpolation)
        dx = (index % cols) * cell_w + (cell_w - sized_w) // 2
        dy = (index // cols) * cell_h + (cell_h - sized_h) // 2
        canvas[dy : dy + sized_h, dx : dx + sized_w] = sized
        faces += [_place(b, scale, dx, dy) for b in photo["faces"]]
        ignore += [_place(b, scale, dx, dy) for b in photo.get("ignore", [])]
    entry = {
        "width": WIDTH,
        "height": HEIGHT,
        "faces": faces,
        "ignore": ignore,
        "source": "tiled " + " ".join(Path(p["file"]).name for p in photos),
    }
    return canvas, entry


def build(count: int = 100, seed: int = 7, out: Path = DEFAULT_OUT, data: Path = DEFAULT_DATA) -> list[dict]:
    """Make (or reuse) the set in ``out``; returns its annotation entries (``file`` relative to ``out``)."""
    params = {"version": VERSION, "count": count, "seed": seed, "data": str(Path(data).resolve())}
    manifest = out / "annotations.json"
    if manifest.exists():
        existing = json.loads(manifest.read_text())
        if existing.get("params") == params and all((out / im["file"]).exists() for im in existing["images"]):
            return existing["images"]
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = _pool(Path(data))
    images = []
    for n in range(count):
        canvas, entry = compose(rng, pool, Path(data))
        name = f"load-{n:04d}.jpg"
        (out / name).write_bytes(simplejpeg.encode_jpeg(canvas, quality=QUALITY, colorspace="RGB", colorsubsampling="420"))
        images.append({"file": name, **entry})
    manifest.write_text(json.dumps({"params": params, "images": images}, indent=1))
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="images to make")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the faces-dev folder")
    args = parser.parse_args()
    images = build(args.count, args.seed, args.out, args.data)
    faces = [len(im["faces"]) for im in images]
    sizes = [(args.out / im["file"]).stat().st_size for im in images]
    heights = sorted(f[3] for im in images for f in im["faces"])
    print(f"command: {shlex.join(['python', 'bench/make_load_set.py', *sys.argv[1:]])}")
    print(f"{len(images)} images {WIDTH}x{HEIGHT} in {args.out}: {sum(faces)} faces "
          f"({min(faces)}-{max(faces)} an image), face height p10/p50/p90 "
          f"{heights[len(heights) // 10]:.0f}/{heights[len(heights) // 2]:.0f}/{heights[9 * len(heights) // 10]:.0f} px, "
          f"JPEG {sum(sizes) / len(sizes) / 1024:.0f} KiB on average")


if __name__ == "__main__":
    main()
