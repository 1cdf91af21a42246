"""2-D embeddings of per-block features, the input of the SLS separability score.

The reference is scikit-learn t-SNE with PCA initialisation and seed 0, each axis then min-max
scaled to [0, 1] so that the silhouette does not depend on the arbitrary t-SNE scale.
"""

from __future__ import annotations

import numpy as np

from bench.errors import UserError

EMBED_METHODS = ("tsne", "opentsne", "pca", "none")
TSNE_PERPLEXITY = 30.0  # the default of both t-SNE implementations; t-SNE needs more samples


def embed(
    features: np.ndarray, method: str = "tsne", seed: int = 0, n_jobs: int = -1
) -> np.ndarray:
    """Embed (N, D) features with `method`; "none" returns the features unchanged.

    `n_jobs` is used by openTSNE only (-1 = all cores); scikit-learn t-SNE keeps its defaults.
    """
    if method not in EMBED_METHODS:
        raise UserError(f"unknown embedding {method!r}; valid: {', '.join(EMBED_METHODS)}")
    x = np.asarray(features)
    if x.ndim != 2:
        raise UserError(f"features must be a 2-D (samples, dims) array, got shape {x.shape}")
    if method == "none":
        return features
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)
    if method in ("tsne", "opentsne") and x.shape[0] <= TSNE_PERPLEXITY:
        raise UserError(
            f"t-SNE needs more than {TSNE_PERPLEXITY:g} samples (its perplexity), "
            f"got {x.shape[0]}; use more calibration images or --embedding pca"
        )
    if method == "tsne":
        from sklearn.manifold import TSNE

        y = TSNE(n_components=2, init="pca", random_state=seed).fit_transform(x)
    elif method == "opentsne":
        from openTSNE import TSNE as OpenTSNE

        y = OpenTSNE(n_components=2, initialization="pca", random_state=seed, n_jobs=n_jobs).fit(x)
    else:
        from sklearn.decomposition import PCA

        y = PCA(n_components=2, random_state=seed).fit_transform(x)
    return minmax_scale_axes(np.asarray(y, dtype=np.float64))


def minmax_scale_axes(y: np.ndarray) -> np.ndarray:
    """Scale each column to [0, 1]; a constant column becomes 0 instead of dividing by zero."""
    lo = y.min(axis=0)
    span = y.max(axis=0) - lo
    return (y - lo) / np.where(span > 0, span, 1.0)
