"""SLS's calibration images (`pruners.sls.calibration`): all of them in a fixed order, or the
released prune.py's reshuffled 960 of 1000 per block."""

import numpy as np
import pytest
import torch

from bench.data import BatchLoader, ImageSplit
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from sls.calibration import block_samples, released_indices
from sls.features import block_features
from sls.parallel import block_score
from tests.conftest import petl_model


def test_released_calibration_is_960_of_1000_images_reshuffled_for_every_block():
    """prune.py iterates its loader (batch 64, shuffle, drop_last) anew for every block: each
    block gets 15 batches of 64 distinct images, in its own order."""
    indices = released_indices(1000, 12, seed=0)
    assert [len(i) for i in indices] == [960] * 12
    assert all(len(set(i.tolist())) == 960 and i.max() < 1000 for i in indices)
    assert len({tuple(i.tolist()) for i in indices}) == 12  # a fresh draw per block
    assert len({frozenset(i.tolist()) for i in indices}) > 1  # not only the order differs
    again = released_indices(1000, 12, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(indices, again, strict=True))
    assert not np.array_equal(indices[0], released_indices(1000, 12, 1)[0])


def test_all_calibration_is_every_image_in_the_fixed_order():
    features = [np.arange(10.0).reshape(5, 2) + b for b in range(3)]
    labels = np.arange(5)
    samples = block_samples(features, labels, "all", seed=0)
    assert all(f is s[0] and s[1] is labels for f, s in zip(features, samples, strict=True))
    features = [np.random.default_rng(b).normal(size=(150, 2)) for b in range(3)]
    released = block_samples(features, np.arange(150), "released", seed=0)
    assert [len(s[1]) for s in released] == [128] * 3  # two batches of 64
    for f, (sample, picked) in zip(features, released, strict=True):
        assert np.array_equal(sample, f[picked])  # the labels are the picked images' indices


def _context(tmp_path, n=130):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 3, 16, 16), dtype=np.uint8)
    loader = BatchLoader(ImageSplit(images, np.arange(n) % 4), 50)
    return PruneContext(petl_model("convpass"), loader, get_task("digits"), Budget("auto"), 3,
                        torch.device("cpu"), tmp_path)  # fmt: skip


@pytest.mark.parametrize("calibration", ["all", "released"])
def test_sls_scores_each_block_on_its_calibration_sample(tmp_path, calibration):
    """The scores SLS logs are each block's score on the images the setting picks: 128 of 130
    (two batches of 64), drawn per block with the run's seed, or all 130."""
    options = {"embedding": "pca", "full_curve": True, "calibration": calibration}
    result = make_pruner("sls", options).prune(_context(tmp_path))
    features, labels = block_features(petl_model("convpass"), _context(tmp_path).calibration)
    if calibration == "released":
        picks = released_indices(130, len(features), seed=3)
    else:
        picks = [np.arange(130)] * len(features)
    expected = {
        block: block_score(f[i], labels[i], "pca", "silhouette", 0)
        for block, (f, i) in enumerate(zip(features, picks, strict=True), start=1)
    }
    assert result.decision["scores"] == pytest.approx({str(b): s for b, s in expected.items()})
    assert result.metrics["calibration_images"] == (128 if calibration == "released" else 130)
