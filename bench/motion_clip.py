"""A synthetic camera clip with known face boxes: faces-dev photos filmed by a moving virtual camera.

Used by ``bench/motion.py``. The clip is 1280x720 at 30 fps, H.264 (CRF 18). It opens with one
second of a plain grey picture (``LEAD_IN_S``: a live viewer connects before any face is shown),
then ``shots`` shots separated by hard cuts. Each shot films one faces-dev photo with at least
four faces that are 32 px or taller when the photo just fills the picture. The camera moves
between three key positions with smooth easing, alternately zoomed out (the photo about fills the
picture) and zoomed in on a face picked at random (made 60-230 px tall, at most 8x the photo's
pixels), so it pans and zooms in and out; it also shakes (two sinusoids per axis, 3-9 Hz, and a
slow drift). It only scales and translates, so every labelled face's box maps exactly to a box in
the frame (``Camera.box``). Boxes are clipped to the picture; a face less than half inside it is
dropped. One face in one shot is one track. WIDER's ``ignore`` boxes are not part of the truth.

Every frame carries its own number in two bands, 24 px tall, at the top and bottom of the frame;
the photo is drawn only between them, so no face is ever in a band. Each band holds the number
twice (16 bits and a CRC-8, 24 cells of 26x24 px, black or white), so four copies in all. A cell
is read from the mean of its interior, which survives H.264 and JPEG at any usual quality. A cell
that is neither clearly black nor clearly white, or has colour in it (an anonymizer's coloured
fill box that spills over the band), is not read: each bit comes from the copies whose cell for it
is clean, they must agree, and the CRC must hold. This lets frames be matched to their source
after MJPEG viewers have skipped some.

The clip and its ground truth (JSON) are cached under ``.cache/motion`` by their parameters.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "motion"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "faces-dev"
VERSION = 1  # bump when the clip or its ground truth would come out differently

WIDTH, HEIGHT, FPS = 1280, 720, 30
CRF = 18
BAND = 24  # height of each frame-number band, px
PICTURE_TOP, PICTURE_BOTTOM = BAND, HEIGHT - BAND  # the photo is drawn in these rows only
PICTURE_HEIGHT = PICTURE_BOTTOM - PICTURE_TOP
LEAD_IN_S = 1.0
BACKGROUND = 96  # grey around the photo when the camera shows past its edges

# Frame-number code: 16 bits of number, 8 of CRC, one cell each; two copies per band.
NUMBER_BITS, CRC_BITS = 16, 8
CODE_BITS = NUMBER_BITS + CRC_BITS
CELL_WIDTH = 26
COPY_LEFTS = (16, 656)  # x of each copy's first cell: 24 x 26 px = 624 px per copy
CELL_INSET = 6  # px of each cell's edge not read: the codecs smear edges
CELL_DARK, CELL_LIGHT = 70, 185  # a cell's mean grey is below the first (0) or above the second (1)
CELL_MAX_CHROMA = 48  # a cell whose channel means differ more than this is painted over

# Camera moves.
MIN_FACES_AT_COVER = 4  # a photo is used if this many faces are >= 32 px when it fills the frame width
ZOOM_OUT = (0.75, 1.1)  # times the scale at which the photo just covers the picture
ZOOM_IN_FACE = (60.0, 230.0)  # height of the face zoomed in on, px
MAX_SCALE = 8.0  # most output px per photo px: beyond, the photos are mush
MIN_ANCHOR = 8.0  # px in the photo: smaller faces are not zoomed in on
SHAKE_PX = (1.0, 8.0)  # amplitude of each fast shake sinusoid, output px
DRIFT_PX = (0.0, 15.0)  # amplitude of the slow handheld drift, output px
KEEP_INSIDE = 0.5  # a face is kept in a frame when at least this share of its box is inside the picture

Box = tuple[float, float, float, float]
TruthFace = tuple[float, float, float, float, int]  # a visible face in a frame: x, y, w, h, track


# --------------------------------------------------------------------------------------------
# Frame-number bands


def _crc8(value: int) -> int:
    """CRC-8 (polynomial 0x07) of the number's two bytes."""
    crc = 0
    for byte in (value >> 8, value & 0xFF):
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _code(value: int) -> list[int]:
    word = (value << CRC_BITS) | _crc8(value)
    return [(word >> (CODE_BITS - 1 - bit)) & 1 for bit in range(CODE_BITS)]


def _copies() -> Iterator[tuple[int, int]]:
    """(top row, left column) of each copy of the code."""
    for top in (0, HEIGHT - BAND):
        for left in COPY_LEFTS:
            yield top, left


