"""Procedurally drawn WSOL datasets: one object per image on a cluttered background, exact boxes.

Two kinds, small enough to train a GAP CNN on from scratch on a laptop CPU in minutes:

``shapes``
    eight classes, each a shape (:data:`SHAPES`) filled with its own two-tone texture
    (:data:`TEXTURES`; the texture's colours are random). Colour, size (15-40 % of the image side),
    position and rotation are random and carry no class information; the background (smooth colour
    noise, a colour ramp, thin line segments, soft blobs, specks) carries none either, so the object
    is the only evidence of its class and a classifier has to look at it.
``finegrained``
    six classes of one 'bird' (body, head, beak, tail, eye) with random colour, size (30-50 % of the
    side), position, rotation and facing, that differ only in a marking on the wing about 30 % of the
    bird's length across (:data:`MARKS`). At a low classifier resolution the marking is a few pixels
    of the whole image, while a crop of the bird resized to that resolution shows it clearly: the
    CUB-like setting where classifying the cropped object beats classifying the full image.

Ground-truth boxes are the tight box of the object's pixels as drawn, ``(x0, y0, x1, y1)`` inclusive
(the rest of camloc's convention). Everything follows from ``seed``: the same call writes the same
bytes (train and test come from independent streams of ``numpy.random.SeedSequence(seed)``).

    train, test = generate("out/shapes", "shapes")              # out/shapes/{train,test}: csv layout
    train, test = generate("out/birds", "finegrained", layout="cub")   # CUB-200-2011 layout
    image, label, box, mask = draw("shapes", np.random.default_rng(0), 128)   # one sample in memory
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from ..box import Box
from ..errors import InvalidArgument, OutputExists
from .base import Dataset, Sample
from .boxes_csv import write_csv_dataset
from .cub import write_cub_dataset
from .registry import open_dataset

__all__ = ["DEFAULT_SIZE", "KINDS", "LAYOUTS", "MARKS", "SHAPES", "TEXTURES", "class_names", "draw", "generate"]

KINDS = ("shapes", "finegrained")
LAYOUTS = ("csv", "cub")
SHAPES = ("disc", "ring", "square", "triangle", "star", "plus", "crescent", "bar")
# each shape's two-tone texture (in the object's own rotated frame): a second, local cue to the class
# that fills the whole object, so a small CNN learns quickly and its maps cover the object
TEXTURES = ("rings", "plain", "checker", "stripes", "grid", "dots", "spokes", "halves")
MARKS = ("dot", "ring", "bar", "stripe", "cross", "twin")
# finegrained is larger so that its marking stays legible in a crop of the bird
DEFAULT_SIZE = {"shapes": 128, "finegrained": 192}
MIN_SIZE, MAX_SIZE = 32, 2048

_SUBPIXEL_BITS = 4  # cv2 drawing with fractional coordinates: points are scaled by 2**4
_SCALE = 1 << _SUBPIXEL_BITS


def class_names(kind: str) -> list[str]:
    """The class names of ``kind``, in label order."""
    _check_kind(kind)
    return list(SHAPES) if kind == "shapes" else [f"bird_{m}" for m in MARKS]


def draw(
    kind: str, rng: np.random.Generator, size: int | None = None, label: int | None = None
) -> tuple[np.ndarray, int, Box, np.ndarray]:
    """Draw one sample: ``(image, label, box, mask)``.

    ``image`` is ``size x size x 3`` uint8 RGB, ``mask`` a bool ``size x size`` array of the object's
    pixels and ``box`` its tight inclusive box. ``label`` (random when None) picks the class.
    Consumes ``rng``: the same generator state gives the same sample.
    """
    _check_kind(kind)
    size = DEFAULT_SIZE[kind] if size is None else _check_size(size)
    n_classes = len(SHAPES) if kind == "shapes" else len(MARKS)
    if label is None:
        label = int(rng.integers(n_classes))
    elif not 0 <= label < n_classes:
        raise InvalidArgument("label", f"label {label} is outside 0..{n_classes - 1} for kind {kind!r}")

    image = _background(rng, size)
    if kind == "shapes":
        mask, second_tone = _shape_masks(label, rng, size)
        _paint(image, mask, rng, second_tone)
    else:
        mask, mark = _bird_masks(MARKS[label], rng, size)
        body = _paint(image, mask, rng)
        image[mark] = _contrasting_colour(rng, body)
    _add_noise(image, rng)
    return image, label, _tight_box(mask), mask


def generate(
    out: str | Path,
    kind: str = "shapes",
    *,
    train: int = 2000,
    test: int = 500,
    seed: int = 0,
    size: int | None = None,
    layout: str = "csv",
) -> tuple[Dataset, Dataset]:
    """Draw and write a ``kind`` dataset of ``train`` + ``test`` PNG images; returns ``(train, test)``.

    The images are ``size`` pixels square (default
    :data:`DEFAULT_SIZE`), written under ``out``; ``(train, test)`` are read back with
    :func:`~camloc.datasets.open_dataset`. Classes are balanced (counts differ by at most one).

    ``layout="csv"``: ``out/train`` and ``out/test``, each a csv dataset (``boxes.csv``,
    ``classes.txt``, ``images/00000.png`` ...). ``layout="cub"``: one CUB-200-2011 folder ``out``
    (``images/001.disc/train_00000.png`` ..., ``images.txt``, ``bounding_boxes.txt`` and the rest;
    sizes are then None, as CUB declares none). ``out`` must be absent or empty.
    """
    _check_kind(kind)
    size = DEFAULT_SIZE[kind] if size is None else _check_size(size)
    for name, count in (("train", train), ("test", test)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidArgument(name, f"{name} must be a positive number of images, got {count!r}")
    if layout not in LAYOUTS:
        raise InvalidArgument("layout", f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExists(f"{out}: exists and is not an empty folder; generate writes into a new one")

    names = class_names(kind)
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    splits = {"train": (train, train_seq), "test": (test, test_seq)}
    written: dict[str, list[Sample]] = {}
    for split, (count, seq) in splits.items():
        rng = np.random.default_rng(seq)
        labels = rng.permutation(np.arange(count) % len(names))
        samples = []
        for i, label in enumerate(int(k) for k in labels):
            image, _, box, _ = draw(kind, rng, size, label)
            if layout == "csv":
                image_id, images_dir = f"{i:05d}.png", out / split / "images"
            else:
                image_id, images_dir = f"{label + 1:03d}.{names[label]}/{split}_{i:05d}.png", out / "images"
            path = images_dir / image_id
            _write_png(path, image)
            samples.append(Sample(image_id, path, label, (box,), (size, size)))
        written[split] = samples

    if layout == "csv":
        for split, samples in written.items():
            write_csv_dataset(samples, out / split, names)
        return open_dataset(out / "train", "csv"), open_dataset(out / "test", "csv")
    write_cub_dataset(written, out, names)
    return open_dataset(out, "cub", split="train"), open_dataset(out, "cub", split="test")


# --------------------------------------------------------------------------------------------
# checks


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidArgument("kind", f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InvalidArgument("size", f"size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    return size


# --------------------------------------------------------------------------------------------
# background


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background: smooth colour noise plus a colour ramp, then thin lines, soft blobs and specks.

    Texture with edges and colour everywhere, but no closed shape a class could be mistaken for.
    """
    cells = int(rng.integers(2, 6))
    coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    image: np.ndarray = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.arange(size, dtype=np.float32) / size - 0.5
    ramp = math.cos(angle) * ramp[None, :] + math.sin(angle) * ramp[:, None]
    image += ramp[:, :, None] * rng.uniform(-120, 120, 3).astype(np.float32)
    # soft blobs: small ellipses, blurred so they have no edge to read a shape from
    blobs: np.ndarray = np.zeros_like(image)
    cover: np.ndarray = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 9))):
        centre, axes = _fixed(rng.uniform(0, size, 2)), _fixed(rng.uniform(0.015, 0.05, 2) * size)
        tilt = rng.uniform(0, 180)
        cv2.ellipse(blobs, centre, axes, tilt, 0, 360, _colour(rng), -1, cv2.LINE_8, _SUBPIXEL_BITS)
        cv2.ellipse(cover, centre, axes, tilt, 0, 360, 1.0, -1, cv2.LINE_8, _SUBPIXEL_BITS)
    sigma = 0.015 * size
    blobs, cover = cv2.GaussianBlur(blobs, (0, 0), sigma), cv2.GaussianBlur(cover, (0, 0), sigma)
    image = np.clip(image * (1 - cover[:, :, None]) + blobs, 0, 255).astype(np.uint8)

    for _ in range(int(rng.integers(4, 13))):
        start = rng.uniform(0, size, 2)
        step = rng.uniform(0.1, 0.5) * size * _unit(rng.uniform(0, 2 * math.pi))
        thickness = int(rng.integers(1, 3))
        cv2.line(image, _fixed(start), _fixed(start + step), _colour(rng), thickness, cv2.LINE_AA, _SUBPIXEL_BITS)

    specks = int(rng.integers(size * size // 500, size * size // 150 + 1))
    ys, xs = rng.integers(0, size, (2, specks))
    image[ys, xs] = rng.integers(0, 256, (specks, 3), dtype=np.uint8)
    return image


def _add_noise(image: np.ndarray, rng: np.random.Generator) -> None:
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(rng.uniform(2, 8))
    np.copyto(image, np.clip(image + noise, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------
# objects


def _shape_masks(label: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(object, second tone of its texture) pixel masks of class ``label``'s shape.

    The shape lies inside a circle of random diameter (15-40 % of the side), randomly placed wholly
    inside the image and rotated.
    """
    shape = SHAPES[label]
    radius = rng.uniform(0.15, 0.40) * size / 2
    centre = rng.uniform(radius + 1, size - 2 - radius, 2)
    angle = rng.uniform(0, 2 * math.pi)
    mask = np.zeros((size, size), np.uint8)

    def polygon(*points_in_radii: np.ndarray | tuple[float, float]) -> None:
        points = np.array(points_in_radii) * radius
        rotated = points @ _rotation(angle).T + centre
        cv2.fillPoly(mask, [_fixed(rotated)], 1, cv2.LINE_8, _SUBPIXEL_BITS)

    def disc(offset: tuple[float, float], r: float, value: int = 1) -> None:
        at = centre + _rotation(angle) @ (np.array(offset) * radius)
        cv2.circle(mask, _fixed(at), int(round(r * radius * _SCALE)), value, -1, cv2.LINE_8, _SUBPIXEL_BITS)

    if shape == "disc":
        disc((0, 0), 1.0)
    elif shape == "ring":
        disc((0, 0), 1.0)
        disc((0, 0), 0.55, value=0)
    elif shape == "crescent":
        disc((0, 0), 1.0)
        disc((0.45, 0), 0.85, value=0)
    elif shape == "square":
        polygon(*(_unit(math.pi / 4 + k * math.pi / 2) for k in range(4)))
    elif shape == "triangle":
        polygon(*(_unit(k * 2 * math.pi / 3) for k in range(3)))
    elif shape == "star":
        polygon(*(_unit(k * math.pi / 5) * (1.0 if k % 2 == 0 else 0.42) for k in range(10)))
    elif shape == "plus":
        a, b = 1.0, 0.3
        polygon(
            (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b), (-b, -a), (b, -a), (b, -b), (a, -b)
        )
    elif shape == "bar":
        polygon((0.96, 0.28), (-0.96, 0.28), (-0.96, -0.28), (0.96, -0.28))
    else:
        raise AssertionError(shape)

    ys, xs = np.mgrid[:size, :size].astype(np.float32)
    u, v = _rotation(-angle) @ np.stack([xs.ravel() - centre[0], ys.ravel() - centre[1]])
    tone = _texture(TEXTURES[label], u.reshape(size, size), v.reshape(size, size), size / 16)
    mask = mask.astype(bool)
    return mask, tone & mask


def _texture(name: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
    """Where the second tone goes, at object-frame coordinates ``u, v`` (pixels from the centre)."""
    half = period / 2
    if name == "plain":
        return np.zeros(u.shape, bool)
    if name == "stripes":
        return np.floor(u / half) % 2 == 1
    if name == "checker":
        return (np.floor(u / half) + np.floor(v / half)) % 2 == 1
    if name == "grid":
        return (u % period < period / 4) | (v % period < period / 4)
    if name == "dots":
        return (u % period - half) ** 2 + (v % period - half) ** 2 < (period / 3) ** 2
    if name == "rings":
        return np.floor(np.hypot(u, v) / half) % 2 == 1
    if name == "spokes":
        return np.floor(np.arctan2(v, u) / (math.pi / 4)) % 2 == 1
    if name == "halves":
        return u > 0
    raise AssertionError(name)


# The bird in units of its body length, facing +x with y down; 'reach' bounds every part's distance
# from the origin, to place the bird inside the image.
_BIRD_BODY = ((0.0, 0.0), (0.40, 0.22))  # ellipse centre, semi-axes
_BIRD_HEAD = ((0.38, -0.17), 0.15)  # circle centre, radius
_BIRD_BEAK = ((0.50, -0.22), (0.50, -0.12), (0.68, -0.17))
_BIRD_TAIL = ((-0.32, -0.07), (-0.64, -0.22), (-0.60, 0.04), (-0.32, 0.07))
_BIRD_EYE = ((0.43, -0.20), 0.035)
_BIRD_REACH = 0.72
_BIRD_LENGTH = 1.32  # beak tip to tail tip
# Beak-to-tail length as a fraction of the image side, and the marking: on the wing, 0.4 body lengths
# across. Measured with MobileNetV2 features + a linear SVM on 2,000 / 500 images: at this size the
# full image is classified 36 % right and the bird cropped out 83 %; with smaller birds (0.20-0.35)
# and marks (0.2 body lengths) 21 % and 56 %, too close to chance for a CAM to find the bird.
_BIRD_SIZE = (0.30, 0.50)
_MARK_CENTRE, _MARK_HALF = (-0.05, 0.03), 0.2


def _bird_masks(mark: str, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(bird, marking) pixel masks of a randomly sized, placed, turned and flipped bird.

    The marking and the eye lie inside the bird.
    """
    length = rng.uniform(*_BIRD_SIZE) * size / _BIRD_LENGTH
    centre = rng.uniform(_BIRD_REACH * length + 1, size - 2 - _BIRD_REACH * length, 2)
    angle = rng.uniform(-0.45, 0.45)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    stretch = rng.uniform(0.85, 1.15)  # plumper or slimmer body

    def place(points) -> np.ndarray:
        local = np.array(points, dtype=np.float64).reshape(-1, 2) * length * (flip, 1.0)
        return local @ _rotation(flip * angle).T + centre

    def ellipse(canvas, centre_, axes, value=1) -> None:
        at, semi_axes, tilt = _fixed(place(centre_)[0]), _fixed(np.array(axes) * length), math.degrees(flip * angle)
        cv2.ellipse(canvas, at, semi_axes, tilt, 0, 360, value, -1, cv2.LINE_8, _SUBPIXEL_BITS)

    bird = np.zeros((size, size), np.uint8)
    (body_centre, (ax, ay)) = _BIRD_BODY
    ellipse(bird, body_centre, (ax, ay * stretch))
    head_centre, head_r = _BIRD_HEAD
    ellipse(bird, head_centre, (head_r, head_r))
    for part in (_BIRD_BEAK, _BIRD_TAIL):
        cv2.fillPoly(bird, [_fixed(place(part))], 1, cv2.LINE_8, _SUBPIXEL_BITS)

    marking = np.zeros((size, size), np.uint8)
    eye_centre, eye_r = _BIRD_EYE
    ellipse(marking, eye_centre, (eye_r, eye_r))  # every class has the eye: it is no class evidence
    cx, cy = _MARK_CENTRE
    h = _MARK_HALF
    if mark == "dot":
        ellipse(marking, (cx, cy), (0.6 * h, 0.6 * h))
    elif mark == "ring":
        ellipse(marking, (cx, cy), (h, h))
        ellipse(marking, (cx, cy), (0.5 * h, 0.5 * h), value=0)
    elif mark in ("bar", "stripe", "cross"):
        along = np.array([(h, 0.25 * h), (-h, 0.25 * h), (-h, -0.25 * h), (h, -0.25 * h)])
        arms = {"bar": [along], "stripe": [along[:, ::-1]], "cross": [along, along[:, ::-1]]}[mark]
        for arm in arms:
            cv2.fillPoly(marking, [_fixed(place(arm + (cx, cy)))], 1, cv2.LINE_8, _SUBPIXEL_BITS)
    elif mark == "twin":
        for dx in (-0.55 * h, 0.55 * h):
            ellipse(marking, (cx + dx, cy), (0.4 * h, 0.4 * h))
    else:
        raise AssertionError(mark)
    bird = bird.astype(bool)
    return bird, marking.astype(bool) & bird


def _paint(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, second_tone: np.ndarray | None = None
) -> np.ndarray:
    """Fill ``mask`` with a random colour that stands out from the background under it; returns that colour.

    ``second_tone`` (when given) gets another colour that stands out from the first; both are
    shaded by a gentle ramp.
    """
    colour = _contrasting_colour(rng, image[mask].mean(axis=0))
    ys, xs = np.nonzero(mask)
    fill = np.tile(colour, (len(ys), 1))
    if second_tone is not None:
        fill[second_tone[ys, xs]] = _contrasting_colour(rng, colour, 90.0)
    direction = _unit(rng.uniform(0, 2 * math.pi))
    along = xs * direction[0] + ys * direction[1]
    spread = max(float(np.ptp(along)), 1.0)
    shade = 1.0 + rng.uniform(0.1, 0.3) * ((along - along.min()) / spread - 0.5)
    image[ys, xs] = np.clip(shade[:, None] * fill, 0, 255).astype(np.uint8)
    return colour


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray, distance: float = 110.0) -> np.ndarray:
    """A random colour at least ``distance`` (RGB, Euclidean) from ``against``.

    After a few tries without one, the farthest colour tried.
    """
    best, best_d = None, -1.0
    for _ in range(12):
        colour = rng.uniform(0, 255, 3)
        d = float(np.linalg.norm(colour - against))
        if d >= distance:
            return colour
        if d > best_d:
            best, best_d = colour, d
    assert best is not None  # the first draw already beats -1
    return best


# --------------------------------------------------------------------------------------------
# small helpers


def _tight_box(mask: np.ndarray) -> Box:
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _unit(angle: float) -> np.ndarray:
    return np.array([math.cos(angle), math.sin(angle)])


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _fixed(points: np.ndarray):
    """Coordinates in cv2's fixed point (``shift=_SUBPIXEL_BITS``).

    A tuple for one point, an int32 array for several.
    """
    fixed = np.round(np.asarray(points, dtype=np.float64) * _SCALE).astype(np.int32)
    return tuple(int(v) for v in fixed) if fixed.ndim == 1 else fixed


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    path.write_bytes(data.tobytes())
