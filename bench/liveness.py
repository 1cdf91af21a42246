"""Runs left RUNNING by a process that died outright (SIGKILL, out of memory, a lost node): every
command that starts runs marks them KILLED first: `bench` at the start of its run set (after its
input is checked, so bad input still fails at once), `sweep` and `curve` while planning.

A run records its host and pid (`owner.host`, `owner.pid`) and, while it runs, refreshes a
heartbeat tag every minute (`bench.tracking.Heartbeat`). A RUNNING run of the suite is dead when
its process is gone (same host: at once) or its heartbeat is older than `stale_after_s` (any
host). A run of this very process is never marked, nor one whose process exists on this host and
still beats (a concurrent `make bench` or sweep). Only the store's run status and error tag are
written.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Collection

from bench import record as R
from bench.store import experiment_id_of, runs_of
from bench.tracking import client

RECLAIMED = "reclaimed by a new sweep"


def close_dead_runs(suite: str, stale_after_s: float, reclaim_cells: Collection[str] = (),
                    store=None) -> dict[str, str]:  # fmt: skip
    """Mark KILLED the suite's RUNNING runs that are dead, and those of `reclaim_cells` (sweep
    cell keys taken over by `--reclaim`) whatever their state; {run id: why}, oldest last."""
    store = store or client()
    experiment_id = experiment_id_of(suite, store)
    if experiment_id is None:
        return {}
    closed = {}
    for run in runs_of(experiment_id, R.status_is("RUNNING"), store):
        tags = run.data.tags
        if _is_this_process(tags):
            continue
        why = RECLAIMED if tags.get(R.CELL_KEY) in reclaim_cells else dead(tags, stale_after_s)
        if why:
            store.set_tag(run.info.run_id, R.ERROR, f"left RUNNING; {why}")
            store.set_terminated(run.info.run_id, "KILLED")
            closed[run.info.run_id] = why
    return closed


def mark_dead_runs(suite: str, stale_after_s: float) -> None:
    """`close_dead_runs`, said in one line when it marked any."""
    closed = close_dead_runs(suite, stale_after_s)
    if closed:
        print(describe(suite, closed), flush=True)


def describe(suite: str, closed: dict[str, str]) -> str:
    """One line for the terminal ("" when nothing was marked)."""
    if not closed:
        return ""
    runs = "; ".join(f"{run_id} ({why})" for run_id, why in closed.items())
    return f"marked KILLED {len(closed)} run(s) of suite {suite!r} left RUNNING: {runs}"


def dead(tags: dict[str, str], stale_after_s: float) -> str:
    """Why a RUNNING run counts as dead ("" when it may be alive)."""
    if process_gone(tags):
        return f"its process ({owner(tags)}) is gone"
    beat = tags.get(R.HEARTBEAT, "")
    if beat.replace(".", "", 1).isdigit() and time.time() - float(beat) > stale_after_s:
        return f"no heartbeat for {time.time() - float(beat):.0f} s ({owner(tags)})"
    return ""


def owner(tags: dict[str, str]) -> str:
    where = f"{tags.get(R.OWNER_HOST, '?')} pid {tags.get(R.OWNER_PID, '?')}"
    job = tags.get(R.SLURM_JOB_ID)
    return f"{where}, Slurm job {job}" if job else where


def process_gone(tags: dict[str, str]) -> bool:
    """True only when the run's process was on this host and no longer exists."""
    if tags.get(R.OWNER_HOST) != socket.gethostname() or not tags.get(R.OWNER_PID, "").isdigit():
        return False
    try:
        os.kill(int(tags[R.OWNER_PID]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _is_this_process(tags: dict[str, str]) -> bool:
    return tags.get(R.OWNER_HOST) == socket.gethostname() and tags.get(R.OWNER_PID) == str(
        os.getpid()
    )
