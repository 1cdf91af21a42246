"""A sweep cell: one (task, PETL, method, budget, seed) run, its key, and who owns it.

A FINISHED run with a cell's key is not run again. Several sweeps may plan the same cell at once:
every racer computes the same owner (`claim_cell`), so the cell runs once.
"""

from __future__ import annotations

import os
import socket

from bench import record as R
from bench.config import RunConfig
from bench.keys import stable_hash
from bench.pruning import Budget, MethodSpec, Pruner, make_pruner
from bench.store import runs_of_cell


def cell_key(
    config: RunConfig, method: str, seed: int, weights: str, pruner: Pruner | None = None
) -> str:
    """What identifies one run of a sweep: its config's identity (task, model, PETL, recipes,
    measurement), the method and its settings (not the `speed_only` ones), the budget (with SLS's
    settings when the budget is SLS's k), the seed and the backbone weights."""
    spec = MethodSpec.parse(method)
    pruner = pruner or make_pruner(spec.name, config.pruners.get(spec.name))
    budget = str(pruner.budget_for(spec, config.budget))
    payload = {"config": config.identity(), "method": spec.name,
               "settings": pruner.key_settings(), "budget": budget, "seed": seed,
               "weights": weights}  # fmt: skip
    if budget in Budget.RESOLVED_BY_HARNESS:
        payload["sls"] = sls_settings(config)
    return stable_hash(payload)


def sls_settings(config: RunConfig) -> dict:
    """SLS's settings that identify its k (what `match-sls` and `sls-mean` depend on)."""
    return make_pruner("sls", config.pruners.get("sls")).key_settings()


def owner_tags() -> dict[str, str]:
    """Which process runs this, so a sweep can tell a live run from one whose process died."""
    tags = {R.OWNER_HOST: socket.gethostname(), R.OWNER_PID: str(os.getpid())}
    if os.environ.get("SLURM_JOB_ID"):
        tags[R.SLURM_JOB_ID] = os.environ["SLURM_JOB_ID"]
    return tags


class CellTaken(Exception):
    """Another sweep owns this cell (the message is its run id)."""


def claim_cell(run_id: str, key: str) -> str:
    """Which run owns a sweep cell: of the cell's RUNNING and FINISHED runs, the first created
    (ties by run id). A sweep's new run checks this once it exists; every racer sees the same
    owner, so a cell that several sweeps planned at once runs once. A run checks when it starts
    and again before it finishes (a racer created in the same instant may not have been visible
    at the start); the loser's run is deleted."""
    runs = runs_of_cell(run_id, key)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    return min(finished or runs, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
