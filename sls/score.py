"""Class-separability scores of an embedding, computed against the true labels."""

from __future__ import annotations

import numpy as np

from bench.errors import UserError

HIGHER_IS_BETTER = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}


def score(embedding: np.ndarray, labels: np.ndarray, metric: str = "silhouette") -> float:
    """Score how well `labels` separate in `embedding` (Euclidean, all points)."""
    from sklearn import metrics

    if metric not in HIGHER_IS_BETTER:
        raise UserError(f"unknown metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}")
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise UserError(
            f"{metric} is undefined with a single class in the calibration labels "
            f"(only class {classes.tolist()} among {len(labels)} samples); "
            "the calibration split needs at least two classes"
        )
    if len(classes) >= len(labels):
        raise UserError(
            f"{metric} is undefined when every sample is its own class "
            f"({len(labels)} samples, {len(classes)} classes)"
        )
    fn = {
        "silhouette": metrics.silhouette_score,
        "calinski_harabasz": metrics.calinski_harabasz_score,
        "davies_bouldin": metrics.davies_bouldin_score,
    }[metric]
    return float(fn(embedding, labels))


def oriented_score(value: float, metric: str) -> float:
    """Return `value` so that higher means better separated, as the selection rule assumes.

    Davies-Bouldin is lower-is-better, so it is negated. Note that a negated Davies-Bouldin is
    always <= 0, so the rule's "SC_N <= 0 keeps all blocks" case always applies to it unchanged:
    to use it for a real decision, a caller has to shift or invert it first.
    """
    if metric not in HIGHER_IS_BETTER:
        raise UserError(f"unknown metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}")
    return value if HIGHER_IS_BETTER[metric] else -value
