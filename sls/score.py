"""Per-block scores of SLS's scan: class separability of an embedding, or held-out accuracy.

Two kinds, both computed against the true labels of the calibration images:
- separability (`silhouette`, the paper's; `calinski_harabasz`, `davies_bouldin`): computed on
  the 2-D embedding of *all* the calibration features, the same points the labels belong to;
- held-out accuracy (`probe`, `knn`; `LABEL_METRICS`): computed on the block's features
  themselves, no embedding. A classifier is fitted on one part of the calibration images and
  scored on the other (`holdout_split`), so the labels it is scored on were not fitted. A linear
  probe's accuracy is the quantity the t-SNE silhouette stands in for: the SLS paper's Fig. 2
  relates the two.
"""

from __future__ import annotations

import numpy as np

from bench.errors import UserError

HIGHER_IS_BETTER = {
    "silhouette": True,
    "calinski_harabasz": True,
    "davies_bouldin": False,
    "probe": True,
    "knn": True,
}
LABEL_METRICS = ("probe", "knn")  # scored on the features with a held-out split, not an embedding
HOLDOUT_EVERY = 5  # one calibration image in 5 is held out: 200 of train800val200's 1000
HOLDOUT_SEED = 0
PROBE_MAX_ITER = 1000
KNN_NEIGHBORS = 10
DESCRIPTIONS = {
    "silhouette": "silhouette of the embedding against the labels (higher: better separated)",
    "calinski_harabasz": "Calinski-Harabasz index of the embedding (higher: better separated)",
    "davies_bouldin": (
        "1 / Davies-Bouldin index of the embedding: DB is lower-is-better, so it is inverted "
        "(not negated) to make higher better and keep the threshold alpha * score_N a ratio"
    ),
    "probe": (
        "held-out accuracy of a logistic-regression probe (scikit-learn, features standardised) "
        "on the block's features: fitted on a seeded, stratified 4/5 of the calibration images, "
        "scored on the other 1/5"
    ),
    "knn": (
        f"held-out accuracy of a {KNN_NEIGHBORS}-nearest-neighbour classifier (scikit-learn, "
        "features standardised) on the block's features, same split as the probe"
    ),
}


def score_name(metric: str) -> str:
    """What the scan's scores are: the metric's name, `1/davies_bouldin` where it is inverted."""
    _check(metric)
    return metric if HIGHER_IS_BETTER[metric] else f"1/{metric}"


def describe(metric: str) -> str:
    _check(metric)
    return DESCRIPTIONS[metric]


def score(embedding: np.ndarray, labels: np.ndarray, metric: str = "silhouette") -> float:
    """Score how well `labels` separate in `embedding` (Euclidean, all points), or, for the
    label metrics, the held-out accuracy of a classifier on `embedding` (the raw features)."""
    from sklearn import metrics

    _check(metric)
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
    if metric in LABEL_METRICS:
        return heldout_accuracy(embedding, labels, metric)
    fn = {
        "silhouette": metrics.silhouette_score,
        "calinski_harabasz": metrics.calinski_harabasz_score,
        "davies_bouldin": metrics.davies_bouldin_score,
    }[metric]
    return float(fn(embedding, labels))


def holdout_split(labels: np.ndarray, seed: int = HOLDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(fit indices, held-out indices): a seeded, stratified partition, 1 in `HOLDOUT_EVERY`
    held out (800 / 200 of 1000 calibration images).

    Why not VTAB's own train800 / val200: the pruner sees the calibration images as one loader
    without split names. The first 800 are train800 for the digits source, for tfds
    (`train[:800]+<val200>`) and for folders written by `make prepare`, but not necessarily for
    list files from elsewhere, nor when `data.train_split` is not train800val200. So the images
    are ordered by class (shuffled within each class by `seed`) and every HOLDOUT_EVERY-th is held
    out: each class gives about a fifth of its images, and any number of classes works (sun397's
    397 classes in 1000 images defeat scikit-learn's stratified splitters).
    """
    labels = np.asarray(labels)
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    by_class = shuffled[np.argsort(labels[shuffled], kind="stable")]
    held = np.zeros(len(labels), dtype=bool)
    held[by_class[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def heldout_accuracy(features: np.ndarray, labels: np.ndarray, metric: str = "probe") -> float:
    """Accuracy on the held-out part of a classifier fitted on the rest (see `holdout_split`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.asarray(features, dtype=np.float64), np.asarray(labels)
    fit, held = holdout_split(y)
    if len(held) == 0 or len(np.unique(y[fit])) < 2:
        raise UserError(
            f"{metric} needs at least {HOLDOUT_EVERY} calibration images and two classes among "
            f"those it fits on; got {len(y)} images"
        )
    if metric == "probe":
        classifier = LogisticRegression(max_iter=PROBE_MAX_ITER)
    elif metric == "knn":
        classifier = KNeighborsClassifier(n_neighbors=min(KNN_NEIGHBORS, len(fit)))
    else:
        raise UserError(f"{metric!r} is not a held-out accuracy; valid: {', '.join(LABEL_METRICS)}")
    model = make_pipeline(StandardScaler(), classifier).fit(x[fit], y[fit])
    return float(model.score(x[held], y[held]))


def oriented_score(value: float, metric: str) -> float:
    """Return `value` so that higher means better separated and positive, as the rule assumes.

    Davies-Bouldin is lower-is-better and non-negative, so it is inverted (1 / DB), not negated:
    a negated DB is always <= 0 and would always trip the rule's "SC_N <= 0 keeps all blocks"
    case, whereas 1 / DB keeps the threshold `alpha * score_N` a ratio, as for the other metrics.
    The scan's scores, and so `sls/score/block_NN` and `decision.json`, hold 1 / DB (`score_name`
    says so). This orientation is this suite's choice; the SLS authors only report looking at the
    metric. Accuracies are in [0, 1] and above zero whenever anything is right, so the rule's
    ratio threshold applies to them unchanged; but they start at chance (1 / classes), not near
    zero, so the same alpha keeps far fewer blocks than with the silhouette.
    """
    _check(metric)
    if HIGHER_IS_BETTER[metric]:
        return value
    return 1.0 / max(value, 1e-12)


def _check(metric: str) -> None:
    if metric not in HIGHER_IS_BETTER:
        raise UserError(f"unknown metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}")
