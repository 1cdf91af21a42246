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
    """Return `value` so that higher means better separated and positive, as the rule assumes.

    Davies-Bouldin is lower-is-better and non-negative, so it is inverted (1 / DB), not negated:
    a negated DB is always <= 0 and would always trip the rule's "SC_N <= 0 keeps all blocks"
    case, whereas 1 / DB keeps the threshold `alpha * score_N` a ratio, as for the other metrics.
    This orientation is this suite's choice; the SLS authors only report looking at the metric.
    """
    if metric not in HIGHER_IS_BETTER:
        raise UserError(f"unknown metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}")
    if HIGHER_IS_BETTER[metric]:
        return value
    return 1.0 / max(value, 1e-12)
