"""Label and image rules on hand-made tfds examples with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.data.labels import (
    IMAGE_RULES,
    LABEL_RULES,
    as_is,
    binary_to_255,
    clevr_count,
    clevr_dist,
    dsprites_loc,
    dsprites_ori,
    kitti_dist,
    label,
    smallnorb_azi,
    smallnorb_ele,
    threshold_class,
)
from bench.tasks import VTAB_TASKS


def clevr(depths: list[float]) -> dict:
    """A clevr example whose objects sit at the given depths (pixel_coords[:, 2])."""
    n = len(depths)
    coords = np.array([[10.0 * i, 20.0, d] for i, d in enumerate(depths)], np.float32)
    return {
        "objects": {
            "pixel_coords": coords.reshape(n, 3),
            "size": np.zeros(n, np.int64),
            "shape": np.zeros(n, np.int64),
            "3d_coords": np.zeros((n, 3), np.float32),
        }
    }


def kitti(objects: list[tuple[int, float]]) -> dict:
    """A kitti example with (type, z distance in m) objects; types: 0 Car ... 3 Pedestrian."""
    types = np.array([t for t, _ in objects], np.int64)
    location = np.array([[1.0, 1.5, z] for _, z in objects], np.float32).reshape(-1, 3)
    return {"objects": {"type": types, "location": location}}


def test_every_rule_a_task_names_exists():
    assert {task.label_rule for task in VTAB_TASKS} <= set(LABEL_RULES)
    assert {task.image_rule for task in VTAB_TASKS} <= set(IMAGE_RULES)


def test_plain_label_is_an_int():
    value = label({"label": np.int64(42)})
    assert value == 42 and type(value) is int


@pytest.mark.parametrize(("objects", "expected"), [(3, 0), (4, 1), (10, 7)])
def test_clevr_count_is_objects_minus_three(objects, expected):
    assert clevr_count(clevr([10.0] * objects)) == expected


@pytest.mark.parametrize(
    ("depth", "expected"),
    [
        (0.5, 0),
        (7.99, 0),
        (8.0, 0),  # a value on a threshold stays in the lower class
        (8.01, 1),
        (8.5, 1),
        (8.51, 2),
        (9.0, 2),
        (9.25, 3),
        (9.75, 4),
        (10.0, 4),
        (10.01, 5),
        (99.0, 5),
    ],
)
def test_clevr_dist_boundaries(depth, expected):
    assert clevr_dist(clevr([depth])) == expected


def test_clevr_dist_uses_the_closest_object():
    assert clevr_dist(clevr([12.0, 8.7, 15.0])) == 2


def test_clevr_dist_rejects_nonpositive_depth():
    with pytest.raises(ValueError, match="lowest threshold"):
        clevr_dist(clevr([0.0]))


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([], 3),  # no object at all
        ([(3, 5.0), (4, 2.0), (5, 7.0)], 3),  # pedestrians, person sitting, cyclist only
        ([(0, 8.0)], 0),  # car at exactly 8 m: <= 8
        ([(0, 8.1)], 1),
        ([(1, 20.0)], 1),  # van at exactly 20 m
        ([(2, 20.5)], 2),  # truck
        ([(0, 998.0)], 2),
        ([(3, 2.0), (0, 30.0)], 2),  # the close pedestrian does not count
        ([(0, 30.0), (1, 6.0), (7, 1.0)], 0),  # closest vehicle wins; Misc (7) ignored
    ],
)
def test_kitti_closest_vehicle(objects, expected):
    assert kitti_dist(kitti(objects)) == expected


def test_kitti_rejects_inconsistent_objects():
    example = kitti([(0, 5.0)])
    example["objects"]["type"] = np.array([0, 1], np.int64)
    with pytest.raises(ValueError, match="2 types, 1 locations"):
        kitti_dist(example)


@pytest.mark.parametrize(("x", "expected"), [(0, 0), (1, 0), (2, 1), (3, 1), (30, 15), (31, 15)])
def test_dsprites_loc_pairs_positions(x, expected):
    assert dsprites_loc({"label_x_position": np.int64(x)}) == expected


@pytest.mark.parametrize(
    ("bin_", "expected"), [(0, 0), (2, 0), (3, 1), (4, 1), (5, 2), (37, 14), (38, 15), (39, 15)]
)
def test_dsprites_ori_edges(bin_, expected):
    assert dsprites_ori({"label_orientation": np.int64(bin_)}) == expected


def test_dsprites_ori_is_task_adaptations_floor_of_bin_over_2_5():
    labels = [dsprites_ori({"label_orientation": k}) for k in range(40)]
    assert labels == [math.floor(k / 2.5) for k in range(40)]
    counts = np.bincount(labels)
    assert len(counts) == 16 and set(counts) == {2, 3}


def test_smallnorb_labels_are_raw():
    example = {"label_azimuth": np.int64(17), "label_elevation": np.int64(8)}
    assert (smallnorb_azi(example), smallnorb_ele(example)) == (17, 8)


def test_threshold_class_is_strict():
    assert threshold_class(8.0, (0, 8, 20)) == 0
    assert threshold_class(8.0001, (0, 8, 20)) == 1
    assert threshold_class(1e6, (0, 8, 20)) == 2
    with pytest.raises(ValueError):
        threshold_class(-1.0, (0, 8, 20))


def test_binary_images_become_0_or_255():
    image = np.array([[[0], [1]], [[1], [0]]], np.uint8)
    out = binary_to_255(image)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out[..., 0].tolist() == [[0, 255], [255, 0]]


def test_other_images_pass_through():
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(as_is(image), image)
    # the cache stores uint8 whatever integer type a decoder gave
    wide = as_is(image.astype(np.int64))
    assert wide.dtype == np.uint8 and wide.tolist() == image.tolist()
