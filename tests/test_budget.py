"""Budgets: what keep:k / params:f mean, and how match-sls is resolved to SLS's k."""

import pytest

from bench.budget import blocks_to_keep, param_fraction, requested_budget
from bench.errors import UserError
from bench.pruning import Budget
from bench.run import run_benchmark
from bench.tracking import client
from tests.conftest import tiny_config


@pytest.mark.parametrize(
    ("text", "keep", "fraction"),
    [("keep:9", 9, 0.25), ("params:0.25", 9, 0.25), ("params:0.3", 8, 0.3), ("none", 12, 0.0)],
)
def test_budget_sizes_for_twelve_blocks(text, keep, fraction):
    budget = Budget.parse(text)
    assert blocks_to_keep(budget, 12) == keep
    assert param_fraction(budget, 12) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["keep:0", "keep:13", "params:0.99"])
def test_budgets_that_remove_everything_or_nothing_sensible_are_refused(text):
    with pytest.raises(UserError):
        blocks_to_keep(Budget.parse(text), 12)


def test_unresolved_match_sls_has_no_size():
    with pytest.raises(UserError, match="match-sls must be resolved"):
        param_fraction(Budget.parse("match-sls"), 12)
    assert requested_budget(Budget.parse("match-sls"), 12) == {}


def _sls_config(**overrides):
    config = tiny_config(suite="tests-match-sls", **overrides)
    config.pruners["sls"] = {"embedding": "pca"}
    return config


def _run(outcome):
    return client().get_run(outcome.run_id)


@pytest.mark.slow
def test_match_sls_takes_k_from_the_run_set_then_the_store():
    config = _sls_config(methods=["sls", "random_blocks"], seeds=[11])
    sls, random_blocks = (_run(o) for o in run_benchmark(config, progress=False))
    k = int(sls.data.metrics["sls/k"])
    assert random_blocks.data.params["budget"] == "match-sls"
    assert random_blocks.data.params["budget.resolved"] == f"keep:{k}"
    assert random_blocks.data.params["budget.source"] == "run set"
    assert random_blocks.data.metrics["blocks/kept"] == k
    assert random_blocks.data.metrics["budget/params_target_fraction"] == pytest.approx((4 - k) / 4)

    config = _sls_config(methods=["random_blocks"], seeds=[11])
    again = _run(run_benchmark(config, progress=False)[0])
    assert again.data.params["budget.source"] == "store"
    assert again.data.params["budget.resolved"] == f"keep:{k}"


@pytest.mark.slow
def test_match_sls_computes_k_when_no_sls_run_exists_and_agrees_with_sls():
    config = _sls_config(methods=["random_blocks"], seeds=[12])
    computed = _run(run_benchmark(config, progress=False)[0])
    assert computed.data.params["budget.source"] == "computed"
    sls = _run(run_benchmark(_sls_config(methods=["sls"], seeds=[12]), progress=False)[0])
    assert computed.data.params["budget.resolved"] == f"keep:{int(sls.data.metrics['sls/k'])}"


@pytest.mark.slow
def test_store_lookup_ignores_sls_runs_with_other_settings():
    run_benchmark(_sls_config(methods=["sls"], seeds=[13]), progress=False)
    config = _sls_config(methods=["random_blocks"], seeds=[13])
    config.pruners["sls"] = {"embedding": "pca", "alpha": 0.5}
    other = _run(run_benchmark(config, progress=False)[0])
    assert other.data.params["budget.source"] == "computed"


@pytest.mark.slow
def test_explicit_budget_is_used_as_given():
    config = _sls_config(methods=["drop_last", "magnitude"], seeds=[14], budget="keep:3")
    drop_last, magnitude = (_run(o) for o in run_benchmark(config, progress=False))
    assert drop_last.data.params["budget.source"] == "given"
    assert drop_last.data.metrics["blocks/kept"] == 3
    achieved = magnitude.data.metrics["budget/params_removed_fraction"]
    assert achieved == pytest.approx(0.25, abs=0.02)
    assert magnitude.data.metrics["macs"] < magnitude.data.metrics["macs_unpruned"]
    assert magnitude.data.metrics["params/total"] < magnitude.data.metrics["params/total_unpruned"]
    assert magnitude.data.tags["stored.deployed"] == "indices into the shared backbone"
    assert magnitude.data.metrics["magnitude/bytes_pruned_backbone"] > 0
