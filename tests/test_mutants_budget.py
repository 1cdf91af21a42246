"""bench.budget by value where mutation testing found no test: the achieved budget's fractions,
the smallest params budget, and the axis a requested budget is logged on."""

import copy

import pytest

from bench import record as R
from bench.budget import achieved_budget, blocks_to_keep, requested_budget
from bench.models.surgery import keep_first
from bench.pruning import Budget
from tests.conftest import petl_model, tiny_vit


def test_achieved_budget_is_the_fraction_removed_of_each_axis():
    unpruned = petl_model("convpass")
    pruned = keep_first(copy.deepcopy(unpruned), 1)  # 1 of 4 blocks, with its adapters
    achieved = achieved_budget(unpruned, pruned, macs=30.0, macs_unpruned=120.0)
    assert achieved == pytest.approx(
        {
            R.PARAMS_REMOVED_FRACTION: 0.75,
            R.PETL_REMOVED_FRACTION: 0.75,
            R.MACS_REMOVED_FRACTION: 0.75,
        }
    )


def test_a_model_without_petl_parameters_removes_none_of_them():
    unpruned = tiny_vit()
    achieved = achieved_budget(unpruned, keep_first(copy.deepcopy(unpruned), 2), 50.0, 100.0)
    assert achieved[R.PETL_REMOVED_FRACTION] == 0.0
    assert achieved[R.PARAMS_REMOVED_FRACTION] == pytest.approx(0.5)
    assert achieved[R.MACS_REMOVED_FRACTION] == pytest.approx(0.5)


def test_a_params_budget_may_leave_a_single_block():
    assert blocks_to_keep(Budget.parse("params:0.9"), 12) == 1  # round(1.2)


def test_a_requested_budget_is_logged_on_its_axis():
    budget = Budget.parse("params:0.25")
    assert requested_budget(budget, 12) == {R.PARAMS_TARGET_FRACTION: 0.25}
    assert requested_budget(budget, 12, axis="backbone") == {R.PARAMS_TARGET_FRACTION: 0.25}
    assert requested_budget(budget, 12, axis="petl") == {R.PETL_TARGET_FRACTION: 0.25}
    assert requested_budget(Budget.parse("keep:9"), 12) == {R.PARAMS_TARGET_FRACTION: 0.25}


def test_a_requested_keep_budget_on_blocks_of_unequal_size_is_their_parameter_share():
    sizes = [1, 1, 3, 3]  # keep:2 removes the two large blocks: 6 of 8 parameters
    requested = requested_budget(Budget("keep", 2), 4, sizes=sizes)
    assert requested == {R.PARAMS_TARGET_FRACTION: pytest.approx(0.75)}
    assert requested_budget(Budget("keep", 2), 4) == {R.PARAMS_TARGET_FRACTION: 0.5}


def test_two_block_sizes_are_unequal_sizes(monkeypatch):
    import bench.budget

    monkeypatch.setattr(bench.budget, "_block_param_counts", lambda model: [10, 10, 20, 20])
    assert bench.budget.block_sizes(None) == [10, 10, 20, 20]
    monkeypatch.setattr(bench.budget, "_block_param_counts", lambda model: [10, 10, 10])
    assert bench.budget.block_sizes(None) is None
