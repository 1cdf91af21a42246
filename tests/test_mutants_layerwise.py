"""Layer-wise pruners' records by value where mutation testing found no test: what `angular`
writes to its decision, and which budget makes `drop_last` SLS's own model."""

import copy
import dataclasses

import numpy as np
import torch

import baselines.layerwise
import baselines.similarity
from baselines.layerwise import DropLast, draw_seed
from baselines.similarity import angular_distances, least_distance_run, run_distances
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model


def _context(model, keep: int, calibration) -> PruneContext:
    return PruneContext(model, calibration, get_task("digits"), Budget("keep", keep), 0,
                        torch.device("cpu"), None)  # fmt: skip


def test_angular_records_its_run_distances_and_reads_the_images_asked(monkeypatch):
    read = []

    def spy(model, loader, tokens, max_images):
        read.append((tokens, max_images))
        return angular_distances(model, loader, tokens, max_images)

    monkeypatch.setattr(baselines.similarity, "angular_distances", spy)
    model, calibration = petl_model("convpass"), calibration_loader()
    distances = angular_distances(copy.deepcopy(model), calibration, "all", 48)
    assert not np.allclose(distances, angular_distances(copy.deepcopy(model), calibration, "all"))
    pruner = make_pruner("angular", {"max_images": 48, "tokens": "all"})
    decision = pruner.prune(_context(model, 2, calibration)).decision
    assert read == [("all", 48)]
    start = least_distance_run(distances, 2)
    assert (decision["n"], decision["start"]) == (2, start)
    assert decision["dropped"] == [start, start + 1]
    np.testing.assert_allclose(decision["distances"], distances)
    np.testing.assert_allclose(decision["run_distances"], run_distances(distances, 2))


def test_angular_at_full_depth_removes_nothing_and_has_no_start():
    decision = make_pruner("angular").prune(_context(petl_model(), 4, calibration_loader()))
    assert (decision.decision["n"], decision.decision["start"]) == (0, None)
    assert decision.decision["dropped"] == []


def test_drop_last_is_slss_model_at_match_sls_only():
    drop_last = DropLast()
    assert drop_last.same_model_as(Budget.parse("match-sls")) == "sls"
    assert drop_last.same_model_as(Budget.parse("keep:3")) is None


def test_block_influence_pruner_reads_the_images_and_tokens_asked(monkeypatch):
    read = []

    def spy(model, loader, max_images, tokens):
        read.append((max_images, tokens))
        return [0.1, 0.4, 0.2, 0.3]

    monkeypatch.setattr(baselines.layerwise, "block_influence", spy)
    pruner = make_pruner("block_influence", {"max_images": 48, "tokens": "cls"})
    decision = pruner.prune(_context(petl_model(), 2, calibration_loader())).decision
    assert read == [(48, "cls")]
    assert decision["kept"] == [1, 3] and decision["scores"] == [0.1, 0.4, 0.2, 0.3]
    assert decision["settings"] == {"max_images": 48, "tokens": "cls"}


def test_random_blocks_records_its_draws_seed():
    decision = make_pruner("random_blocks").prune(_context(petl_model(), 2, calibration_loader()))
    assert decision.decision["rng_seed"] == draw_seed("digits", 0)


def test_a_parameter_budget_counts_the_blocks_sizes(monkeypatch):
    """The last block holds 97 % of the parameters: removing half of them removes it alone."""
    monkeypatch.setattr(baselines.layerwise, "block_sizes", lambda model: [1, 1, 1, 97])
    context = _context(petl_model(), 4, calibration_loader())
    context = dataclasses.replace(context, budget=Budget("params", 0.5))
    decision = make_pruner("drop_last").prune(context).decision
    assert decision["k"] == 3 and decision["kept"] == [0, 1, 2]
