"""VTAB-1k label and image rules: pure functions of one tfds example (a dict of numpy values).

The rules follow Google's task_adaptation (the code that defines VTAB). A task names its rules in
`TaskSpec.label_rule` / `TaskSpec.image_rule`; `LABEL_RULES` and `IMAGE_RULES` map the names to
the functions. Thresholded rules use task_adaptation's convention: the label is the largest i
with `thresholds[i] < d` (strictly), so a value equal to a threshold falls in the lower class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Example = Mapping[str, Any]

CLEVR_DIST_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
KITTI_DIST_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)
KITTI_NO_VEHICLE_DISTANCE = 1000.0  # appended so that "no vehicle" lands in the last class
KITTI_VEHICLE_TYPES = 3  # kitti `type` 0, 1, 2: Car, Van, Truck
DSPRITES_ORIENTATIONS, DSPRITES_ORI_CLASSES = 40, 16
DSPRITES_POSITIONS, DSPRITES_LOC_CLASSES = 32, 16


def threshold_class(value: float, thresholds: Sequence[float]) -> int:
    """The largest i with thresholds[i] < value; ValueError when value is at or below them all."""
    below = [i for i, t in enumerate(thresholds) if t < value]
    if not below:
        raise ValueError(f"value {value} is not above the lowest threshold {thresholds[0]}")
    return below[-1]


def label(example: Example) -> int:
    """The tfds `label` as is."""
    return int(example["label"])


def clevr_count(example: Example) -> int:
    """Number of objects in the scene - 3 (scenes hold 3..10 objects -> 8 classes)."""
    return len(np.asarray(example["objects"]["size"])) - 3


def clevr_dist(example: Example) -> int:
    """Depth of the closest object (pixel_coords[:, 2]) binned by CLEVR_DIST_THRESHOLDS."""
    depth = np.asarray(example["objects"]["pixel_coords"], dtype=np.float64).reshape(-1, 3)[:, 2]
    if depth.size == 0:
        raise ValueError("clevr scene without objects: no distance to bin")
    return threshold_class(float(depth.min()), CLEVR_DIST_THRESHOLDS)


def kitti_dist(example: Example) -> int:
    """Distance of the closest vehicle: 0: <=8 m, 1: (8, 20], 2: (20, 999], 3: no vehicle."""
    objects = example["objects"]
    types = np.asarray(objects["type"]).reshape(-1)
    depth = np.asarray(objects["location"], dtype=np.float64).reshape(-1, 3)[:, 2]
    if len(types) != len(depth):
        raise ValueError(f"kitti objects disagree: {len(types)} types, {len(depth)} locations")
    vehicle_depth = depth[types < KITTI_VEHICLE_TYPES]
    closest = min([*vehicle_depth.tolist(), KITTI_NO_VEHICLE_DISTANCE])
    return threshold_class(closest, KITTI_DIST_THRESHOLDS)


def dsprites_loc(example: Example) -> int:
    """x position bin 0..31 grouped in pairs -> 16 classes."""
    return int(example["label_x_position"]) * DSPRITES_LOC_CLASSES // DSPRITES_POSITIONS


def dsprites_ori(example: Example) -> int:
    """Orientation bin 0..39 -> 16 classes.

    task_adaptation computes floor(label_orientation / (40 / 16)) on the *integer* bin tfds
    stores in `label_orientation` (not the radians in `value_orientation`); floor(k / 2.5) equals
    k * 16 // 40 for every integer k, which avoids float rounding.
    """
    return int(example["label_orientation"]) * DSPRITES_ORI_CLASSES // DSPRITES_ORIENTATIONS


def smallnorb_azi(example: Example) -> int:
    """Raw azimuth bin (18 classes)."""
    return int(example["label_azimuth"])


def smallnorb_ele(example: Example) -> int:
    """Raw elevation bin (9 classes)."""
    return int(example["label_elevation"])


LABEL_RULES: dict[str, Callable[[Example], int]] = {
    "label": label,
    "clevr_count": clevr_count,
    "clevr_dist": clevr_dist,
    "kitti_dist": kitti_dist,
    "dsprites_loc": dsprites_loc,
    "dsprites_ori": dsprites_ori,
    "smallnorb_azi": smallnorb_azi,
    "smallnorb_ele": smallnorb_ele,
}


def as_is(image: np.ndarray) -> np.ndarray:
    """The image as tfds decodes it (HxWx3, or HxWx1 that the cache tiles to RGB)."""
    return np.asarray(image, dtype=np.uint8)


def binary_to_255(image: np.ndarray) -> np.ndarray:
    """dsprites stores pixels in {0, 1}: scale to {0, 255} (task_adaptation multiplies by 255).

    Written as `image > 0` so a value outside {0, 1} cannot wrap around in uint8.
    """
    return np.where(np.asarray(image) > 0, 255, 0).astype(np.uint8)


IMAGE_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as_is": as_is,
    "binary_to_255": binary_to_255,
}
