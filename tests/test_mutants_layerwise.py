"""Layer-wise pruners' records by value where mutation testing found no test: what `angular`
writes to its decision, and which budget makes `drop_last` SLS's own model."""

import math

import numpy as np

import baselines.similarity
from baselines.layerwise import DropLast
from baselines.similarity import angular_distances, run_distances
from bench.pruning import Budget, make_pruner
from tests.test_similarity import ANGLES, Rotate, Rotations, _context, _tokens


def test_angular_records_its_run_distances_and_reads_the_images_asked(monkeypatch):
    read = []

    def spy(model, loader, tokens, max_images):
        read.append((tokens, max_images))
        return angular_distances(model, loader, tokens, max_images)

    monkeypatch.setattr(baselines.similarity, "angular_distances", spy)
    model, calibration = Rotations([Rotate(a) for a in ANGLES]), _tokens(images=12)
    pruner = make_pruner("angular", {"max_images": 5, "tokens": "all"})
    decision = pruner.prune(_context(model, 4, calibration)).decision
    assert read == [("all", 5)]
    distances = angular_distances(model, calibration, "all", 5)
    assert decision["n"] == 2 and decision["start"] == 2
    np.testing.assert_allclose(decision["distances"], distances)
    np.testing.assert_allclose(decision["run_distances"], run_distances(distances, 2))
    np.testing.assert_allclose(decision["run_distances"][2], 0.25 / math.pi, atol=1e-7)


def test_angular_at_full_depth_removes_nothing_and_has_no_start():
    decision = make_pruner("angular").prune(_context(Rotations([Rotate(a) for a in ANGLES]), 6))
    assert (decision.decision["n"], decision.decision["start"]) == (0, None)
    assert decision.decision["dropped"] == []


def test_drop_last_is_slss_model_at_match_sls_only():
    drop_last = DropLast()
    assert drop_last.same_model_as(Budget.parse("match-sls")) == "sls"
    assert drop_last.same_model_as(Budget.parse("keep:3")) is None
