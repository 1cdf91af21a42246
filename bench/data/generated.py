"""The generated tasks: flat shapes drawn in numpy, laid out like a VTAB-1k task, no download.

In the spirit of VTAB's structured group: `gen_shape_loc` (the x position of one shape, as
dsprites_loc), `gen_shape_ori` (the orientation of an arrow, as dsprites_ori) and `gen_count`
(how many shapes, as clevr_count). They are not those datasets, and their numbers are no
evidence about the real tasks.

Every split is a function of DATA_SEED: its labels are balanced (the same number of images per
class, in a seeded order) and each image is drawn from its label by the task's renderer with a
seeded numpy Generator. A label's value is drawn from the central part of its bin (CENTRAL), so
the label can be read off the pixels. train800val200 is train800 then val200, as for `digits`.
Images are drawn again on each pass over a split, so a cache hit draws none. Bump the task's
`version` (bench/tasks.py) when a renderer changes: the cache keys include it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator

import numpy as np

from bench.data.shapes import (
    Canvas,
    arrow,
    bounding_box,
    convex_polygon,
    disc,
    regular_polygon,
)
from bench.data.sources import RawSplit, SourceStatus
from bench.errors import UserError
from bench.tasks import TaskSpec

DATA_SEED = 0
SIZE = 32  # px, RGB
PART_SIZES = {"train800": 800, "val200": 200, "test": 2000}
SPLIT_PARTS = {
    "train800": ("train800",),
    "val200": ("val200",),
    "train800val200": ("train800", "val200"),
    "test": ("test",),
}
CENTRAL = (0.2, 0.8)  # the fraction of a label's bin its value is drawn from
LOC_RANGE = (6.0, 26.0)  # the x (and y) range of gen_shape_loc's shape centre, in px
COUNT_RADIUS = (1.5, 3.4)  # gen_count: a shape's circumradius range, in px
COUNT_GAP = 3.0  # px between bounding circles; over 2 sqrt(2): no two shapes share a pixel corner
COUNT_TRIES = 200  # placements tried before a layout is drawn again
COUNT_MAX = 10  # shapes: more do not reliably fit apart
COUNT_LAYOUTS = 100  # layouts drawn before an error: at COUNT_MAX about 1 in 2 fails (8 in a row
# at most in 3 000 draws), so 100 in a row stand for a bug, not bad luck

Renderer = Callable[[np.random.Generator, int, int], np.ndarray]  # rng, label, classes -> image


def _background(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 64, size=3)


def _foreground(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(160, 256, size=3)


def _in_bin(rng: np.random.Generator, label: int) -> float:
    """Where in bin `label` (in bin widths from the range's start) the value falls."""
    return label + rng.uniform(*CENTRAL)


def _random_shape(rng: np.random.Generator, cx: float, cy: float, r: float):
    """A disc, square or triangle of circumradius r centred at (cx, cy), at a random angle:
    its inside test and bounding box."""
    kind, angle = rng.integers(3), rng.uniform(0, 2 * math.pi)
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == 0:
        return disc(cx, cy, r), box
    return convex_polygon(regular_polygon(cx, cy, r, 3 if kind == 1 else 4, angle)), box


def shape_loc(rng: np.random.Generator, label: int, classes: int) -> np.ndarray:
    """One shape (disc, square or triangle, random size, y, colour); the label is the bin of
    its centre's x in `classes` equal bins over LOC_RANGE."""
    lo, hi = LOC_RANGE
    cx = lo + _in_bin(rng, label) * (hi - lo) / classes
    cy, r = rng.uniform(lo, hi), rng.uniform(3.0, 5.0)
    canvas = Canvas(SIZE, _background(rng))
    canvas.draw(*_random_shape(rng, cx, cy, r), _foreground(rng))
    return canvas.image()


def shape_ori(rng: np.random.Generator, label: int, classes: int) -> np.ndarray:
    """One arrow (isosceles triangle, random size, position, colour); the label is the bin of
    the direction it points in, `classes` equal bins counter-clockwise from the +x axis."""
    angle = _in_bin(rng, label) * 2 * math.pi / classes
    length = rng.uniform(12.0, 18.0)
    width = length * rng.uniform(0.5, 0.7)
    reach = 2 * length / 3 + 1  # the tip is the vertex farthest from the centroid
    cx, cy = rng.uniform(reach, SIZE - reach, size=2)
    vertices = arrow(cx, cy, length, width, angle)
    canvas = Canvas(SIZE, _background(rng))
    canvas.draw(convex_polygon(vertices), bounding_box(vertices), _foreground(rng))
    return canvas.image()


def count(rng: np.random.Generator, label: int, classes: int) -> np.ndarray:
    """label + 1 shapes (discs, squares, triangles of random colour) anywhere in the image, none
    touching another. Radii range over COUNT_RADIUS (a 5x spread of area), so the amount of ink
    does not give the count: one large shape has as much as several small ones."""
    if classes > COUNT_MAX:
        raise ValueError(f"gen_count draws at most {COUNT_MAX} shapes, not {classes}")
    canvas = Canvas(SIZE, _background(rng))
    for cx, cy, r in _apart(rng, label + 1):
        canvas.draw(*_random_shape(rng, cx, cy, r), _foreground(rng))
    return canvas.image()


def _apart(rng: np.random.Generator, n: int) -> list[tuple[float, float, float]]:
    """n (cx, cy, r) inside the image whose bounding circles keep COUNT_GAP px apart, drawn one
    by one (a shape that does not fit is drawn again; after COUNT_TRIES, the whole layout; after
    COUNT_LAYOUTS, an error rather than a hang)."""
    if not 1 <= n <= COUNT_MAX:
        raise ValueError(f"gen_count lays out 1 to {COUNT_MAX} shapes, not {n}")
    lo, hi = COUNT_RADIUS
    for _ in range(COUNT_LAYOUTS):
        placed: list[tuple[float, float, float]] = []
        for _ in range(COUNT_TRIES):
            r = rng.uniform(lo, hi)
            cx, cy = rng.uniform(r + 1, SIZE - 1 - r, size=2).tolist()
            if all(math.hypot(cx - x, cy - y) > r + s + COUNT_GAP for x, y, s in placed):
                placed.append((cx, cy, r))
                if len(placed) == n:
                    return placed
    raise RuntimeError(f"{n} shapes did not fit {COUNT_GAP} px apart in {COUNT_LAYOUTS} layouts")


RENDERERS: dict[str, Renderer] = {
    "gen_shape_loc": shape_loc,
    "gen_shape_ori": shape_ori,
    "gen_count": count,
}
_PART_IDS = {"train800": 0, "val200": 1, "test": 2}


def _rng(task: TaskSpec, part: str, seed: int, images: bool) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(task.name.encode()), _PART_IDS[part], images])