def draw_number(frame: np.ndarray, value: int) -> None:
    """Write ``value`` into both bands of ``frame`` (the bands are cleared to black first)."""
    if not 0 <= value < 1 << NUMBER_BITS:
        raise ValueError(f"frame number {value} does not fit in {NUMBER_BITS} bits")
    frame[:PICTURE_TOP] = 0
    frame[PICTURE_BOTTOM:] = 0
    bits = _code(value)
    for top, left in _copies():
        for i, bit in enumerate(bits):
            x = left + i * CELL_WIDTH
            frame[top : top + BAND, x : x + CELL_WIDTH] = 255 * bit


def read_number(frame: np.ndarray) -> int | None:
    """The frame number in ``frame``'s bands (RGB, full size), or None when it cannot be read: a
    bit whose cells are spoiled in every copy, copies that disagree on a bit, or a failed CRC."""
    ones = np.zeros(CODE_BITS, int)
    clean = np.zeros(CODE_BITS, int)
    for top, left in _copies():
        band = frame[top + CELL_INSET : top + BAND - CELL_INSET, left : left + CODE_BITS * CELL_WIDTH]
        cells = band.reshape(band.shape[0], CODE_BITS, CELL_WIDTH, 3)[:, :, CELL_INSET : CELL_WIDTH - CELL_INSET]
        means = cells.mean(axis=(0, 2))  # (CODE_BITS, 3)
        grey = means.mean(axis=1)
        grey_only = means.max(axis=1) - means.min(axis=1) <= CELL_MAX_CHROMA
        readable = grey_only & ((grey <= CELL_DARK) | (grey >= CELL_LIGHT))
        clean += readable
        ones += readable & (grey >= 128)
    if np.any(clean == 0) or np.any((ones > 0) & (ones < clean)):
        return None
    word = int("".join("1" if one else "0" for one in ones), 2)
    value, crc = word >> CRC_BITS, word & ((1 << CRC_BITS) - 1)
    return value if _crc8(value) == crc else None


# --------------------------------------------------------------------------------------------
# Photos and camera moves


@dataclass(frozen=True, slots=True)
class Photo:
    file: str  # relative to the data folder
    width: int
    height: int
    faces: list[Box]

    @property
    def cover_scale(self) -> float:
        """Output px per photo px at which the photo just covers the picture area."""
        return max(WIDTH / self.width, PICTURE_HEIGHT / self.height)


@dataclass(frozen=True, slots=True)
class Key:
    """One key position of a shot's camera: the photo point at the picture's centre, and the scale."""

    at: float  # 0..1 through the shot
    cx: float
    cy: float
    scale: float


@dataclass(frozen=True, slots=True)
class Shake:
    """Per axis: amplitudes (px), frequencies (Hz) and phases of two fast sinusoids and a slow drift."""

    amplitudes: tuple[float, float, float]
    frequencies: tuple[float, float, float]
    phases: tuple[float, float, float]

    def offset(self, t: float) -> float:
        waves = zip(self.amplitudes, self.frequencies, self.phases)
        return sum(a * math.sin(2 * math.pi * f * t + p) for a, f, p in waves)


@dataclass(frozen=True, slots=True)
class Shot:
    photo: Photo
    first: int  # the clip's frame number of the shot's first frame
    frames: int
    keys: tuple[Key, ...]
    shake_x: Shake
    shake_y: Shake
    first_track: int  # the track of the photo's face i is first_track + i


@dataclass(frozen=True, slots=True)
class Camera:
    """Photo px -> frame px: x' = scale * x + tx, y' = scale * y + ty (continuous coordinates)."""

    scale: float
    tx: float
    ty: float

    def box(self, box: Box) -> Box:
        x, y, w, h = box
        return self.scale * x + self.tx, self.scale * y + self.ty, self.scale * w, self.scale * h

    def warp_matrix(self) -> np.ndarray:
        """The matrix for ``cv2.warpAffine`` into the picture area. OpenCV puts pixel centres at
        integer coordinates where boxes put them at +0.5, hence the half-pixel terms."""
        s = self.scale
        return np.array([[s, 0.0, self.tx + 0.5 * s - 0.5], [0.0, s, self.ty - PICTURE_TOP + 0.5 * s - 0.5]])


def _smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


