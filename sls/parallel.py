"""SLS's scan with the embeddings of several blocks computed at once, in worker processes.

The rule stays `sls.select._scan`'s: it asks for SC_N, SC_N-1, ... one at a time, and a pool
keeps the next `workers` blocks of that top-down order in flight, so the decision and its
`scores` are the sequential scan's; only the wall time differs. Blocks computed ahead of a stop
are discarded, and the pool is terminated as soon as the rule has decided.

Workers are spawned and import only this module's dependencies (numpy, scikit-learn), not torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from multiprocessing import get_context
from multiprocessing.pool import AsyncResult, Pool

import numpy as np

from sls.embed import embed
from sls.score import LABEL_METRICS, oriented_score, score
from sls.select import DepthDecision, decide_depth


def block_score(
    features: np.ndarray, labels: np.ndarray, embedding: str, metric: str, seed: int
) -> float:
    """SC_l of one block's (N, D) features, oriented so that higher is better; the label
    metrics score the features themselves, the others their `embedding`."""
    points = features if metric in LABEL_METRICS else embed(features, embedding, seed=seed)
    return oriented_score(score(points, labels, metric), metric)


def sample_score(
    sample: tuple[np.ndarray, np.ndarray], embedding: str, metric: str, seed: int
) -> float:
    """`block_score` of one block's (features, labels) sample (`sls.calibration`)."""
    features, labels = sample
    return block_score(features, labels, embedding, metric, seed)


def decide_depth_parallel(
    score_fn: Callable[[np.ndarray], float],
    features: Sequence[np.ndarray],
    alpha: float = 0.3,
    min_blocks: int = 1,
    lazy: bool = True,
    workers: int = 2,
    threads: int = 1,
) -> DepthDecision:
    """`decide_depth` with score_fn(features[l - 1]) computed in `workers` processes of
    `threads` OpenMP threads each. score_fn must be picklable (module-level, or a
    functools.partial of one, such as `block_score`)."""
    # Leaving the `with` terminates the pool: no speculative embedding outlives the decision.
    with get_context("spawn").Pool(workers, _limit_threads, (threads,)) as pool:
        scores = TopDownScores(pool, score_fn, features, ahead=workers)
        return decide_depth(scores, len(features), alpha, min_blocks, lazy)


class TopDownScores:
    """score_fn for `decide_depth`: block l's score from the pool, with blocks N, N-1, ...
    submitted in that order, at most `ahead` of them submitted and not yet asked for."""

    def __init__(
        self,
        pool: Pool,
        score_fn: Callable[[np.ndarray], float],
        features: Sequence[np.ndarray],
        ahead: int,
    ):
        self.pool, self.score_fn, self.features, self.ahead = pool, score_fn, features, ahead
        self.next_block = len(features)
        self.in_flight: dict[int, AsyncResult] = {}

    def __call__(self, block: int) -> float:
        while self.next_block >= 1 and len(self.in_flight) < self.ahead:
            self.submit(self.next_block)
            self.next_block -= 1
        if block not in self.in_flight:
            raise ValueError(f"block {block} asked for out of the top-down order")
        return self.in_flight.pop(block).get()  # re-raises a worker's exception as it was

    def submit(self, block: int) -> None:
        args = (self.features[block - 1],)
        self.in_flight[block] = self.pool.apply_async(self.score_fn, args)


def _limit_threads(threads: int) -> None:
    """Pool initializer: cap scikit-learn's OpenMP threads (t-SNE's gradient, the costly part).
    BLAS keeps its default, the thread count the sequential scan runs with: t-SNE's result
    changes with OpenBLAS's thread count (silhouette 0.89745 with 1, 0.89759 with 2 on 1000
    x 64 features), not with OpenMP's."""
    import sklearn.manifold  # noqa: F401  (threadpoolctl only sees libraries already loaded)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="openmp")
