"""A sweep over tasks × methods × seeds: plan → skip what is finished → launch the rest.

Every (task, method, seed) cell is one MLflow run tagged `cell.key`, a hash of its resolved config
(`bench.cells.cell_key`). Planning reads the suite's experiment once: a cell with a FINISHED run of
that key is skipped, so a sweep that was killed and started again runs only what is missing. A run
left RUNNING by a process that no longer exists on this host, or whose heartbeat (a tag every
running run refreshes each minute) is older than `sweep.stale_after_s`, on any host, is marked
KILLED (`bench.liveness`) and its cell runs again; `reclaim` takes over every RUNNING run of the
sweep's cells.

The unit of work is one (task, seed): its transfer is trained once and shared by the methods
that are still missing. Units run one after another here, in N worker processes (one GPU each
where there are GPUs), or as a Slurm job array through submitit. Whatever goes wrong in one unit
is recorded and the others go on.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from bench import gpus
from bench import record as R
from bench.cells import cell_key
from bench.config import RunConfig
from bench.data import resolve_source
from bench.errors import UserError
from bench.liveness import close_dead_runs, owner
from bench.models.build import weights_id
from bench.paths import results_dir
from bench.preflight import preflight
from bench.run import Outcome, run_benchmark
from bench.store import experiment_id_of, runs_of
from bench.tasks import TaskSpec, tasks_in
from bench.tracking import client, get_experiment_id, one_line, raise_on_sigterm, tracking_uri

LAUNCHERS = ("local", "slurm")


@dataclass(frozen=True)
class Cell:
    task: str
    method: str
    seed: int
    key: str

    def __str__(self) -> str:
        return f"{self.task} {self.method} seed {self.seed}"


@dataclass(frozen=True)
class Unit:
    """One transfer (task, seed) and the methods still to run on it."""

    task: str
    seed: int
    methods: tuple[str, ...]


@dataclass
class Plan:
    suite: str
    cells: list[Cell] = field(default_factory=list)
    finished: dict[Cell, str] = field(default_factory=dict)  # cell -> run id
    running: dict[Cell, str] = field(default_factory=dict)  # cell -> where it runs
    reclaimed: list[str] = field(default_factory=list)  # runs marked KILLED while planning
    no_data: dict[str, str] = field(default_factory=dict)  # task -> why
    left_out: dict[str, str] = field(default_factory=dict)  # method -> why it is not run

    @property
    def todo(self) -> list[Cell]:
        return [c for c in self.cells if c not in self.finished and c not in self.running]

    def units(self) -> list[Unit]:
        grouped: dict[tuple[str, int], list[str]] = {}
        for cell in self.todo:
            grouped.setdefault((cell.task, cell.seed), []).append(cell.method)
        return [Unit(task, seed, tuple(methods)) for (task, seed), methods in grouped.items()]

    def describe(self) -> str:
        tasks = sorted({c.task for c in self.cells} | set(self.no_data))
        lines = [
            f"sweep {self.suite!r} on {tracking_uri()}: {len(self.cells)} cells over "
            f"{len(tasks)} tasks; {len(self.todo)} to run in {len(self.units())} transfers, "
            f"{len(self.finished)} already finished, {len(self.running)} running elsewhere"
        ]
        lines += [f"  run      {c}" for c in self.todo]
        lines += [f"  skip     {c} (finished: run {r})" for c, r in self.finished.items()]
        lines += [f"  running  {c} ({where})" for c, where in self.running.items()]
        lines += [f"  no data  {task}: {why}" for task, why in self.no_data.items()]
        lines += [f"  left out {why}" for why in self.left_out.values()]
        if self.reclaimed:
            lines.append(f"  marked KILLED (their process is gone): {', '.join(self.reclaimed)}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# planning


def task_config(config: RunConfig, task: str) -> RunConfig:
    one = copy.deepcopy(config)
    one.data.task = task
    return one


def plan_sweep(config: RunConfig, reclaim: bool = False) -> Plan:
    """Every cell of the sweep and what the tracking store already holds for it."""
    if config.sweep.launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher {config.sweep.launcher!r}; use {' or '.join(LAUNCHERS)}")
    tasks = tasks_in(config.sweep.tasks)
    if not tasks:
        raise UserError("the sweep names no task; use --tasks all, a group, or a list")
    checked = preflight(task_config(config, tasks[0].name))
    methods = [str(m) for m in checked.methods]
    weights = weights_id(config.model)
    plan = Plan(config.suite, left_out=checked.left_out)
    for task in tasks:
        reason = missing_data(config, task)
        if reason:
            plan.no_data[task.name] = reason
            continue
        one = task_config(config, task.name)
        for seed in config.seeds:
            for method in methods:
                plan.cells.append(
                    Cell(task.name, method, seed, cell_key(one, method, seed, weights))
                )
    reclaim_cells = {cell.key for cell in plan.cells} if reclaim else ()
    plan.reclaimed = list(close_dead_runs(plan.suite, config.sweep.stale_after_s, reclaim_cells))
    _match_store(plan)
    return plan


def missing_data(config: RunConfig, task: TaskSpec) -> str:
    try:
        resolve_source(task, config.data.source, config.data.data_dir)
    except UserError as err:
        return str(err)
    return ""


def _match_store(plan: Plan) -> None:
    store = client()
    experiment_id = experiment_id_of(plan.suite, store)
    if experiment_id is None:
        return
    by_key = {cell.key: cell for cell in plan.cells}
    for run in runs_of(experiment_id, store=store):
        cell = by_key.get(run.data.tags.get(R.CELL_KEY, ""))
        if cell is None or cell in plan.finished:
            continue
        status = run.info.status
        if status == "FINISHED":
            plan.finished[cell] = run.info.run_id
            plan.running.pop(cell, None)
        elif status == "RUNNING":
            plan.running[cell] = f"run {run.info.run_id}, {owner(run.data.tags)}"


# ---------------------------------------------------------------------------------------------
# running


def run_unit(config: RunConfig, unit: Unit, progress: bool = False) -> list[Outcome]:
    """One transfer and its missing methods; never raises for a failed run (it is recorded)."""
    raise_on_sigterm()
    one = task_config(config, unit.task)
    one.methods, one.seeds = list(unit.methods), [unit.seed]
    one.sweep.claim_cells = True
    try:
        outcomes = run_benchmark(one, progress=progress)
    except Exception as err:  # e.g. data that vanished or broke since planning
        error = one_line(err)
        outcomes = [Outcome(m, unit.seed, "", "FAILED", {}, error) for m in unit.methods]
    for outcome in outcomes:
        outcome.task = unit.task
    return outcomes


def execute(config: RunConfig, plan: Plan, progress: bool = True) -> list[Outcome]:
    units = plan.units()
    if not units:
        return []
    get_experiment_id(client(), config.suite)  # once, before workers race to create it
    if config.sweep.launcher == "slurm":
        return run_on_slurm(config, units)
    if config.sweep.workers > 1:
        return run_in_workers(config, units, config.sweep.workers)
    return [o for unit in units for o in run_unit(config, unit, progress)]


def run_in_workers(config: RunConfig, units: list[Unit], workers: int) -> list[Outcome]:
    """Units in `workers` fresh processes (spawned: no forked torch state), CPU threads split;
    with GPUs and device auto or cuda, each process sees one GPU (`bench.gpus`)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    devices = gpus.assign(config.device, workers)
    context = get_context("spawn")
    init = (threads, devices, context.Value("i", 0))
    with ProcessPoolExecutor(workers, context, gpus.worker_init, init) as pool:
        futures = [pool.submit(run_unit, config, unit) for unit in units]
        return [o for unit, f in zip(units, futures, strict=True) for o in _result(unit, f.result)]


