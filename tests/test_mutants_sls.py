"""SLS's embedding and depth rule by value where mutation testing found no test: the default
embedding (scikit-learn t-SNE, PCA init, seed 0), the dtype it embeds in, openTSNE's sample
check, the min-max scaling of an axis narrower than 1, and the record of a floor hit."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from bench.errors import UserError
from sls import decide_depth, embed, score
from sls.embed import minmax_scale_axes
from sls.score import heldout_accuracy, holdout_split, oriented_score


def _features(n: int = 40, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, 5)).astype(dtype)


def test_the_default_embedding_is_seeded_sklearn_tsne_scaled_to_the_unit_square():
    x = _features()
    expected = TSNE(n_components=2, init="pca", random_state=0).fit_transform(x)
    np.testing.assert_allclose(embed(x), minmax_scale_axes(expected.astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_features_are_embedded_in_their_own_float_dtype(dtype):
    x = _features(dtype=dtype)
    expected = PCA(n_components=2, random_state=0).fit_transform(x).astype(np.float64)
    np.testing.assert_array_equal(embed(x, "pca"), minmax_scale_axes(expected))


def test_opentsne_needs_more_samples_than_its_perplexity():
    with pytest.raises(UserError, match="t-SNE needs more than 30 samples"):
        embed(_features(30), "opentsne")


def test_an_axis_narrower_than_one_is_scaled_to_the_unit_interval():
    y = np.array([[0.0, 1.0], [0.5, 1.0], [0.25, 1.0]])
    np.testing.assert_allclose(minmax_scale_axes(y), [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]])


def test_a_floor_hit_records_the_depth_and_threshold_it_overrode():
    d = decide_depth(lambda block: 0.9, 6, alpha=0.3, min_blocks=3)
    assert (d.k, d.num_blocks, d.threshold, d.reason) == (3, 6, pytest.approx(0.27), "floor")


def test_the_holdout_is_every_fifth_image_of_a_stable_by_class_order():
    labels = np.arange(1000) % 10
    shuffled = np.random.default_rng(0).permutation(1000)
    by_class = sorted(shuffled, key=lambda i: labels[i])  # Python's sort is stable
    fit, held = holdout_split(labels)
    np.testing.assert_array_equal(held, np.sort(by_class[4::5]))
    np.testing.assert_array_equal(fit, np.setdiff1d(np.arange(1000), held))


def test_held_out_accuracy_is_a_probe_by_default():
    """Two classes 1 apart at 1e8, told apart in float64."""
    labels = np.arange(20) % 2
    features = np.stack([1e8 + labels, np.zeros(20)], axis=1)
    assert heldout_accuracy(features, labels) == 1.0
    assert heldout_accuracy(features, labels, "knn") == 1.0


def test_held_out_accuracy_needs_a_held_out_image():
    labels = np.arange(4) % 2
    with pytest.raises(UserError, match="needs at least 5 calibration images"):
        heldout_accuracy(np.eye(4), labels)


def test_an_inverted_davies_bouldin_below_one_is_above_one():
    assert oriented_score(0.5, "davies_bouldin") == 2.0
    assert oriented_score(0.0, "davies_bouldin") == pytest.approx(1e12)


def test_two_classes_are_scored_and_one_class_per_sample_is_refused():
    labels = np.arange(40) % 2
    features = np.stack([labels * 10.0, np.zeros(40)], axis=1)
    assert score(features, labels) == pytest.approx(1.0)
    assert score(features, labels, "probe") == 1.0
    with pytest.raises(UserError, match="every sample is its own class"):
        score(features[:4], np.arange(4))


class _Recorder:
    """Stands in for an embedding class: records its constructor's arguments and returns fixed
    coordinates, so the test reads exactly how `embed` configures each implementation."""

    made: list[dict] = []

    def __init__(self, **kwargs):
        _Recorder.made.append(kwargs)

    def _coordinates(self, x):
        return np.stack([np.arange(len(x)), -np.arange(len(x))], axis=1).astype(np.float32)

    fit = fit_transform = _coordinates


@pytest.mark.parametrize(
    ("method", "module", "name", "expected"),
    [
        ("tsne", "sklearn.manifold", "TSNE",
         {"n_components": 2, "init": "pca", "random_state": 7}),
        ("opentsne", "openTSNE", "TSNE",
         {"n_components": 2, "initialization": "pca", "random_state": 7, "n_jobs": 3}),
        ("pca", "sklearn.decomposition", "PCA", {"n_components": 2, "random_state": 7}),
    ],
)  # fmt: skip
def test_each_embedding_is_built_with_pca_init_the_runs_seed_and_two_components(
    monkeypatch, method, module, name, expected
):
    import importlib

    monkeypatch.setattr(importlib.import_module(module), name, _Recorder)
    _Recorder.made = []
    y = embed(_features(), method, seed=7, n_jobs=3)
    assert _Recorder.made == [expected]
    np.testing.assert_allclose(y[:, 0], np.arange(40) / 39)
    np.testing.assert_allclose(y[:, 1], 1 - np.arange(40) / 39)
