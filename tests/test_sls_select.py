"""Tests of the pure SLS parts: depth rule, scores, embeddings, plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from bench.errors import UserError
from sls import DepthDecision, decide_depth, embed, score, select_depth
from sls.plot import plot_scores
from sls.score import HIGHER_IS_BETTER, describe, holdout_split, oriented_score, score_name


def _counting(scores):
    """score_fn over a list (block 1 = index 0) that records which blocks were asked for."""
    calls: list[int] = []

    def fn(block: int) -> float:
        calls.append(block)
        return scores[block - 1]

    return fn, calls


# --- selection rule ---------------------------------------------------------------------------


def test_dip_stops_scan_at_first_failure():
    # T = 0.3: blocks 12..9 pass, block 8 dips below, blocks 1..7 would pass again.
    scores = [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.1, 0.4, 0.5, 0.8, 1.0]
    assert select_depth(scores, alpha=0.3) == 9
    d = decide_depth(_counting(scores)[0], 12, alpha=0.3)
    assert (d.k, d.reason, d.threshold) == (9, "threshold", pytest.approx(0.3))
    assert sorted(d.scores) == [8, 9, 10, 11, 12]


def test_monotone_increasing_curve():
    scores = np.linspace(-0.12, 0.54, 12).tolist()  # the shape of the calibration run
    t = 0.3 * scores[-1]
    expected = min(i + 1 for i, s in enumerate(scores) if s >= t)
    assert select_depth(scores, alpha=0.3) == expected
    assert 1 < expected < 12


def test_threshold_is_inclusive():
    assert select_depth([0.3, 1.0], alpha=0.3) == 1
    assert select_depth([0.2999, 1.0], alpha=0.3) == 2


@pytest.mark.parametrize("sc_n", [0.0, -0.2])
def test_nonpositive_top_score_keeps_all(sc_n):
    scores = [0.4, 0.5, 0.6, sc_n]
    assert select_depth(scores) == 4
    d = decide_depth(_counting(scores)[0], 4)
    assert (d.k, d.reason, d.threshold, d.floor_hit) == (4, "sc_n_nonpositive", None, False)
    assert d.scores == {4: sc_n}


def test_all_pass_gives_one_block_and_floor_is_respected():
    scores = [0.9] * 6
    assert select_depth(scores) == 1
    d = decide_depth(_counting(scores)[0], 6)
    assert (d.k, d.reason, d.floor_hit) == (1, "all_pass", False)
    assert select_depth(scores, min_blocks=3) == 3
    d = decide_depth(_counting(scores)[0], 6, min_blocks=3)
    assert (d.k, d.reason, d.floor_hit) == (3, "floor", True)


def test_floor_above_threshold_k_is_not_hit():
    scores = [0.0, 0.0, 0.0, 0.0, 0.9, 1.0]
    d = decide_depth(_counting(scores)[0], 6, min_blocks=3)
    assert (d.k, d.reason, d.floor_hit) == (5, "threshold", False)


@pytest.mark.parametrize("min_blocks", [0, 5])
def test_min_blocks_out_of_range(min_blocks):
    with pytest.raises(UserError, match="min_blocks"):
        select_depth([0.1, 0.2, 0.3, 0.4], min_blocks=min_blocks)


def test_lazy_and_full_agree_on_random_curves():
    stopped_early = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 13))
        scores = (rng.normal(0.2, 0.3, n) + np.linspace(0, rng.uniform(0, 0.6), n)).tolist()
        alpha = float(rng.choice([0.1, 0.3, 0.5, 0.9]))
        min_blocks = int(rng.integers(1, n + 1))
        lazy_fn, lazy_calls = _counting(scores)
        full_fn, full_calls = _counting(scores)
        lazy = decide_depth(lazy_fn, n, alpha, min_blocks, lazy=True)
        full = decide_depth(full_fn, n, alpha, min_blocks, lazy=False)
        assert lazy.k == full.k == select_depth(scores, alpha, min_blocks)
        assert (lazy.reason, lazy.threshold, lazy.floor_hit) == (
            full.reason,
            full.threshold,
            full.floor_hit,
        )
        assert sorted(full_calls) == list(range(1, n + 1))
        assert lazy_calls == list(range(n, n - len(lazy_calls), -1))  # top-down, no gaps
        assert all(full.scores[b] == s for b, s in lazy.scores.items())
        if lazy.reason == "threshold" and lazy.k > 2:
            assert len(lazy_calls) < n
            stopped_early += 1
    assert stopped_early > 20


def test_decision_to_dict_is_json_and_plot_writes_png(tmp_path):
    d = decide_depth(lambda b: [0.1, 0.5, 0.9, 1.0][b - 1], 4, lazy=False)
    assert isinstance(d, DepthDecision)
    data = json.loads(json.dumps(d.to_dict()))
    assert data["k"] == 2 and data["scores"]["1"] == 0.1 and data["reason"] == "threshold"
    path = tmp_path / "plots" / "sc.png"
    plot_scores(d, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_scores(decide_depth(lambda b: -1.0, 3), tmp_path / "none.png")  # threshold None


# --- scores ------------------------------------------------------------------------------------


def test_davies_bouldin_orientation():
    x, y = make_blobs(n_samples=120, centers=3, n_features=2, cluster_std=0.5, random_state=0)
    noisy = x + np.random.default_rng(0).normal(0, 5.0, x.shape)
    good, bad = score(x, y, "davies_bouldin"), score(noisy, y, "davies_bouldin")
    assert good < bad and not HIGHER_IS_BETTER["davies_bouldin"]
    assert oriented_score(good, "davies_bouldin") > oriented_score(bad, "davies_bouldin") > 0
    assert oriented_score(0.4, "silhouette") == 0.4
    assert score(x, y, "calinski_harabasz") > score(noisy, y, "calinski_harabasz")


def test_single_class_is_a_clear_error():
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(UserError, match="silhouette is undefined with a single class"):
        score(x, np.zeros(50, dtype=int))


def test_unknown_names():
    with pytest.raises(UserError, match="tsne, opentsne, pca, none"):
        embed(np.zeros((40, 3)), "umap")
    with pytest.raises(UserError, match="silhouette"):
        score(np.zeros((4, 2)), [0, 0, 1, 1], "accuracy")


# --- embeddings --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(n_samples=120, centers=4, n_features=16, cluster_std=1.0, random_state=0)
    return x.astype(np.float32), y


@pytest.mark.parametrize("method", ["tsne", "opentsne", "pca"])
def test_embed_shape_range_and_separation(blobs, method):
    x, y = blobs
    e = embed(x, method, seed=0)
    assert e.shape == (len(x), 2)
    assert e.min() >= 0.0 and e.max() <= 1.0
    np.testing.assert_allclose(e.min(axis=0), 0.0)
    np.testing.assert_allclose(e.max(axis=0), 1.0)
    assert score(e, y) > 0.5


def test_embed_none_returns_features_and_float64_input(blobs):
    x, y = blobs
    assert embed(x, "none") is x
    assert embed(x.astype(np.float64), "pca").shape == (len(x), 2)


def test_tsne_score_is_deterministic_for_a_seed(blobs):
    x, y = blobs
    assert score(embed(x, "tsne", seed=3), y) == score(embed(x, "tsne", seed=3), y)


def test_constant_axis_does_not_divide_by_zero():
    x = np.zeros((40, 3))
    x[:20, 0] = 1.0
    e = embed(x, "pca")
    assert np.isfinite(e).all() and e.max() <= 1.0


def test_tsne_needs_more_samples_than_perplexity():
    with pytest.raises(UserError, match="more than 30 samples"):
        embed(np.zeros((30, 4), dtype=np.float32), "tsne")


# --- held-out accuracies (probe, knn) ------------------------------------------------------------


def test_holdout_split_is_a_seeded_stratified_fifth():
    labels = np.repeat(np.arange(10), [190, 150, 130, 110, 100, 90, 80, 70, 50, 30])  # 1000
    fit, held = holdout_split(labels)
    assert (len(fit), len(held)) == (800, 200)
    assert sorted([*fit, *held]) == list(range(1000))
    for c, n in enumerate([190, 150, 130, 110, 100, 90, 80, 70, 50, 30]):
        assert (labels[held] == c).sum() == n // 5  # these class sizes are multiples of 5
    again_fit, again_held = holdout_split(labels)
    assert again_held.tolist() == held.tolist()
    assert holdout_split(labels, seed=1)[1].tolist() != held.tolist()
    many = np.arange(1000) % 397  # sun397: 397 classes in 1000 images still splits 800 / 200
    assert [len(part) for part in holdout_split(many)] == [800, 200]


@pytest.mark.parametrize("metric", ["probe", "knn"])
def test_heldout_accuracy_reproduces_scikit_learn_on_fixed_features(metric):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = make_blobs(n_samples=300, centers=4, n_features=8, cluster_std=4.0, random_state=0)
    fit, held = holdout_split(y)
    classifier = (
        LogisticRegression(max_iter=1000) if metric == "probe" else KNeighborsClassifier(10)
    )
    direct = make_pipeline(StandardScaler(), classifier).fit(x[fit], y[fit])
    expected = float(direct.score(x[held], y[held]))
    assert 0.4 < expected < 1.0  # overlapping blobs: a number that tells the two apart
    assert score(x, y, metric) == expected
    assert oriented_score(score(x, y, metric), metric) == expected


def test_probe_is_perfect_on_separated_classes_and_near_chance_on_shuffled_labels():
    x, y = make_blobs(n_samples=500, centers=5, n_features=16, cluster_std=0.5, random_state=0)
    assert score(x, y, "probe") == 1.0 and score(x, y, "knn") == 1.0
    shuffled = np.random.default_rng(0).permutation(y)
    assert score(x, shuffled, "probe") < 0.4  # chance is 0.2


def test_score_names_say_davies_bouldin_is_inverted():
    assert score_name("davies_bouldin") == "1/davies_bouldin"
    assert "1 / Davies-Bouldin" in describe("davies_bouldin")
    assert score_name("silhouette") == "silhouette" and score_name("probe") == "probe"
    assert "held-out" in describe("probe") and "held-out" in describe("knn")
