"""A benchmark run set: one task, one PETL method, several pruners and seeds.

Steps: check everything → load data → transfer (PETL training, cached, shared by every pruner;
`bench.transfer`) → for each pruner: prune → retrain → evaluate → measure → store → log, as one
MLflow run per (task, PETL, pruner, budget, seed). The steps of a run take one `RunContext`. A
method that would build another method's model, trained the same way (`drop_last` at SLS's k), is
left out with a note instead of being trained twice.
"""

from __future__ import annotations

import copy
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from torch import nn

import bench.plugins  # noqa: F401  (registers SLS and the baselines)
from bench import measure
from bench import record as R
from bench.budget import achieved_budget, block_sizes, requested_budget
from bench.budget_resolution import resolve_budget, sls_k_now
from bench.cells import CellTaken, cell_key, claim_cell
from bench.config import Recipe, RunConfig
from bench.data.loader import BatchLoader
from bench.data.task_data import TaskData, calibration_loader, data_loaders, load_data
from bench.describe import dataset_input, run_description
from bench.gpus import resolve_device
from bench.liveness import mark_dead_runs
from bench.models.build import resolve_input, same_weights, weights_id
from bench.models.family import family_of, num_blocks
from bench.models.petl import PetlSettings
from bench.preflight import preflight
from bench.pruning import (
    Budget,
    MethodSpec,
    PruneContext,
    Pruner,
    PruneResult,
    make_pruner,
)
from bench.run_params import run_params, run_tags
from bench.state import save_task_state
from bench.store import control_accuracies
from bench.tracking import TrackedRun, client, one_line
from bench.train import (
    evaluate,
    headline,
    peak_gpu_memory_gb,
    reset_peak_gpu_memory,
    retrain_recipe,
    retrain_start_epoch,
    train,
    training_metrics,
)
from bench.transfer import Transfer, transfer

TASK_STATE_FILE = "task_state.safetensors"


@dataclass
class Outcome:
    method: str
    seed: int
    run_id: str
    status: str
    metrics: dict[str, float]
    error: str = ""
    task: str = ""


# ---------------------------------------------------------------------------------------------
# one method: a short list of named steps over one context


@dataclass
class RunContext:
    """What the steps of a run need. The runs on one transfer share everything but the last four
    fields, which `for_method` fills for one method's run."""

    config: RunConfig
    data: TaskData
    settings: PetlSettings
    device: torch.device
    weights: str
    progress: bool
    seed: int
    transfer: Transfer
    known_k: dict[str, int] = field(default_factory=dict)  # SLS's k per transfer key (run set)
    spec: MethodSpec | None = None
    pruner: Pruner | None = None
    run: TrackedRun | None = None
    workdir: Path | None = None

    def for_method(self, spec: MethodSpec) -> RunContext:
        pruner = make_pruner(spec.name, self.config.pruners.get(spec.name))
        return replace(self, spec=spec, pruner=pruner, run=None, workdir=None)

    def calibration(self) -> BatchLoader:
        return calibration_loader(self.data, self.device)

    def loaders(self, recipe: Recipe):
        return data_loaders(self.data, recipe, self.device, self.seed)


def run_method(ctx: RunContext, spec: MethodSpec) -> Outcome:
    """One MLflow run: resolve the budget → prune → retrain → evaluate → measure → store → log."""
    ctx = ctx.for_method(spec)
    budget = ctx.pruner.budget_for(spec, ctx.config.budget)
    key = cell_key(ctx.config, str(spec), ctx.seed, ctx.weights, ctx.pruner)
    params = run_params(ctx.config, ctx.data, ctx.settings, spec, ctx.pruner, budget, ctx.seed,
                        ctx.weights, ctx.device)  # fmt: skip
    family = family_of(ctx.transfer.model).name
    tags = {**run_tags(ctx.data, ctx.settings, spec, ctx.weights, ctx.device, family),
            R.TRANSFER_KEY: ctx.transfer.key, R.TRANSFER_CACHED: str(ctx.transfer.cached),
            R.CELL_KEY: key}  # fmt: skip
    claim = ctx.config.sweep.claim_cells
    try:
        tracked = TrackedRun(ctx.config.suite, run_name(ctx.data, ctx.settings, spec, ctx.seed),
                             params, tags)  # fmt: skip
        with tracked as run, tempfile.TemporaryDirectory() as tmp:
            if claim and (owner := claim_cell(run.run_id, key)) != run.run_id:
                raise CellTaken(owner)  # another sweep runs this cell
            ctx = replace(ctx, run=run, workdir=Path(tmp))
            budget, source = budget_step(ctx, budget)
            run.log_params({R.P_BUDGET_RESOLVED: str(budget), R.P_BUDGET_SOURCE: source})
            dataset_step(ctx)
            metrics = prune_and_measure(ctx, budget)
            if claim and (owner := claim_cell(run.run_id, key)) != run.run_id:
                raise CellTaken(owner)  # a racer started in the same instant: it keeps the cell
        return Outcome(
            str(spec), ctx.seed, run.run_id, "FINISHED", metrics, task=ctx.data.task.name
        )
    except KeyboardInterrupt:
        raise
    except CellTaken as taken:
        client().delete_run(tracked.run_id)
        return Outcome(str(spec), ctx.seed, str(taken), "TAKEN", {}, task=ctx.data.task.name)
    except Exception as err:  # recorded FAILED in the store (traceback in error.txt); others go on
        return Outcome(str(spec), ctx.seed, "", "FAILED", {}, one_line(err), ctx.data.task.name)