def camera_at(shot: Shot, frame: int) -> Camera:
    """The camera of the shot's ``frame``-th frame: eased between key positions, then shaken."""
    u = frame / max(1, shot.frames - 1)
    keys = shot.keys
    k = max(i for i in range(len(keys) - 1) if keys[i].at <= u)
    a, b = keys[k], keys[k + 1]
    w = _smoothstep((u - a.at) / (b.at - a.at))
    cx, cy = a.cx + (b.cx - a.cx) * w, a.cy + (b.cy - a.cy) * w
    scale = math.exp(math.log(a.scale) + (math.log(b.scale) - math.log(a.scale)) * w)
    t = frame / FPS
    tx = WIDTH / 2 - scale * cx + shot.shake_x.offset(t)
    ty = PICTURE_TOP + PICTURE_HEIGHT / 2 - scale * cy + shot.shake_y.offset(t)
    return Camera(scale, tx, ty)


def eligible_photos(data: Path) -> list[Photo]:
    """faces-dev photos with at least ``MIN_FACES_AT_COVER`` faces 32 px or taller when the photo
    fills the picture (zooming in from there makes them bigger still)."""
    photos = []
    for entry in json.loads((data / "annotations.json").read_text())["images"]:
        photo = Photo(entry["file"], int(entry["width"]), int(entry["height"]), [tuple(f) for f in entry["faces"]])
        if sum(h * photo.cover_scale >= 32 for _, _, _, h in photo.faces) >= MIN_FACES_AT_COVER:
            photos.append(photo)
    return photos


def _key(rng: np.random.Generator, photo: Photo, at: float, zoom_in: bool) -> Key:
    """A zoomed-out key (the photo about fills the picture, centred near its middle) or a zoomed-in
    one (a face of the photo 60-230 px tall, somewhere in the picture)."""
    cover = photo.cover_scale
    if not zoom_in:
        scale = cover * rng.uniform(*ZOOM_OUT)
        view_w, view_h = WIDTH / scale, PICTURE_HEIGHT / scale
        cx = photo.width / 2 + rng.uniform(-0.1, 0.1) * view_w
        cy = photo.height / 2 + rng.uniform(-0.1, 0.1) * view_h
        return Key(at, cx, cy, scale)
    anchors = [f for f in photo.faces if f[3] >= MIN_ANCHOR] or photo.faces
    x, y, w, h = anchors[int(rng.integers(len(anchors)))]
    target = math.exp(rng.uniform(math.log(ZOOM_IN_FACE[0]), math.log(ZOOM_IN_FACE[1])))
    scale = min(MAX_SCALE, max(cover, target / h))
    view_w, view_h = WIDTH / scale, PICTURE_HEIGHT / scale
    # the face stays within the middle 60% of the picture
    cx = min(photo.width, max(0.0, x + w / 2 + rng.uniform(-0.3, 0.3) * view_w))
    cy = min(photo.height, max(0.0, y + h / 2 + rng.uniform(-0.3, 0.3) * view_h))
    return Key(at, cx, cy, scale)


def _shake(rng: np.random.Generator) -> Shake:
    return Shake(
        amplitudes=(rng.uniform(*SHAKE_PX), rng.uniform(*SHAKE_PX) / 2, rng.uniform(*DRIFT_PX)),
        frequencies=(rng.uniform(3.0, 9.0), rng.uniform(3.0, 9.0), rng.uniform(0.2, 0.8)),
        phases=tuple(rng.uniform(0, 2 * math.pi, 3)),
    )


def plan_shots(photos: list[Photo], seconds: float, shots: int, seed: int) -> list[Shot]:
    """``shots`` shots of equal length filling ``seconds`` after the lead-in, each of another photo.
    Each has three key positions: out, in, out or in, out, in."""
    rng = np.random.default_rng(seed)
    if shots > len(photos):
        raise ValueError(f"{shots} shots but only {len(photos)} photos qualify")
    chosen = [photos[i] for i in rng.choice(len(photos), size=shots, replace=False)]
    lead_in = round(LEAD_IN_S * FPS)
    total = round(seconds * FPS)
    bounds = [lead_in + round(total * i / shots) for i in range(shots + 1)]
    plan, track = [], 0
    for photo, first, end in zip(chosen, bounds, bounds[1:]):
        starts_in = bool(rng.integers(2))
        middle = rng.uniform(0.35, 0.65)
        keys = tuple(_key(rng, photo, at, zoom_in=(i % 2 == 0) == starts_in) for i, at in enumerate((0.0, middle, 1.0)))
        plan.append(Shot(photo, first, end - first, keys, _shake(rng), _shake(rng), track))
        track += len(photo.faces)
    return plan


