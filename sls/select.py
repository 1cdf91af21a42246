"""The SLS depth rule: how many leading blocks to keep, from per-block separability scores.

Rule (spec step 5): scan l = N, N-1, ..., 1 with T = 0 at l = N and T = alpha * SC_N below it;
keep k = l while SC_l >= T and stop at the *first* failure (not "the smallest l that passes").
Scores must be higher-is-better (see `sls.score.oriented_score`).

Decisions on cases the paper leaves open:
- SC_N <= 0: all N blocks are kept; reason "sc_n_nonpositive", threshold None. This is the
  project's choice, and for SC_N = 0 it differs from the authors' code. There, SC_N < 0 fails
  the first test (T = 0 at l = N), no index is written and the code crashes later. SC_N = 0
  exactly passes it (0 >= 0), and the scan goes on with T = alpha * 0 = 0, keeping blocks down
  to the first negative score. A zero top score means no separability that a ratio threshold
  could scale, so this suite treats 0 like a negative score rather than scanning on with T = 0.
- The result never goes below `min_blocks` (1 <= min_blocks <= N); when the floor raises k the
  reason is "floor" and `floor_hit` is True.
- Otherwise the reason is "threshold" (the scan stopped at a failing block) or "all_pass" (every
  block passed, k = 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from bench.errors import UserError

REASONS = ("threshold", "sc_n_nonpositive", "floor", "all_pass")


@dataclass
class DepthDecision:
    """The outcome of the rule plus everything needed to audit it (near-threshold k can flip)."""

    k: int
    num_blocks: int
    threshold: float | None
    scores: dict[int, float] = field(default_factory=dict)  # 1-based block -> score, computed only
    reason: str = "threshold"
    floor_hit: bool = False

    def to_dict(self) -> dict:
        """JSON-serialisable form; score keys become strings as JSON requires."""
        d = asdict(self)
        d["scores"] = {str(b): float(s) for b, s in sorted(self.scores.items())}
        return d


def _scan(
    score_fn: Callable[[int], float], num_blocks: int, alpha: float, min_blocks: int
) -> DepthDecision:
    """Run the top-down first-failure scan, calling score_fn(l) only for visited blocks."""
    if num_blocks < 1:
        raise ValueError("need at least one block")
    if not 1 <= min_blocks <= num_blocks:
        raise UserError(f"min_blocks must be in 1..{num_blocks}, got {min_blocks}")
    scores: dict[int, float] = {}

    def get(block: int) -> float:
        value = float(score_fn(block))
        if not math.isfinite(value):
            raise ValueError(f"score of block {block} is not finite: {value}")
        scores[block] = value
        return value

    sc_n = get(num_blocks)
    if sc_n <= 0:
        return DepthDecision(num_blocks, num_blocks, None, scores, "sc_n_nonpositive")
    threshold = alpha * sc_n
    k, reason = 1, "all_pass"
    for block in range(num_blocks - 1, 0, -1):
        if get(block) < threshold:
            k, reason = block + 1, "threshold"
            break
    if k < min_blocks:
        return DepthDecision(min_blocks, num_blocks, threshold, scores, "floor", floor_hit=True)
    return DepthDecision(k, num_blocks, threshold, scores, reason)


def select_depth(scores: Sequence[float], alpha: float = 0.3, min_blocks: int = 1) -> int:
    """Blocks to keep given all per-block scores (scores[0] is block 1); see the module rules."""
    return _scan(lambda block: scores[block - 1], len(scores), alpha, min_blocks).k


def decide_depth(
    score_fn: Callable[[int], float],
    num_blocks: int,
    alpha: float = 0.3,
    min_blocks: int = 1,
    lazy: bool = True,
) -> DepthDecision:
    """Apply the rule with score_fn(l) (1-based) computing SC_l on demand.

    lazy=True computes SC_N, then N-1, N-2, ... and stops at the first failure, which is exact
    and skips the embeddings of unvisited blocks. lazy=False computes every block first (for
    plots); the decision is the same, only `scores` holds more entries.
    """
    if lazy:
        return _scan(score_fn, num_blocks, alpha, min_blocks)
    all_scores = {block: float(score_fn(block)) for block in range(num_blocks, 0, -1)}
    decision = _scan(all_scores.__getitem__, num_blocks, alpha, min_blocks)
    decision.scores = dict(sorted(all_scores.items()))
    return decision
