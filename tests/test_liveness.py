"""Runs left RUNNING by a dead process are marked KILLED by the next command that starts runs;
live ones (a concurrent command on this host, this very process) are left alone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from bench import liveness
from bench.tracking import client, get_experiment_id
from tests.conftest import runs_of_suite as _runs
from tests.conftest import tiny_cli_options as _tiny_options


def _running(suite: str, pid: int, beat_age_s: float | None = None, host: str = "") -> str:
    tags = {"pruner": "none", "owner.host": host or socket.gethostname(), "owner.pid": str(pid)}
    if beat_age_s is not None:
        tags["heartbeat"] = f"{time.time() - beat_age_s:.3f}"
    return client().create_run(get_experiment_id(client(), suite), tags=tags).info.run_id


def _status(run_id: str) -> str:
    return client().get_run(run_id).info.status


def test_only_runs_whose_process_is_gone_or_silent_are_marked_killed():
    suite = "tests-liveness"
    gone = subprocess.Popen(["sleep", "0"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "60"])  # a concurrent bench or sweep on this host
    try:
        dead = _running(suite, gone.pid, beat_age_s=1)
        concurrent = _running(suite, alive.pid, beat_age_s=1)
        this_process = _running(suite, os.getpid(), beat_age_s=10_000)
        silent = _running(suite, 1, beat_age_s=10_000, host="another-host")
        beating = _running(suite, 1, beat_age_s=1, host="another-host")
        closed = liveness.close_dead_runs(suite, stale_after_s=600)
        line = liveness.describe(suite, closed)
        again = liveness.close_dead_runs(suite, stale_after_s=600)
    finally:
        alive.kill()
        alive.wait()
    assert set(closed) == {dead, silent}
    assert [_status(r) for r in (dead, silent)] == ["KILLED"] * 2
    assert [_status(r) for r in (concurrent, this_process, beating)] == ["RUNNING"] * 3
    assert "is gone" in client().get_run(dead).data.tags["error"]
    assert "no heartbeat for 10" in client().get_run(silent).data.tags["error"]
    assert "\n" not in line and "marked KILLED 2 run(s)" in line and dead in line
    assert again == {}  # nothing left to mark


# slow: two `python -m bench bench` processes on the tiny model (about a minute on 2 cores)
def test_a_bench_killed_outright_is_marked_killed_by_the_next_bench():
    suite = "tests-bench-sigkill"
    command = [sys.executable, "-m", "bench", "bench", "--suite", suite, "--seeds", "32",
               *_tiny_options()]  # fmt: skip
    first = subprocess.Popen([*command, "--methods", "retrained", "--set",
                              "retrain.epochs=100000"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None:
        if client().get_experiment_by_name(suite) and _runs(suite, "RUNNING"):
            break
        time.sleep(0.2)
    assert first.poll() is None, first.communicate()  # still retraining
    first.send_signal(signal.SIGKILL)  # out of memory, `kill -9`: no chance to clean up
    first.communicate(timeout=60)
    (left,) = _runs(suite, "RUNNING")

    again = subprocess.run([*command, "--methods", "none"], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    marked = [line for line in again.stdout.splitlines() if "marked KILLED" in line]
    assert len(marked) == 1 and left.info.run_id in marked[0] and "is gone" in marked[0]
    assert not _runs(suite, "RUNNING")
    assert _status(left.info.run_id) == "KILLED"
    assert [r.data.tags["pruner"] for r in _runs(suite, "FINISHED")] == ["none"]
