"""Anti-aliased flat shapes on a small RGB canvas, in numpy: what the generated tasks draw.

Coordinates are continuous (x to the right, y down): pixel (row i, column j) covers
[j, j + 1) x [i, i + 1), its centre at (j + 0.5, i + 0.5). A shape's coverage of a pixel is the
fraction of SUPERSAMPLE x SUPERSAMPLE points inside it; a pixel's colour is the background's plus
the coverage times (the shape's colour - the background's). Shapes drawn on one canvas must not
overlap.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

SUPERSAMPLE = 4

Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x, y) grids -> bool grid


def disc(cx: float, cy: float, r: float) -> Inside:
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def regular_polygon(cx: float, cy: float, r: float, sides: int, angle: float) -> np.ndarray:
    """Vertices (sides, 2) of a regular polygon of circumradius r, one vertex at `angle`
    (radians, counter-clockwise as seen), centred (and so with its centroid) at (cx, cy)."""
    turns = angle + 2 * math.pi * np.arange(sides) / sides
    return np.stack([cx + r * np.cos(turns), cy - r * np.sin(turns)], axis=1)


def arrow(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    """Vertices of an isosceles triangle pointing at `angle` (counter-clockwise as seen), its
    centroid at (cx, cy): tip 2/3 of `length` ahead of it, the base (`width`) 1/3 behind."""
    local = np.array([[2 * length / 3, 0.0], [-length / 3, width / 2], [-length / 3, -width / 2]])
    cos, sin = math.cos(angle), math.sin(angle)
    x = cx + local[:, 0] * cos - local[:, 1] * sin
    y = cy - (local[:, 0] * sin + local[:, 1] * cos)
    return np.stack([x, y], axis=1)


def convex_polygon(vertices: np.ndarray) -> Inside:
    """Inside test of a convex polygon given its vertices in order (either direction)."""
    a = np.asarray(vertices, dtype=np.float64)
    b = np.roll(a, -1, axis=0)
    area = np.sum(a[:, 0] * b[:, 1] - b[:, 0] * a[:, 1])
    sign = 1.0 if area >= 0 else -1.0

    def inside(x, y):
        result = np.ones(np.broadcast(x, y).shape, dtype=bool)
        for (ax, ay), (bx, by) in zip(a, b, strict=True):
            result &= sign * ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) >= 0
        return result

    return inside


def coverage(inside: Inside, size: int, box: tuple[float, float, float, float]) -> tuple:
    """The shape's coverage of the pixels of `box` = (x0, y0, x1, y1) (clipped to the canvas):
    (rows slice, columns slice, coverage array)."""
    x0, y0, x1, y1 = box
    cols = slice(max(0, math.floor(x0)), min(size, math.ceil(x1)))
    rows = slice(max(0, math.floor(y0)), min(size, math.ceil(y1)))
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs = (np.arange(cols.start, cols.stop)[:, None] + offsets).ravel()
    ys = (np.arange(rows.start, rows.stop)[:, None] + offsets).ravel()
    hit = inside(xs[None, :], ys[:, None])
    shape = (rows.stop - rows.start, SUPERSAMPLE, cols.stop - cols.start, SUPERSAMPLE)
    return rows, cols, hit.reshape(shape).mean(axis=(1, 3))


def bounding_box(points: np.ndarray) -> tuple[float, float, float, float]:
    return (*points.min(axis=0), *points.max(axis=0))


class Canvas:
    """An RGB canvas of one background colour; `draw` adds a shape in its colour."""

    def __init__(self, size: int, background: np.ndarray) -> None:
        self.size = size
        self.background = np.asarray(background, dtype=np.float64)
        self.pixels = np.broadcast_to(self.background, (size, size, 3)).copy()

    def draw(self, inside: Inside, box, colour: np.ndarray) -> None:
        rows, cols, cover = coverage(inside, self.size, box)
        self.pixels[rows, cols] += cover[..., None] * (np.asarray(colour) - self.background)

    def image(self) -> np.ndarray:
        return np.clip(np.round(self.pixels), 0, 255).astype(np.uint8)