def run_name(data: TaskData, settings: PetlSettings, spec: MethodSpec, seed: int) -> str:
    return f"{data.task.name}-{settings.method}-{spec}-s{seed}"


def budget_step(ctx: RunContext, budget: Budget) -> tuple[Budget, str]:
    """`match-sls` / `sls-mean` -> `keep:<k>` (see `bench.budget_resolution`)."""
    compute_k = partial(sls_k_now, ctx.config, ctx.transfer.model, ctx.calibration(),
                        ctx.data.task, ctx.seed, ctx.device)  # fmt: skip
    return resolve_budget(budget, ctx.pruner.name, ctx.config, ctx.settings.method,
                          ctx.transfer.key, ctx.known_k, compute_k)  # fmt: skip


def prune_and_measure(ctx: RunContext, budget: Budget) -> dict[str, float]:
    reset_peak_gpu_memory(ctx.device)
    pruned, metrics = prune_step(ctx, budget)
    metrics.update(transfer_metrics(ctx))
    metrics.update(accuracy_step(ctx, pruned))
    metrics.update(measure.efficiency(ctx.transfer.model, pruned.model, ctx.config.data.image_size,
                                      ctx.device, ctx.config.measure))  # fmt: skip
    metrics.update(budget_metrics(ctx, budget, pruned.model, metrics))
    metrics[R.BYTES_STORED] = store_step(ctx, pruned)
    if (peak := peak_gpu_memory_gb(ctx.device)) is not None:
        metrics[R.PEAK_GPU] = peak  # pruning, retraining and measurement
    log_step(ctx, pruned, metrics)
    return metrics


def prune_step(ctx: RunContext, budget: Budget) -> tuple[PruneResult, dict[str, float]]:
    """The pruner on a copy of the transferred model, timed."""
    prune_ctx = PruneContext(copy.deepcopy(ctx.transfer.model), ctx.calibration(),
                             ctx.data.task, budget, ctx.seed, ctx.device, ctx.workdir,
                             retrain_recipe(ctx.config))  # fmt: skip
    start = time.perf_counter()
    pruned = ctx.pruner.prune(prune_ctx)
    metrics = {R.PRUNE_SECONDS: time.perf_counter() - start}
    metrics.update({R.metric_of(ctx.pruner.name, k): v for k, v in pruned.metrics.items()})
    return pruned, metrics


def transfer_metrics(ctx: RunContext) -> dict[str, float]:
    ctx.run.log_history("transfer", ctx.transfer.result.history)
    result = ctx.transfer.result
    metrics = {R.TRANSFER_ACC: result.selected_acc, **training_metrics("transfer", result)}
    if result.selected_epoch is not None:
        metrics[R.TRANSFER_SELECTED_EPOCH] = result.selected_epoch
    if result.peak_gpu_memory_gb is not None:
        metrics[R.TRANSFER_PEAK_GPU] = result.peak_gpu_memory_gb
    return metrics


def accuracy_step(ctx: RunContext, pruned: PruneResult) -> dict[str, float]:
    """Retrain PETL + head (every pruner that asks, and the `retrained` control, with one recipe,
    seed and data order), then the headline accuracy. `train/epochs_after_transfer` counts every
    epoch trained after the transfer, the pruner's own included: a pruner that trained the
    recipe's first epochs itself is retrained for the rest only, so the total is the same."""
    tr = ctx.transfer
    epochs = {R.EPOCHS_AFTER_TRANSFER: float(pruned.epochs_trained)}
    if pruned.retrain:
        recipe = retrain_recipe(ctx.config)
        first = retrain_start_epoch(recipe, pruned.epochs_trained)
        train_loader, eval_loader = ctx.loaders(recipe)
        result = train(pruned.model, train_loader, eval_loader, recipe, ctx.device, ctx.seed,
                       "retrain", ctx.progress, start_epoch=first)  # fmt: skip
        ctx.run.log_history("retrain", result.history)
        epochs[R.EPOCHS_AFTER_TRANSFER] += recipe.epochs - first
        return {**headline(result), **training_metrics("retrain", result), **epochs}
    if pruned.model is tr.model or same_weights(pruned.model, tr.model):
        return {**headline(tr.result), **epochs}
    _, eval_loader = ctx.loaders(ctx.config.train)
    acc = evaluate(pruned.model, eval_loader, ctx.device, "eval", ctx.progress,
                   ctx.config.train.dtype)  # fmt: skip
    return {R.ACC: acc, R.ACC_BEST: acc, **epochs}


