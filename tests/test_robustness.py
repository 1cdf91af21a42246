"""Bad numbers caught, runs that cannot hang a sweep, and what a run records to be compared:
NaN weights refused, a diverging run FAILED by name, hub weights that cannot be had, heartbeats,
claimed cells, the same result twice, and the margin of SLS's call."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench import sweep
from bench.cells import claim_cell
from bench.errors import UserError
from bench.models.backbone import create_backbone
from bench.record import HEARTBEAT as HEARTBEAT_TAG
from bench.run import run_benchmark
from bench.tracking import TrackedRun, client, get_experiment_id
from tests.conftest import TINY_VIT, tiny_config, tiny_vit

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args, env=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_a_checkpoint_holding_nan_is_refused_naming_the_tensor(tmp_path):
    state = tiny_vit().state_dict()
    state["blocks.1.mlp.fc1.weight"][3, 5] = float("nan")
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"'blocks\.1\.mlp\.fc1\.weight' holds 1 NaN"):
        create_backbone("vit_tiny_patch16_224", 10, 16, checkpoint=str(path), kwargs=TINY_VIT)
    del state["blocks.1.mlp.fc1.weight"]  # a good file still loads
    torch.save(tiny_vit().state_dict(), path)
    create_backbone("vit_tiny_patch16_224", 10, 16, checkpoint=str(path), kwargs=TINY_VIT)


DIVERGING = {"train.lr": 1e30, "train.warmup_epochs": 0}


@pytest.mark.slow
def test_a_diverging_transfer_fails_every_run_with_epoch_step_and_rate():
    config = tiny_config(suite="tests-diverge", methods=["none", "sls"], **DIVERGING)
    outcomes = run_benchmark(config, progress=False)
    assert [o.status for o in outcomes] == ["FAILED", "FAILED"]
    diverged = r"transfer diverged: loss (nan|-?inf) at epoch 1, step \d+ \(learning rate 1e\+30\)"
    assert re.search(diverged, outcomes[0].error), outcomes[0].error
    assert "\n" not in outcomes[0].error and "--set train.lr" in outcomes[0].error
    experiment = client().get_experiment_by_name("tests-diverge").experiment_id
    statuses = {r.info.status for r in client().search_runs([experiment])}
    assert statuses == {"FAILED"}


@pytest.mark.slow
def test_the_bench_command_reports_divergence_in_one_line_and_exits_non_zero(tmp_path):
    overrides = [f"--set={k}={v}" for k, v in DIVERGING.items()]
    result = _cli("bench", "--preset", "demo-random", "--epochs", "2", "--methods", "none",
                  "--suite", "tests-diverge-cli", "--no-progress",
                  "--set=model.kwargs={\"patch_size\": 4, \"embed_dim\": 32, \"depth\": 2, "
                  "\"num_heads\": 2}", *overrides)  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert re.search(r"diverged: loss (nan|-?inf) at epoch 1, step \d+", result.stdout)


@pytest.mark.slow
def test_weights_that_cannot_be_downloaded_are_one_line_naming_checkpoint():
    result = _cli("bench", "--preset", "demo-random", "--backbone", "vit_tiny_patch16_224.augreg_in21k",
                  "--pretrained", "true", env={"HF_HUB_OFFLINE": "1"}, timeout=120)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "vit_tiny_patch16_224.augreg_in21k" in lines[0] and "CHECKPOINT=" in lines[0]


def test_a_running_run_beats_and_a_sweep_reclaims_a_silent_one():
    config = tiny_config(suite="tests-heartbeat", methods=["none"], seeds=[0, 1])
    config.sweep.tasks, config.sweep.stale_after_s = "digits", 30.0
    cells = sweep.plan_sweep(config).cells
    tags = [{"cell.key": c.key, "pruner": "none", "owner.host": "another-host"} for c in cells]
    with TrackedRun("tests-heartbeat", "alive", {}, tags[0], heartbeat=0.2) as alive:
        first = float(client().get_run(alive.run_id).data.tags[HEARTBEAT_TAG])
        deadline = time.time() + 30  # a loaded machine may delay the beat thread
        while float(client().get_run(alive.run_id).data.tags[HEARTBEAT_TAG]) <= first:
            assert time.time() < deadline, "the heartbeat did not move in 30 s"
            time.sleep(0.2)
        silent = client().create_run(get_experiment_id(client(), "tests-heartbeat"),
                                     tags={**tags[1], HEARTBEAT_TAG: f"{time.time() - 100:.3f}"})  # fmt: skip
        plan = sweep.plan_sweep(config)
    assert cells[0] in plan.running and cells[0] not in plan.todo  # alive elsewhere: not rerun
    assert plan.reclaimed == [silent.info.run_id] and plan.todo == [cells[1]]
    reclaimed = client().get_run(silent.info.run_id)
    assert (
        reclaimed.info.status == "KILLED" and "no heartbeat for 10" in reclaimed.data.tags["error"]
    )


def test_a_cell_claimed_by_two_sweeps_has_one_owner():
    experiment = get_experiment_id(client(), "tests-claim")
    first, second = (client().create_run(experiment, tags={"cell.key": "k1"}) for _ in range(2))
    ids = first.info.run_id, second.info.run_id
    assert claim_cell(ids[1], "k1") == claim_cell(ids[0], "k1") == ids[0]  # the first created
    client().set_terminated(ids[1], "FINISHED")
    assert claim_cell(ids[0], "k1") == ids[1]  # a finished run owns the cell whatever its age


@pytest.mark.slow
def test_same_seed_and_threads_give_the_same_k_and_accuracy(tmp_path, monkeypatch):
    results = []
    for attempt in range(2):  # a fresh transfer cache each time: everything is recomputed
        monkeypatch.setenv("SLSBENCH_CACHE", str(tmp_path / f"cache{attempt}"))
        config = tiny_config(suite=f"tests-determinism-{attempt}", methods=["sls"], seeds=[4])
        (outcome,) = run_benchmark(config, progress=False)
        assert outcome.status == "FINISHED", outcome.error
        results.append((outcome.metrics["sls/k"], outcome.metrics["test/acc"],
                        outcome.metrics["transfer/test_acc"]))  # fmt: skip
    assert results[0] == results[1]


@pytest.mark.slow
def test_a_run_records_what_it_needs_to_be_compared_and_sls_its_margin():
    (outcome,) = run_benchmark(tiny_config(suite="tests-compare", methods=["sls"]), False)
    run = client().get_run(outcome.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["device.type"] == "cpu" and tags["device"] == tags["cpu.model"] != "x86_64"
    assert tags["threads.torch"] == str(torch.get_num_threads())
    assert "threads.openmp" in tags
    if "sls/threshold" not in metrics:  # SC_N <= 0 on this tiny model: no threshold, no margin
        assert "sls/margin" not in metrics
        return
    k, threshold = int(metrics["sls/k"]), metrics["sls/threshold"]
    kept = metrics[f"sls/score/block_{k:02d}"] - threshold
    assert metrics["sls/margin_kept"] == pytest.approx(kept) and kept >= 0


def test_the_margin_is_the_nearer_of_the_last_kept_and_the_first_failing_block():
    from sls.pruner import margins
    from sls.select import decide_depth, select_depth

    scores = [0.1, 0.25, 0.31, 0.9, 1.0]  # T = 0.3: blocks 5, 4, 3 pass; block 2 fails
    decision = decide_depth(lambda b: scores[b - 1], 5, alpha=0.3)
    assert decision.k == select_depth(scores, 0.3) == 3
    found = margins(decision)
    assert found["margin_kept"] == pytest.approx(0.01)
    assert found["margin_failed"] == pytest.approx(-0.05)
    assert found["margin"] == pytest.approx(0.01)
    all_pass = margins(decide_depth(lambda b: [0.5, 0.6, 1.0][b - 1], 3, alpha=0.3))
    assert all_pass == {"margin_kept": pytest.approx(0.2), "margin": pytest.approx(0.2)}


def test_an_unreachable_hub_fails_at_once_and_leaves_the_hub_settings_as_they_were(monkeypatch):
    from huggingface_hub import constants

    import bench.models.backbone as backbone

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(backbone, "_reachable", lambda url, timeout=3.0: False)
    before, start = constants.HF_HUB_OFFLINE, time.perf_counter()
    with pytest.raises(UserError, match="CHECKPOINT="):
        create_backbone("vit_tiny_patch16_224.augreg_in21k", 10, 16, pretrained=True)
    assert time.perf_counter() - start < 20  # no minute of retries
    assert constants.HF_HUB_OFFLINE == before
