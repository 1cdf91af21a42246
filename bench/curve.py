"""The sweep behind `make curve`: the accuracy–depth curve's cells.

`make curve TASK=<task>` retrains the truncated model (`drop_last@keep:k`, the first k blocks,
the common retraining recipe) at every k, as cells of a sweep beside `sls` on the same transfer:
resumable, and the transfer is trained once. `make curve TUNE=1` runs the same curve in tuning
mode: the transfer trains on train800 and every point is evaluated on val200, never on test.
The curve's table and plot are `bench.tables.depth_curve` and `bench.tables.sls_regret`.
"""

from __future__ import annotations

import copy

from bench.config import RunConfig
from bench.errors import UserError

CURVE_METHOD = "drop_last"
TUNE_SPLITS = ("train800", "val200")  # train split, evaluation split


def parse_keep(text: str | None, num_blocks: int) -> list[int]:
    """`1-12`, `2,4,6` or `1-3,12` -> sorted depths; None -> 1..N."""
    if not text:
        return list(range(1, num_blocks + 1))
    depths: set[int] = set()
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            depths.update(range(int(low), int(high) + 1) if dash else [int(low)])
    except ValueError:
        raise UserError(
            f"KEEP={text!r}: use a range or list of depths, e.g. 1-12 or 2,4,6"
        ) from None
    outside = sorted(k for k in depths if not 1 <= k <= num_blocks)
    if outside or not depths:
        raise UserError(f"KEEP={text!r}: depths must lie in 1..{num_blocks}, got {outside}")
    return sorted(depths)


def curve_config(config: RunConfig, depths: list[int], tune: bool) -> RunConfig:
    """The sweep of one curve: a truncated-and-retrained point per depth, and `sls` beside them
    (its k is what the curve is read against); in tuning mode, the points only, on val200."""
    curve = copy.deepcopy(config)
    points = [f"{CURVE_METHOD}@keep:{k}" for k in depths]
    if tune:
        curve.data.train_split, curve.data.eval_split = TUNE_SPLITS
        curve.methods = points
    else:
        curve.methods = ["sls", *points]
    return curve