def budget_metrics(ctx: RunContext, budget: Budget, pruned: nn.Module, metrics) -> dict:
    unpruned = ctx.transfer.model
    requested = requested_budget(budget, num_blocks(unpruned), ctx.pruner.budget_axis,
                                 block_sizes(unpruned))  # fmt: skip
    achieved = achieved_budget(unpruned, pruned, metrics[R.MACS], metrics[R.MACS_UNPRUNED])
    return {**requested, **achieved}


def store_step(ctx: RunContext, pruned: PruneResult) -> int:
    """The per-task state file (rebuilds the deployed model on the shared backbone); its bytes."""
    config = ctx.config
    meta = {"task": ctx.data.task.name, "num_classes": ctx.data.task.num_classes,
            "weights": ctx.weights, "backbone": config.model.backbone,
            "model_kwargs": config.model.kwargs, "image_size": config.data.image_size,
            "petl": ctx.settings.to_dict(), "seed": ctx.seed, "pruner": ctx.pruner.name,
            "pruner_state": pruned.state}  # fmt: skip
    return save_task_state(pruned.model, ctx.workdir / TASK_STATE_FILE, meta)


def log_step(ctx: RunContext, pruned: PruneResult, metrics: dict[str, float]) -> None:
    run = ctx.run
    run.log_metrics(metrics)
    run.log_block_curves(metrics)  # `sls/score` etc. stepped by block, beside the flat names
    run.set_description(describe_step(ctx, metrics))
    if pruned.tags:
        run.set_tags(pruned.tags)
    run.log_dict(ctx.config.to_dict(), "config.json")
    run.log_dict(pruned.decision or {"pruner": ctx.pruner.name}, "decision.json")
    for path in [ctx.workdir / TASK_STATE_FILE, *pruned.artifacts]:
        run.log_artifact(path)


def dataset_step(ctx: RunContext) -> None:
    """The task's data as the run's MLflow dataset input (the runs table's Dataset column)."""
    d, data = ctx.config.data, ctx.data
    ctx.run.log_dataset(**dataset_input(
        data.task, data.source_name, d.data_dir, d.train_split, d.eval_split, len(data.train),
        len(data.eval), (data.train.key, data.eval.key), d.image_size))  # fmt: skip


def describe_step(ctx: RunContext, metrics: dict[str, float]) -> str:
    """The run's Markdown description; Δ against the controls already in the store."""
    controls = control_accuracies(ctx.run.client, ctx.run.experiment_id, ctx.transfer.key,
                                  ctx.config.data.eval_split)  # fmt: skip
    return run_description(ctx.data.task.name, ctx.settings.method, str(ctx.spec), ctx.seed,
                           metrics, controls, num_blocks(ctx.transfer.model))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the run set


def run_benchmark(config: RunConfig, progress: bool = True) -> list[Outcome]:
    resolve_input(config)  # the weights' input size and normalisation, where asked for
    checked = preflight(config)
    mark_dead_runs(config.suite, config.sweep.stale_after_s)  # left RUNNING by a killed process
    for why in checked.left_out.values():
        print(f"note: {why}", flush=True)
    device = resolve_device(config.device)
    config.data.task = checked.task.name
    weights = weights_id(config.model)
    data = load_data(config.data, checked.task, progress)
    if config.measure.threads:
        torch.set_num_threads(config.measure.threads)
    outcomes = []
    for seed in config.seeds:
        try:
            tr = transfer(config, data, checked.settings, seed, device, weights, progress)
        except Exception as err:  # every run of this seed fails with the transfer's error
            outcomes += [record_failure(config, data, checked.settings, spec, seed, weights,
                                        device, checked.family, err)
                         for spec in checked.methods]  # fmt: skip
            continue
        ctx = RunContext(config, data, checked.settings, device, weights, progress, seed, tr)
        for spec in checked.methods:
            outcome = run_method(ctx, spec)
            if outcome.status == "FINISHED" and R.SLS_K in outcome.metrics:
                ctx.known_k[tr.key] = int(outcome.metrics[R.SLS_K])
            outcomes.append(outcome)
    return outcomes


def record_failure(config: RunConfig, data: TaskData, settings: PetlSettings, spec: MethodSpec,
                   seed: int, weights: str, device: torch.device, family: str,
                   err: Exception) -> Outcome:  # fmt: skip
    """A FAILED run in the store for a (method, seed) that could not start (e.g. no transfer),
    with the params and tags a finished run would have."""
    pruner = make_pruner(spec.name, config.pruners.get(spec.name))
    budget = pruner.budget_for(spec, config.budget)
    params = run_params(config, data, settings, spec, pruner, budget, seed, weights, device)
    tags = {**run_tags(data, settings, spec, weights, device, family),
            R.CELL_KEY: cell_key(config, str(spec), seed, weights, pruner)}  # fmt: skip
    try:
        with TrackedRun(config.suite, run_name(data, settings, spec, seed), params, tags,
                        heartbeat=None):  # fmt: skip
            raise RuntimeError(f"transfer failed: {one_line(err)}") from err
    except RuntimeError as failure:
        return Outcome(str(spec), seed, "", "FAILED", {}, str(failure), data.task.name)