def run_on_slurm(config: RunConfig, units: list[Unit]) -> list[Outcome]:
    """A submitit job array, one job per unit. The jobs log to the same tracking store: point
    MLFLOW_TRACKING_URI at an `mlflow server` that the compute nodes reach."""
    import submitit

    slurm = config.sweep.slurm
    folder = Path(slurm.folder) if slurm.folder else results_dir() / "submitit"
    cluster = None if slurm.cluster == "slurm" else slurm.cluster
    if cluster is None and not _has_sbatch():
        raise UserError(
            "launcher slurm: no `sbatch` on this machine; run the sweep on a login node"
        )
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(
        name=f"slsbench-{config.suite}", timeout_min=slurm.time_min, gpus_per_node=slurm.gpus,
        cpus_per_task=slurm.cpus, mem_gb=slurm.mem_gb, slurm_array_parallelism=slurm.parallelism,
        **({"slurm_partition": slurm.partition} if slurm.partition else {}),
    )  # fmt: skip
    jobs = executor.map_array(run_unit, [config] * len(units), units)
    print(f"submitted {len(jobs)} jobs: {', '.join(j.job_id for j in jobs)} (logs in {folder})")
    if not slurm.wait:
        return []
    return [o for unit, job in zip(units, jobs, strict=True) for o in _result(unit, job.result)]


def _has_sbatch() -> bool:
    import shutil

    return shutil.which("sbatch") is not None


def _result(unit: Unit, get) -> list[Outcome]:
    """A unit's outcomes; a unit whose process or job died gives FAILED ones with the reason."""
    try:
        return get()
    except Exception as err:
        error = f"{type(err).__name__}: {err}".strip()[:2000]
        return [Outcome(m, unit.seed, "", "FAILED", {}, error, unit.task) for m in unit.methods]


def succeeded(outcomes: list[Outcome]) -> bool:
    """Every cell finished here or was taken by another sweep."""
    return all(o.status in ("FINISHED", "TAKEN") for o in outcomes)


def summary(plan: Plan, outcomes: list[Outcome]) -> str:
    ran = [o for o in outcomes if o.status == "FINISHED"]
    taken = [o for o in outcomes if o.status == "TAKEN"]
    failed = [o for o in outcomes if o.status not in ("FINISHED", "TAKEN")]
    lines = [
        f"sweep {plan.suite!r}: {len(ran)} finished now, {len(plan.finished)} skipped (finished "
        f"before), {len(taken)} taken by another sweep, {len(failed)} failed, "
        f"{len(plan.running)} running elsewhere, {len(plan.no_data)} tasks without data"
    ]
    for o in ran:
        acc = o.metrics.get(R.ACC)
        lines.append(f"  done     {o.task} {o.method} seed {o.seed}: test acc {acc:.4f}")
    lines += [f"  FAILED   {o.task} {o.method} seed {o.seed}: {o.error}" for o in failed]
    lines += [f"  no data  {task}: {why}" for task, why in plan.no_data.items()]
    lines.append(f"runs in {tracking_uri()}; tables: make tables SUITE={plan.suite}")
    return "\n".join(lines)
