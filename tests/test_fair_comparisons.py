"""Fair comparisons: the retrained control, epochs after the transfer, no method run twice under
another name, the uniform-depth baseline and the depth curve on a real (tiny) transfer."""

import pytest
import torch

from bench import curve, sweep
from bench.errors import UserError
from bench.preflight import plan_methods
from bench.pruning import MethodSpec
from bench.run import run_benchmark
from bench.tracking import client
from tests.conftest import calibration_loader, tiny_config

EPOCHS = 2  # tiny_config's recipe


def _config(suite, methods, seeds=(0,), **overrides):
    config = tiny_config(suite=suite, methods=list(methods), seeds=list(seeds), **overrides)
    config.pruners["sls"] = {"embedding": "pca"}
    return config


def _task_state(run_id):
    import mlflow
    from safetensors.torch import load_file

    path = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="task_state.safetensors", tracking_uri=client().tracking_uri
    )
    return load_file(path)


def _by_method(outcomes):
    return {o.method: o for o in outcomes}


@pytest.mark.slow
def test_retrained_is_the_unpruned_model_with_the_pruners_training():
    config = _config("tests-fair", ["none", "retrained", "sls", "depgraph_sls"])
    config.pruners["depgraph_sls"] = {"batches": 2, "batch_size": 16}
    outcomes = _by_method(run_benchmark(config, False))
    assert all(o.status == "FINISHED" for o in outcomes.values()), outcomes
    epochs = {m: o.metrics["train/epochs_after_transfer"] for m, o in outcomes.items()}
    assert epochs == {"none": 0.0, "retrained": EPOCHS, "sls": EPOCHS, "depgraph_sls": 0.0}
    run = outcomes["depgraph_sls"].run_id  # evaluated as pruned, as in the SLS paper's table
    assert client().get_metric_history(run, "retrain/loss") == []
    assert "retrain/seconds" not in outcomes["depgraph_sls"].metrics
    none, retrained = outcomes["none"].metrics, outcomes["retrained"].metrics
    assert retrained["blocks/kept"] == none["blocks/kept"] == 4
    assert retrained["params/total"] == none["params/total"]
    before, after = (_task_state(outcomes[m].run_id) for m in ("none", "retrained"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[name], after[name]) for name in before)  # it trained
    history = client().get_metric_history(outcomes["retrained"].run_id, "retrain/loss")
    assert len(history) == EPOCHS


@pytest.mark.slow
def test_a_pruners_own_training_counts_inside_the_same_budget():
    """block_benefit trains its gates for the budget's first epoch; the harness retrains it for
    the rest, so it trains as many epochs after the transfer as the `retrained` control."""
    config = _config("tests-fair-bb", ["retrained", "block_benefit"], budget="keep:3")
    config.pruners["block_benefit"] = {"epochs": 1}
    outcomes = _by_method(run_benchmark(config, False))
    assert all(o.status == "FINISHED" for o in outcomes.values()), outcomes
    epochs = {m: o.metrics["train/epochs_after_transfer"] for m, o in outcomes.items()}
    assert epochs == {"retrained": EPOCHS, "block_benefit": EPOCHS}
    history = client().get_metric_history(outcomes["block_benefit"].run_id, "retrain/loss")
    assert sorted(m.step for m in history) == [2]  # epoch 1 was the gate phase


@pytest.mark.slow
def test_drop_last_at_sls_k_is_not_trained_a_second_time(capsys):
    outcomes = run_benchmark(_config("tests-fair-twin", ["sls", "drop_last"], seeds=[3]), False)
    assert [o.method for o in outcomes] == ["sls"]
    assert "drop_last at match-sls builds sls's model" in capsys.readouterr().out
    methods, left_out = plan_methods(_config("x", ["drop_last"], budget="keep:2"))
    assert [str(m) for m in methods] == ["drop_last"] and not left_out