def part_labels(task: TaskSpec, part: str, seed: int = DATA_SEED) -> np.ndarray:
    """Every class equally often, in a seeded order."""
    n, classes = PART_SIZES[part], task.num_classes
    if n % classes:
        raise ValueError(f"{task.name}: {part} ({n} images) does not split into {classes} classes")
    return _rng(task, part, seed, images=False).permutation(
        np.repeat(np.arange(classes), n // classes)
    )


class RenderedImages:
    """A split's images, drawn from the seed on each pass (an Iterable with a length)."""

    def __init__(self, task: TaskSpec, parts: tuple[str, ...], seed: int) -> None:
        self.task, self.parts, self.seed = task, parts, seed

    def __len__(self) -> int:
        return sum(PART_SIZES[part] for part in self.parts)

    def __iter__(self) -> Iterator[np.ndarray]:
        render = RENDERERS[self.task.name]
        for part in self.parts:
            rng = _rng(self.task, part, self.seed, images=True)
            for label in part_labels(self.task, part, self.seed):
                yield render(rng, int(label), self.task.num_classes)


def generate(task: TaskSpec, split: str, seed: int = DATA_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A split's labels (N,) int64 and images (N, SIZE, SIZE, 3) uint8."""
    raw = GeneratedSource().read_split(task, split, None, seed)
    return raw.labels, np.stack(list(raw.images))


class GeneratedSource:
    """The generated tasks (RENDERERS), drawn in numpy."""

    name = "generated"
    format = "tensor"

    def status(self, task: TaskSpec, data_dir: str | None) -> SourceStatus:
        found = task.name in RENDERERS
        where = "generated in numpy (bench.data.generated)"
        return SourceStatus(found, where, "" if found else f"only {', '.join(RENDERERS)}")

    def read_split(
        self, task: TaskSpec, split: str, data_dir: str | None, seed: int = DATA_SEED
    ) -> RawSplit:
        if task.name not in RENDERERS:
            raise UserError(f"the generated source has {', '.join(RENDERERS)}, not {task.name!r}")
        if split not in SPLIT_PARTS:
            raise UserError(f"unknown split {split!r}; expected one of {list(SPLIT_PARTS)}")
        parts = SPLIT_PARTS[split]
        labels = np.concatenate([part_labels(task, part, seed) for part in parts])
        fingerprint = f"generated:{task.name}:seed{seed}:{SIZE}px:{split}"
        return RawSplit(labels.astype(np.int64), RenderedImages(task, parts, seed), fingerprint)


SOURCE = GeneratedSource()
