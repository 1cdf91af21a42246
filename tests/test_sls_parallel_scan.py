"""SLS's scan with blocks embedded in worker processes: the sequential scan's decision, exactly.

Real scikit-learn t-SNE on small synthetic features; the sequential reference is `decide_depth`
with the same score computed in this process (memoised: each block's t-SNE runs once here).
"""

from __future__ import annotations

import multiprocessing
import time
from functools import cache, partial

import numpy as np
import pytest

from bench.errors import UserError
from sls.parallel import block_score, decide_depth_parallel
from sls.select import decide_depth

pytestmark = pytest.mark.slow  # every test spawns a pool of workers

# Class separation per block (block 1 first): it rises to block 10 and falls to the top, with a
# dip at block 8. Silhouettes: SC_12 ~0.70, T = 0.3 * SC_12 ~0.21, blocks 12..9 pass, block 8
# (~-0.04) fails, so k = 9; block 7 (~0.28) would pass again.
SEPARATION = [2, 3, 4, 5, 5, 4, 2, 0.5, 4, 6, 5, 4]
SAMPLES, DIMS, CLASSES = 100, 16, 3


def _features(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(SAMPLES) % CLASSES
    means = rng.normal(size=(CLASSES, DIMS))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    features = [
        (s * means[labels] + rng.normal(size=(SAMPLES, DIMS))).astype(np.float32)
        for s in SEPARATION
    ]
    return features, labels


FEATURES, LABELS = _features()
LABEL_SETS = {"classes": LABELS, "shuffled": np.random.default_rng(1).permutation(LABELS)}

SCENARIOS = {  # name: (labels, decide_depth options, reason, k, blocks scored)
    "threshold": ("classes", {}, "threshold", 9, range(8, 13)),
    "sc_n_nonpositive": ("shuffled", {}, "sc_n_nonpositive", 12, range(12, 13)),  # SC_12 < 0
    "floor": ("classes", {"min_blocks": 11}, "floor", 11, range(8, 13)),
    "full_curve": ("classes", {"lazy": False}, "threshold", 9, range(1, 13)),
}


@cache
def _sequential_score(labels: str, block: int) -> float:
    return block_score(FEATURES[block - 1], LABEL_SETS[labels], "tsne", "silhouette", 0)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_parallel_scan_decides_exactly_as_the_sequential_one(scenario, workers):
    labels, options, reason, k, scored = SCENARIOS[scenario]
    expected = decide_depth(partial(_sequential_score, labels), len(FEATURES), **options)
    score_fn = partial(block_score, labels=LABEL_SETS[labels], embedding="tsne",
                       metric="silhouette", seed=0)  # fmt: skip
    decision = decide_depth_parallel(score_fn, FEATURES, workers=workers, **options)
    assert decision == expected  # k, threshold, reason, floor_hit and every score, bit for bit
    assert (decision.reason, decision.k, decision.floor_hit) == (reason, k, reason == "floor")
    assert sorted(decision.scores) == list(scored)  # nothing computed past the stop leaks in


def _encoded_score(features: np.ndarray) -> float:
    """Score and delay written in the features: (score, seconds to sleep first)."""
    value, seconds = features[0]
    time.sleep(seconds)
    return float(value)


def _encoded(scores: list[float], seconds: list[float]) -> list[np.ndarray]:
    return [np.array([[s, t]]) for s, t in zip(scores, seconds, strict=True)]


def test_blocks_computed_ahead_of_the_stop_are_cancelled_when_the_rule_decides():
    # Block 10 fails; blocks 9 and 8, submitted ahead with W = 3, would take a minute each.
    scores = [1.0] * 9 + [0.1, 1.0, 1.0]
    features = _encoded(scores, [60.0] * 9 + [0.0] * 3)
    start = time.perf_counter()
    decision = decide_depth_parallel(_encoded_score, features, workers=3)
    assert time.perf_counter() - start < 30
    assert (decision.k, decision.scores) == (11, {12: 1.0, 11: 1.0, 10: 0.1})
    assert multiprocessing.active_children() == []  # the workers are gone, not left running


def test_scores_arrive_in_the_rules_order_whatever_order_the_workers_finish():
    # Block 2 is back while the rule waits for block 4, and block 3 after it: SC_3 must still
    # be block 3's score, not the first one back.
    scores = [0.5, 0.9, 0.2, 1.0]
    features = _encoded(scores, [0.0, 0.0, 5.0, 3.0])
    decision = decide_depth_parallel(_encoded_score, features, alpha=0.3, workers=3)
    assert decision == decide_depth(lambda block: scores[block - 1], 4, alpha=0.3)
    assert (decision.k, sorted(decision.scores)) == (4, [3, 4])


def test_a_workers_error_reaches_the_caller_as_the_sequential_scan_raises_it():
    few = [f[:20] for f in FEATURES]  # t-SNE needs more samples than its perplexity
    score_fn = partial(block_score, labels=LABELS[:20], embedding="tsne", metric="silhouette",
                       seed=0)  # fmt: skip
    with pytest.raises(UserError) as sequential:
        decide_depth(lambda block: score_fn(few[block - 1]), len(few))
    with pytest.raises(UserError) as parallel:
        decide_depth_parallel(score_fn, few, workers=2)
    assert str(parallel.value) == str(sequential.value)
    nan = _encoded([float("nan")], [0.0])
    with pytest.raises(ValueError, match="score of block 1 is not finite"):
        decide_depth_parallel(_encoded_score, nan, workers=2)
