"""Formula-driven fractal images in the spirit of FractalDB (Kataoka et al., ACCV 2020).

A class is a random iterated function system (IFS) of 2 to 4 contractive affine maps; an image
of the class is the point cloud of the chaos game on a jittered copy of its maps, rendered into a
grey-level picture (tinted with a random colour). Everything is numpy, deterministic from a seed:
class `c` of seed `s` is the same whatever the number of classes asked for.
"""

from __future__ import annotations

import numpy as np

MIN_FILL = 0.12  # a class whose rendered cloud covers less of the image is redrawn (FractalDB's
#                  filling-rate filter), so no class is a dot or a line
SUPERSAMPLE = 4  # points are binned at size * SUPERSAMPLE and averaged down


def sample_ifs(rng: np.random.Generator) -> np.ndarray:
    """2-4 affine maps (n, 6): x' = [[a, b], [c, d]] x + [e, f], contractive (the largest
    singular value of each linear part below 1), coefficients uniform in [-1, 1]."""
    return contract(rng.uniform(-1.0, 1.0, size=(int(rng.integers(2, 5)), 6)))


def contract(maps: np.ndarray, limit: float = 0.95) -> np.ndarray:
    """`maps` (..., 6) with each linear part scaled down where its largest singular value
    exceeds `limit`: the chaos game stays bounded."""
    linear = maps[..., :4].reshape(*maps.shape[:-1], 2, 2)
    largest = np.linalg.norm(linear, ord=2, axis=(-2, -1))
    scale = np.minimum(1.0, limit / np.maximum(largest, 1e-12))
    return np.concatenate([maps[..., :4] * scale[..., None], maps[..., 4:]], axis=-1)


def chaos_game(maps: np.ndarray, rng: np.random.Generator, instances: int,
               points: int, burn_in: int = 20) -> np.ndarray:  # fmt: skip
    """(instances, points, 2): `instances` independent walks on `maps` (instances, n, 6),
    each map picked with probability proportional to |det| of its linear part."""
    det = np.abs(maps[..., 0] * maps[..., 3] - maps[..., 1] * maps[..., 2]) + 1e-3
    cumulative = np.cumsum(det / det.sum(-1, keepdims=True), axis=-1)
    xy = np.zeros((instances, 2))
    rows = np.arange(instances)
    cloud = np.empty((instances, points, 2))
    for step in range(burn_in + points):
        pick = (rng.random((instances, 1)) > cumulative).sum(-1).clip(max=maps.shape[1] - 1)
        m = maps[rows, pick]
        xy = np.stack([m[:, 0] * xy[:, 0] + m[:, 1] * xy[:, 1] + m[:, 4],
                       m[:, 2] * xy[:, 0] + m[:, 3] * xy[:, 1] + m[:, 5]], axis=-1)  # fmt: skip
        if step >= burn_in:
            cloud[:, step - burn_in] = xy
    return cloud


def render(cloud: np.ndarray, size: int, margin: np.ndarray | None = None) -> np.ndarray:
    """(instances, size, size) float in [0, 1]: each cloud fitted into the image (keeping its
    aspect, `margin` a per-instance border fraction), binned at SUPERSAMPLE x the size, averaged
    down and scaled so the densest pixel is 1."""
    instances = cloud.shape[0]
    margin = np.full(instances, 0.05) if margin is None else margin
    low, high = cloud.min(1, keepdims=True), cloud.max(1, keepdims=True)
    extent = (high - low).max(-1, keepdims=True).clip(min=1e-6)
    centred = (cloud - (low + high) / 2) / extent  # in [-0.5, 0.5]
    fine = size * SUPERSAMPLE
    unit = centred * (1 - 2 * margin[:, None, None]) + 0.5
    pixel = (unit * fine).astype(np.int64).clip(0, fine - 1)
    flat = pixel[..., 1] * fine + pixel[..., 0] + (np.arange(instances) * fine * fine)[:, None]
    counts = np.bincount(flat.ravel(), minlength=instances * fine * fine)
    hits = (counts.reshape(instances, fine, fine) > 0).astype(np.float64)
    image = hits.reshape(instances, size, SUPERSAMPLE, size, SUPERSAMPLE).mean((2, 4))
    return image / image.max((1, 2), keepdims=True).clip(min=1e-6)


def fill_rate(image: np.ndarray) -> float:
    return float((image > 0).mean())


def class_maps(seed: int, label: int, size: int, points: int) -> np.ndarray:
    """The IFS of class `label`: the first draw of its own generator whose image fills at least
    MIN_FILL of the picture."""
    rng = np.random.default_rng([seed, label, 0])
    while True:
        maps = sample_ifs(rng)
        image = render(chaos_game(maps[None], rng, 1, points), size)[0]
        if fill_rate(image) >= MIN_FILL:
            return maps


def class_images(seed: int, label: int, count: int, size: int = 16, points: int = 1500,
                 jitter: float = 0.05) -> np.ndarray:  # fmt: skip
    """(count, size, size, 3) uint8 images of class `label`: its maps with every coefficient
    jittered (normal, std `jitter`, per image), a random border, flips, 90-degree rotations and
    a random colour tint."""
    maps = class_maps(seed, label, size, points)
    rng = np.random.default_rng([seed, label, 1])
    jittered = contract(maps[None] + rng.normal(0.0, jitter, size=(count, *maps.shape)))
    grey = render(chaos_game(jittered, rng, count, points), size, rng.uniform(0.0, 0.15, count))
    turns, flips = rng.integers(0, 4, count), rng.random(count) < 0.5
    grey = np.stack(
        [np.rot90(g[:, ::-1] if f else g, t) for g, t, f in zip(grey, turns, flips, strict=True)]
    )
    tint = rng.uniform(0.4, 1.0, size=(count, 1, 1, 3))
    return np.round(grey[..., None] * tint * 255).astype(np.uint8)


def fractal_dataset(seed: int, classes: int, per_class: int, size: int = 16,
                    points: int = 1500) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(images (classes * per_class, size, size, 3) uint8, labels int64), class by class."""
    images = np.concatenate(
        [class_images(seed, c, per_class, size, points) for c in range(classes)]
    )
    labels = np.repeat(np.arange(classes, dtype=np.int64), per_class)
    return images, labels
