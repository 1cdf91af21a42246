"""SLS: Straightforward Layer-wise Pruning (Han & Tang, ECCV 2024)."""

from sls.embed import embed
from sls.score import score
from sls.select import DepthDecision, decide_depth, select_depth

__all__ = ["DepthDecision", "decide_depth", "embed", "score", "select_depth"]
