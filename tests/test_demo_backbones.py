"""benchmarks/demo_backbones.py's decision (issue 26): the pretrained demo backbone becomes the
default only with ≥ 3 points on digits' `none`, intervals apart, and depths that differ by task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import module_from_path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "demo_backbones.py"
demo_backbones = module_from_path(SCRIPT, "demo_backbones")
RANDOM, PRETRAINED = demo_backbones.PRESETS.values()


def table(random_none, pretrained_none, pretrained_ks) -> list[dict]:
    rows = []
    for backbone, none in ((RANDOM, random_none), (PRETRAINED, pretrained_none)):
        for task in demo_backbones.TASKS.split(","):
            ks = pretrained_ks[task] if backbone == PRETRAINED else [12, 12, 12]
            rows.append({"task": task, "backbone": backbone, "none": np.array(none, float),
                         "sls k": ks, "best k": ks})  # fmt: skip
    return rows


DIFFERENT = {"digits": [4, 4, 5], "gen_shape_loc": [8, 8, 8], "gen_shape_ori": [6, 6, 6],
             "gen_count": [4, 4, 4]}  # fmt: skip
SAME = dict.fromkeys(DIFFERENT, [6, 6, 6])


@pytest.mark.parametrize(
    ("random_none", "pretrained_none", "ks", "adopted"),
    [
        ([80, 81, 82], [90, 91, 92], DIFFERENT, True),
        ([80, 81, 82], [82.5, 83.5, 84.5], DIFFERENT, False),  # +2.5 points: under 3
        ([80, 81, 82], [90, 91, 92], SAME, False),  # one depth for every task
        ([70, 81, 92], [76, 84, 99], DIFFERENT, False),  # +5.3 points, intervals overlap
    ],
)
def test_the_decision_rule(random_none, pretrained_none, ks, adopted):
    said = demo_backbones.decision(table(random_none, pretrained_none, ks))
    assert said.splitlines()[-1].startswith(
        "decision: adopt" if adopted else "decision: keep random init"
    )