def visible_box(box: Box) -> Box | None:
    """The part of a frame box inside the picture area, or None when less than ``KEEP_INSIDE`` of it is."""
    x, y, w, h = box
    x0, y0 = max(0.0, x), max(float(PICTURE_TOP), y)
    x1, y1 = min(float(WIDTH), x + w), min(float(PICTURE_BOTTOM), y + h)
    if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < KEEP_INSIDE * w * h:
        return None
    return x0, y0, x1 - x0, y1 - y0


# --------------------------------------------------------------------------------------------
# The clip


@dataclass(frozen=True, slots=True)
class ClipSpec:
    seed: int
    seconds: float
    shots: int

    def key(self, data: Path) -> str:
        """A short hash of everything the clip depends on, for its cache file names."""
        stat = (data / "annotations.json").stat()
        text = json.dumps([self.seed, float(self.seconds), self.shots, VERSION, WIDTH, HEIGHT, FPS, CRF,
                           str(data.resolve()), stat.st_size, stat.st_mtime_ns])
        return hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Clip:
    path: Path
    truth_path: Path
    frames: int
    faces: list[list[TruthFace]]  # per frame
    shots: list[dict]


@lru_cache(maxsize=4)
def _read_photo(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def render(data: Path, shot: Shot, frame: int, number: int) -> tuple[np.ndarray, list[TruthFace]]:
    """One frame of a shot (RGB) and its visible faces (x, y, w, h, track) in frame px."""
    camera = camera_at(shot, frame)
    pixels = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    pixels[PICTURE_TOP:PICTURE_BOTTOM] = cv2.warpAffine(
        _read_photo(data / shot.photo.file), camera.warp_matrix(), (WIDTH, PICTURE_HEIGHT),
        flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(BACKGROUND,) * 3,
    )
    draw_number(pixels, number)
    faces = []
    for i, box in enumerate(shot.photo.faces):
        visible = visible_box(camera.box(box))
        if visible is not None:
            faces.append((*(round(v, 2) for v in visible), shot.first_track + i))
    return pixels, faces


def build(spec: ClipSpec, data: Path = DEFAULT_DATA, log: Callable[[str], None] = print) -> Clip:
    """The clip for ``spec`` and its ground truth, made now or read from the cache."""
    key = spec.key(data)
    path, truth_path = CACHE / f"clip-{key}.mp4", CACHE / f"truth-{key}.json"
    if not (path.exists() and truth_path.exists()):
        log(f"making the clip {path.name} ({spec.seconds:g} s, {spec.shots} shots, seed {spec.seed}) ...")
        CACHE.mkdir(parents=True, exist_ok=True)
        shots = plan_shots(eligible_photos(data), spec.seconds, spec.shots, spec.seed)
        faces = _encode(data, shots, path.with_suffix(".part.mp4"))
        truth = {
            "spec": asdict(spec), "version": VERSION, "width": WIDTH, "height": HEIGHT, "fps": FPS,
            "band": BAND, "lead_in_frames": shots[0].first, "frames": len(faces),
            "shots": [{"file": s.photo.file, "first": s.first, "frames": s.frames, "first_track": s.first_track,
                       "keys": [asdict(k) for k in s.keys]} for s in shots],
            "faces": faces,
        }
        truth_path.with_suffix(".part").write_text(json.dumps(truth))
        path.with_suffix(".part.mp4").rename(path)
        truth_path.with_suffix(".part").rename(truth_path)
    truth = json.loads(truth_path.read_text())
    return Clip(path, truth_path, truth["frames"], [[tuple(f) for f in frame] for frame in truth["faces"]],
                truth["shots"])


def _encode(data: Path, shots: list[Shot], path: Path) -> list[list[TruthFace]]:
    """Render and encode every frame; returns each frame's faces."""
    faces: list[list[TruthFace]] = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": str(CRF), "preset": "fast"}
        # x264's output depends on its threads; PyAV's default is one slice thread per core: pinned
        # to what it is on the 2-core machine the figures come from, so every machine makes the same clip
        stream.codec_context.thread_count, stream.codec_context.thread_type = 2, "SLICE"

        def put(pixels: np.ndarray, visible: list[TruthFace]) -> None:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = len(faces)
            container.mux(stream.encode(frame))
            faces.append(visible)

        lead_in = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
        for number in range(shots[0].first):
            draw_number(lead_in, number)
            put(lead_in, [])
        for shot in shots:
            for frame in range(shot.frames):
                put(*render(data, shot, frame, shot.first + frame))
        container.mux(stream.encode(None))
    return faces


def decode(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a video file as RGB, in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")