@pytest.mark.slow
def test_a_curve_point_at_sls_k_is_the_sls_model_and_the_curve_resumes():
    config = _config("tests-curve", [], seeds=[5])
    config.sweep.tasks = "digits"
    first = curve.curve_config(config, [1, 2], tune=False)
    sweep.execute(first, sweep.plan_sweep(first), progress=False)
    full = curve.curve_config(config, [1, 2, 3, 4], tune=False)
    plan = sweep.plan_sweep(full)
    assert sorted(c.method for c in plan.todo) == ["drop_last@keep:3", "drop_last@keep:4"]
    outcomes = sweep.execute(full, plan, progress=False)
    assert all(o.status == "FINISHED" for o in outcomes)
    assert sweep.plan_sweep(full).todo == []
    runs = client().search_runs([client().get_experiment_by_name("tests-curve").experiment_id])
    acc = {r.data.params["method"]: r.data.metrics["test/acc"] for r in runs}
    k = int(next(r for r in runs if r.data.params["pruner"] == "sls").data.metrics["sls/k"])
    assert acc[f"drop_last@keep:{k}"] == acc["sls"]
    assert len({acc[f"drop_last@keep:{d}"] for d in range(1, 5)}) > 1  # depth matters


@pytest.mark.slow
def test_tune_mode_trains_on_train800_and_evaluates_on_val200():
    config = curve.curve_config(_config("tests-tune", []), [2], tune=True)
    assert config.methods == ["drop_last@keep:2"]
    assert (config.data.train_split, config.data.eval_split) == ("train800", "val200")
    (outcome,) = run_benchmark(config, False)
    params = client().get_run(outcome.run_id).data.params
    assert (params["data.train_split"], params["data.eval_split"]) == ("train800", "val200")


@pytest.mark.slow
def test_fixed_depth_keeps_the_rounded_mean_of_the_suites_sls_k():
    suite = "tests-fixed"
    sls = run_benchmark(_config(suite, ["sls"], seeds=[1, 2]), False)
    ks = [int(o.metrics["sls/k"]) for o in sls]
    (fixed,) = run_benchmark(_config(suite, ["fixed_depth"], seeds=[9]), False)
    assert fixed.status == "FINISHED", fixed.error
    params = client().get_run(fixed.run_id).data.params
    expected = int(sum(ks) / len(ks) + 0.5)
    assert params["budget"] == "sls-mean"
    assert params["budget.resolved"] == f"keep:{expected}"
    assert fixed.metrics["blocks/kept"] == expected


@pytest.mark.slow
def test_fixed_depth_without_sls_runs_says_what_to_do():
    (fixed,) = run_benchmark(_config("tests-fixed-empty", ["fixed_depth"]), False)
    assert fixed.status == "FAILED" and "run sls first" in fixed.error


@pytest.mark.parametrize(
    ("text", "message"),
    [("sls@keep:3", "chooses its own budget"), ("drop_last@", "say a budget"),
     ("drop_last@keep:x", "unknown budget"), ("retrained@params:0.5", "chooses its own")],
)  # fmt: skip
def test_bad_method_budgets_are_refused_before_training(text, message):
    with pytest.raises(UserError, match=message):
        plan_methods(_config("x", [text]))


def test_method_specs_round_trip():
    spec = MethodSpec.parse("Drop_Last@KEEP:6")
    assert (spec.name, spec.budget, str(spec)) == ("drop_last", "keep:6", "drop_last@keep:6")


def test_retraining_after_a_pruners_own_epochs_runs_the_rest_of_the_recipe():
    """A pruner that trained the recipe's first 2 of 6 epochs is retrained for epochs 3..6 on the
    same schedule: the learning rates are those of the full run at the same epochs."""
    from torch import nn

    from bench.config import Recipe
    from bench.train import retrain_start_epoch, train

    recipe = Recipe(epochs=6, warmup_epochs=2, lr=1e-2, warmup_lr=1e-4, min_lr=1e-5,
                    eval_every=100)  # fmt: skip

    def run(start):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
        loader = calibration_loader(48)
        return train(model, loader, loader, recipe, torch.device("cpu"), 0, progress=False,
                     start_epoch=start).history  # fmt: skip

    full, rest = run(0), run(retrain_start_epoch(recipe, 2.0))
    assert [r["epoch"] for r in rest] == [3, 4, 5, 6]
    assert [r["lr"] for r in rest] == pytest.approx([r["lr"] for r in full[2:]])
    assert rest[0]["lr"] > full[0]["lr"]  # the schedule goes on: no second warm-up
    for bad in (2.5, 7.0, -1.0):
        with pytest.raises(ValueError, match="within the training budget"):
            retrain_start_epoch(recipe, bad)
