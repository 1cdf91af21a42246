"""Sweeps: plan, skip what is finished, survive kills and failures, parallel and Slurm launchers."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bench import gpus, sweep
from bench.data.synthetic import make_vtab_folder
from bench.tracking import Terminated, TrackedRun, client, raise_on_sigterm
from tests.conftest import runs_of_suite as _runs
from tests.conftest import tiny_cli_options as _tiny_options
from tests.conftest import tiny_config

GPU_TAG = "worker.cuda_visible_devices"


@pytest.fixture(scope="module")
def vtab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtab-1k")
    make_vtab_folder(root, task="eurosat", n_train=20, n_test=10)
    return root


def _config(suite, tasks="digits", methods=("none",), **overrides):
    config = tiny_config(suite=suite, methods=list(methods), **overrides)
    config.sweep.tasks = tasks
    return config


@pytest.mark.slow
def test_a_second_sweep_skips_finished_cells_and_reports_tasks_without_data():
    config = _config("tests-sweep-skip", tasks="digits,eurosat")
    plan = sweep.plan_sweep(config)
    assert [str(c) for c in plan.todo] == ["digits none seed 0"]
    assert "eurosat" in plan.no_data and "DATA" in plan.no_data["eurosat"]
    outcomes = sweep.execute(config, plan, progress=False)
    assert [o.status for o in outcomes] == ["FINISHED"]
    again = sweep.plan_sweep(config)
    assert again.todo == [] and list(again.finished) == plan.cells
    assert "finished: run" in again.describe()
    changed = _config("tests-sweep-skip", tasks="digits", **{"train.lr": 1e-2})
    assert len(sweep.plan_sweep(changed).todo) == 1  # another resolved config is another cell


@pytest.mark.slow
def test_a_failing_cell_does_not_stop_the_others_and_is_retried(exploding_pruner):
    config = _config("tests-sweep-fail", methods=("test_exploding", "none"))
    plan = sweep.plan_sweep(config)
    outcomes = sweep.execute(config, plan, progress=False)
    assert [(o.method, o.status) for o in outcomes] == [
        ("test_exploding", "FAILED"), ("none", "FINISHED")
    ]  # fmt: skip
    text = sweep.summary(plan, outcomes)
    assert "FAILED   digits test_exploding seed 0: RuntimeError: this pruner always fails" in text
    assert [c.method for c in sweep.plan_sweep(config).todo] == ["test_exploding"]


def test_sigterm_ends_the_current_run_killed():
    previous = signal.getsignal(signal.SIGTERM)
    raise_on_sigterm()
    try:
        with pytest.raises(Terminated), TrackedRun("tests-sweep-term", "r", {}, {}) as run:
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert client().get_run(run.run_id).info.status == "KILLED"


def _cli(suite, vtab_root):
    return [
        sys.executable, "-m", "bench", "sweep", "--suite", suite, "--tasks", "digits,eurosat",
        "--data", str(vtab_root), "--methods", "none,drop_last", "--seeds", "0",
        "--budget", "keep:2", *_tiny_options(),
    ]  # fmt: skip


@pytest.mark.slow
def test_sigterm_to_a_bench_process_ends_its_run_killed():
    suite = "tests-bench-term"
    command = [sys.executable, "-m", "bench", "bench", "--suite", suite, "--methods", "retrained",
               "--seeds", "31", *_tiny_options(), "--set", "retrain.epochs=100000"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if client().get_experiment_by_name(suite) and _runs(suite, "RUNNING"):
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()  # still retraining
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    (run,) = _runs(suite)
    assert run.info.status == "KILLED"
    assert run.data.tags["error"].startswith("Terminated")


def test_a_dry_run_prints_the_plan_and_runs_nothing(capsys, monkeypatch):
    from bench.cli import main

    def no_execution(*args, **kwargs):
        raise AssertionError("a dry run executed the sweep")

    monkeypatch.setattr(sweep, "execute", no_execution)
    suite = "tests-dry-run"
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--dry-run", "--suite", suite, "--tasks", "digits",
              "--methods", "none,retrained", "--seeds", "0,1", *_tiny_options()])  # fmt: skip
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"sweep '{suite}'" in out and "4 cells over 1 tasks; 4 to run" in out
    assert out.count("  run      digits ") == 4
    experiment = client().get_experiment_by_name(suite)
    assert experiment is None or not client().search_runs([experiment.experiment_id])


@pytest.mark.slow
def test_a_sweep_killed_part_way_and_restarted_finishes_each_cell_exactly_once(vtab_root):
    suite = "tests-sweep-kill"
    process = subprocess.Popen(_cli(suite, vtab_root), stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if client().get_experiment_by_name(suite) and _runs(suite, "FINISHED"):
            break
        time.sleep(0.1)
    process.kill()  # SIGKILL: no chance to clean up
    process.wait()
    finished_before = {r.info.run_id for r in _runs(suite, "FINISHED")}
    assert 1 <= len(finished_before) < 4

    restart = subprocess.run(_cli(suite, vtab_root), capture_output=True, text=True, timeout=300)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    finished = _runs(suite, "FINISHED")
    cells = [(r.data.tags["task"], r.data.tags["pruner"]) for r in finished]
    assert sorted(cells) == sorted(
        (t, m) for t in ("digits", "eurosat") for m in ("none", "drop_last")
    )
    assert finished_before <= {r.info.run_id for r in finished}  # none repeated or lost
    assert not _runs(suite, "RUNNING")
    assert "skipped" in restart.stdout


def _sweep_in_two_workers(suite, vtab_root, monkeypatch, gpus_seen):
    """2 units (digits, eurosat) × 2 methods in 2 workers, the parent seeing `gpus_seen`."""
    monkeypatch.setattr(gpus, "gpu_ids", lambda: gpus_seen)
    config = _config(suite, tasks="digits,eurosat", methods=("none", "drop_last"),
                     budget="keep:2", **{"data.data_dir": str(vtab_root)})  # fmt: skip
    config.sweep.workers = 2
    outcomes = sweep.execute(config, sweep.plan_sweep(config), progress=False)
    assert [o.status for o in outcomes] == ["FINISHED"] * 4
    runs = _runs(suite, "FINISHED")
    assert len(runs) == 4 and len({r.data.tags["cell.key"] for r in runs}) == 4
    assert len({r.data.tags["owner.pid"] for r in runs}) == 2  # two processes did the work
    assert {r.data.tags["threads.torch"] for r in runs} == {str(max(1, os.cpu_count() // 2))}
    seen: dict[str, set[str]] = {}  # task (unit) -> the CUDA_VISIBLE_DEVICES of its runs
    for run in runs:
        seen.setdefault(run.data.tags["task"], set()).add(run.data.tags[GPU_TAG])
    return runs, seen


@pytest.mark.slow
def test_local_workers_log_every_run_to_one_store(vtab_root, monkeypatch):
    runs, seen = _sweep_in_two_workers("tests-sweep-workers", vtab_root, monkeypatch, [])
    assert all("test/acc" in r.data.metrics and "bytes/stored" in r.data.metrics for r in runs)
    parent = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")  # no GPU: the workers leave it
    assert seen == {"digits": {parent}, "eurosat": {parent}}


@pytest.mark.slow
def test_local_workers_get_one_gpu_each(vtab_root, monkeypatch):
    """With 2 GPUs (faked: the workers resolve `auto` to the CPU), each worker sees its own."""
    _, seen = _sweep_in_two_workers("tests-sweep-gpus", vtab_root, monkeypatch, ["0", "1"])
    assert sorted(sorted(gpu) for gpu in seen.values()) == [["0"], ["1"]]  # one each, distinct


@pytest.mark.slow
def test_slurm_launcher_through_submitits_local_executor(tmp_path):
    config = _config("tests-sweep-slurm")
    config.sweep.launcher = "slurm"
    config.sweep.slurm.cluster = "local"
    config.sweep.slurm.folder = str(tmp_path / "submitit")
    config.sweep.slurm.gpus = 0
    outcomes = sweep.execute(config, sweep.plan_sweep(config), progress=False)
    assert [o.status for o in outcomes] == ["FINISHED"]
    (run,) = _runs("tests-sweep-slurm", "FINISHED")
    assert run.data.tags["owner.pid"] != str(os.getpid())
    assert any((tmp_path / "submitit").rglob("*_log.out"))
