"""Similarity criteria by value where mutation testing found no test: the greedy CKA removal's
order, ties and record, the images it reads, linear CKA in float64, and undefined angular
distances recorded as None."""

import math

import numpy as np
import pytest
import torch

import baselines.similarity
from baselines.similarity import _json, greedy_cka_removal, linear_cka
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model, tiny_vit

LOSS = [0.1, 0.05, 0.05, 0.5]  # the CKA lost without each block (1 and 2 tie)


def _fake_cka(monkeypatch):
    """Features are the block lists; the CKA of a model without some blocks is 1 - their LOSS."""
    monkeypatch.setattr(
        baselines.similarity, "final_features", lambda model, loader, blocks, n: blocks
    )
    monkeypatch.setattr(
        baselines.similarity,
        "linear_cka",
        lambda rest, reference: 1.0 - sum(LOSS[b] for b in reference if b not in rest),
    )


def test_greedy_cka_removes_the_most_similar_block_first_the_earliest_on_ties(monkeypatch):
    _fake_cka(monkeypatch)
    kept, steps, single = greedy_cka_removal(tiny_vit(depth=4), None, k=2)
    assert single == pytest.approx([0.9, 0.95, 0.95, 0.5])
    assert [step["removed"] for step in steps] == [1, 2] and kept == [0, 3]
    assert [step["cka"] for step in steps] == pytest.approx([0.95, 0.9])
    assert steps[0]["candidates"] == pytest.approx({"0": 0.9, "1": 0.95, "2": 0.95, "3": 0.5})
    assert steps[1]["candidates"] == pytest.approx({"0": 0.85, "2": 0.9, "3": 0.45})


def test_cka_reads_the_images_asked_and_records_each_blocks_cka():
    model, calibration = petl_model(), calibration_loader(96)
    few = greedy_cka_removal(model, calibration, 3, max_images=48)
    assert not np.allclose(few[2], greedy_cka_removal(model, calibration, 3)[2])
    context = PruneContext(model, calibration, get_task("digits"), Budget("keep", 3), 0,
                           torch.device("cpu"), None)  # fmt: skip
    decision = make_pruner("cka", {"max_images": 48}).prune(context).decision
    np.testing.assert_allclose(decision["cka_without_block"], few[2])
    np.testing.assert_allclose(decision["scores"], [1.0 - v for v in few[2]])
    assert decision["kept"] == few[0]


def test_linear_cka_computes_in_float64():
    """float32 features of 1e20: their Gram matrices overflow float32, not float64."""
    x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32) * np.float32(1e20)
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x[:, ::-1].copy()) == pytest.approx(1.0)


def test_undefined_distances_are_recorded_as_none():
    assert _json([0.25, math.nan, [math.nan, 0.5]]) == [0.25, None, [None, 0.5]]
