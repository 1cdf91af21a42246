"""Label rules and task-name guesses by value where mutation testing found no test."""

import numpy as np
import pytest

from bench.data.labels import kitti_dist
from bench.tasks import TASKS, VTAB_TASKS, _attribute_words, suggest_task

KNOWN = sorted({*TASKS.names(), *(alias for task in VTAB_TASKS for alias in task.aliases)})


def test_kitti_reads_the_object_types_flat_whatever_their_shape():
    objects = {
        "type": np.array([[3], [0]], np.int64),  # a pedestrian at 2 m, a car at 30 m
        "location": np.array([[1.0, 1.5, 2.0], [1.0, 1.5, 30.0]], np.float32),
    }
    assert kitti_dist({"objects": objects}) == 2


def test_attribute_words_are_what_follows_the_family_name():
    assert _attribute_words("clevr") == {
        "count": "clevr_count",
        "count_all": "clevr_count",
        "dist": "clevr_dist",
        "distance": "clevr_dist",
        "closest_object_distance": "clevr_dist",
    }


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("dsprites-lco", "dsprites_loc"),  # a dash reads as an underscore
        ("clevr_count_al", "clevr_count"),  # the attribute is all after the family's underscore
        ("cle_closest", "clevr_dist"),  # a family name 3/4 alike is that family
        ("dsprites_or", "dsprites_ori"),  # a prefix of an attribute word
        ("dsprites_xposition", "dsprites_loc"),  # the 3 closest words, not a 4th of another task
        ("gen_shp_cnt", "gen_count"),  # a two-word family's head is joined by "_"
        ("dsprites_x_p", "dsprites_loc"),  # so is a two-word attribute (a prefix of x_position)
    ],
)
def test_did_you_mean_reads_the_family_and_the_attribute(typo, expected):
    assert suggest_task(typo, KNOWN) == expected
