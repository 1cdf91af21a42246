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
