"""A benchmark run set: one task, one PETL method, several pruners and seeds.

Steps: check everything → load data → transfer (PETL training, cached by a hash of what produced
it and shared by every pruner) → for each pruner: prune → retrain → evaluate → measure → store →
log, as one MLflow run per (task, PETL, pruner, budget, seed). The steps of a run take one
`RunContext`. A method that would build another method's model, trained the same way
(`drop_last` at SLS's k), is left out with a note instead of being trained twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

import bench.plugins  # noqa: F401  (registers SLS and the baselines)
from bench import measure
from bench.budget import achieved_budget, requested_budget
from bench.config import Recipe, RunConfig, flatten
from bench.data import BatchLoader, ImageSplit, cached_split, resolve_source
from bench.describe import control_accuracies, dataset_input, run_description
from bench.errors import UserError
from bench.models.backbone import create_backbone, weights_sha256
from bench.models.petl import PetlSettings, attach_petl, merged_copy, resolve_settings
from bench.paths import cache_dir
from bench.pruning import (
    PRUNERS,
    Budget,
    MethodSpec,
    PruneContext,
    Pruner,
    PruneResult,
    backbone_family,
    check_supported,
    make_pruner,
)
from bench.state import save_task_state
from bench.tasks import TaskSpec, get_task
from bench.tracking import TrackedRun, client, environment_tags, one_line
from bench.train import (
    TrainResult,
    check_recipe,
    evaluate,
    peak_gpu_memory_gb,
    reset_peak_gpu_memory,
    retrain_start_epoch,
    train,
)

TRANSFER_FORMAT = 1


@dataclass
class TaskData:
    task: TaskSpec
    source_name: str
    source_format: str
    train: ImageSplit
    eval: ImageSplit


@dataclass
class Transfer:
    model: nn.Module  # the trained, unpruned PETL model
    result: TrainResult
    key: str
    cached: bool


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
# checks and inputs


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} asked for, but CUDA is not available here; use --device cpu"
        )
    return device


def weights_id(config: RunConfig) -> str:
    if config.model.checkpoint:
        return f"sha256:{weights_sha256(config.model.checkpoint)}"
    return f"hub:{config.model.backbone}" if config.model.pretrained else "random-init"


@dataclass
class Preflight:
    task: TaskSpec
    settings: PetlSettings
    methods: list[MethodSpec]  # what runs, in order
    left_out: dict[str, str]  # method -> why it is not run (it would duplicate another)
    num_blocks: int


def preflight(config: RunConfig) -> Preflight:
    """Every name and file checked before any training, so bad input fails in one line."""
    task = get_task(config.data.task)
    settings = resolve_settings(
        config.petl.method, task.name, config.petl.dim, config.petl.scale,
        config.petl.xavier_init, config.petl.dropout,
    )  # fmt: skip
    Budget.parse(config.budget)
    check_recipe(config.train)
    methods, left_out = plan_methods(config)
    backbone = create_backbone(  # a clear error for an unknown backbone or an unfitting checkpoint
        config.model.backbone, task.num_classes, config.data.image_size, 0.0,
        config.model.checkpoint, config.model.pretrained, config.model.kwargs,
    )  # fmt: skip
    for spec in methods:
        check_supported(PRUNERS.get(spec.name), settings.method, backbone_family(backbone))
    return Preflight(task, settings, methods, left_out, len(backbone.blocks))


def plan_methods(config: RunConfig) -> tuple[list[MethodSpec], dict[str, str]]:
    """The methods to run, each built with its settings and checked to prune the run's PETL
    method; those that would train another method's model again are left out with the reason.
    The settings of pruners not run (SLS's, for `match-sls`) are checked too."""
    for name, options in config.pruners.items():
        make_pruner(name, options)
    methods, left_out = [], {}
    for text in config.methods:
        spec = MethodSpec.parse(text)
        pruner = make_pruner(spec.name, config.pruners.get(spec.name))
        check_supported(type(pruner), config.petl.method)
        budget = pruner.budget_for(spec, config.budget)
        twin = pruner.same_model_as(budget)
        if twin:
            left_out[str(spec)] = (
                f"{spec} at {budget} builds {twin}'s model, trained the same way: not run "
                f"(its numbers are {twin}'s; give {spec.name} a depth with "
                f"{spec.name}@keep:<k> or BUDGET=keep:<k>)"
            )
        elif spec not in methods:
            methods.append(spec)
    return methods, left_out


def load_data(config: RunConfig, task: TaskSpec, progress: bool) -> TaskData:
    source = resolve_source(task, config.data.source, config.data.data_dir)
    d = config.data

    def split(name: str) -> ImageSplit:
        return cached_split(
            source, task, name, d.data_dir, d.image_size, d.interpolation, cache_dir(), progress
        )

    return TaskData(task, source.name, source.format, split(d.train_split), split(d.eval_split))


def data_loaders(config: RunConfig, data: TaskData, recipe: Recipe, device: torch.device,
                 seed: int):  # fmt: skip
    """Training loader (shuffled by the seed, drop_last) and evaluation loader."""
    norm = config.data.normalization
    train_loader = BatchLoader(
        data.train, recipe.batch_size, device, norm, shuffle=True, drop_last=True, seed=seed
    )
    eval_loader = BatchLoader(data.eval, recipe.eval_batch_size, device, norm)
    return train_loader, eval_loader


def loaders(ctx: RunContext, recipe: Recipe):
    return data_loaders(ctx.config, ctx.data, recipe, ctx.device, ctx.seed)


def calibration_loader(config: RunConfig, data: TaskData, device: torch.device) -> BatchLoader:
    """The training split (train800val200) in a fixed order; never the test set."""
    return BatchLoader(data.train, 250, device, config.data.normalization)


# ---------------------------------------------------------------------------------------------
# transfer


def build_petl_model(
    config: RunConfig, task: TaskSpec, settings: PetlSettings, seed: int, device: torch.device
) -> nn.Module:
    """Backbone + PETL modules, seeded so a random-init backbone and the PETL init reproduce."""
    torch.manual_seed(seed)
    model = create_backbone(
        config.model.backbone, task.num_classes, config.data.image_size, config.model.drop_path,
        config.model.checkpoint, config.model.pretrained, config.model.kwargs,
    )  # fmt: skip
    return attach_petl(model, settings).to(device)


def transfer_key(
    config: RunConfig, data: TaskData, settings: PetlSettings, seed: int, weights: str
) -> str:
    payload = {
        "format": TRANSFER_FORMAT,
        "task": [data.task.name, data.task.version],
        "data": [data.train.key, data.eval.key, config.data.normalization],
        "model": {**asdict(config.model), "checkpoint": None, "weights": weights},
        "petl": settings.to_dict(),
        "recipe": config.train.identity(),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :20
    ]


def cell_key(
    config: RunConfig, method: str, seed: int, weights: str, pruner: Pruner | None = None
) -> str:
    """What identifies one run of a sweep: its resolved config (task, model, PETL, recipes,
    measurement), the method and its settings (not the `speed_only` ones), the budget (with SLS's
    settings when the budget is SLS's k), the seed and the backbone weights. A FINISHED run with
    this key is not run again."""
    values = config.to_dict()
    for name in ("methods", "seeds", "pruners", "sweep", "suite", "preset"):
        values.pop(name)
    values["train"] = config.train.identity()
    spec = MethodSpec.parse(method)
    pruner = pruner or make_pruner(spec.name, config.pruners.get(spec.name))
    budget = str(pruner.budget_for(spec, config.budget))
    payload = {"config": values, "method": spec.name, "settings": pruner.key_settings(),
               "budget": budget, "seed": seed, "weights": weights}  # fmt: skip
    if budget in Budget.RESOLVED_BY_HARNESS:
        payload["sls"] = sls_settings(config)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :20
    ]


def owner_tags() -> dict[str, str]:
    """Which process runs this, so a sweep can tell a live run from one whose process died."""
    tags = {"owner.host": socket.gethostname(), "owner.pid": str(os.getpid())}
    if os.environ.get("SLURM_JOB_ID"):
        tags["slurm.job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def transfer(
    config: RunConfig,
    data: TaskData,
    settings: PetlSettings,
    seed: int,
    device: torch.device,
    weights: str,
    progress: bool,
) -> Transfer:
    """The trained 12-block PETL model: from the cache if this exact transfer ran before."""
    key = transfer_key(config, data, settings, seed, weights)
    folder = cache_dir() / "transfer" / key
    model = build_petl_model(config, data.task, settings, seed, device)
    if (folder / "result.json").exists():
        from safetensors.torch import load_file

        with torch.no_grad():
            for name, tensor in load_file(str(folder / "state.safetensors")).items():
                model.get_parameter(name).copy_(tensor)
        result = TrainResult(**json.loads((folder / "result.json").read_text()))
        return Transfer(model, result, key, cached=True)
    train_loader, eval_loader = data_loaders(config, data, config.train, device, seed)
    reset_peak_gpu_memory(device)
    result = train(
        model, train_loader, eval_loader, config.train, device, seed, "transfer", progress
    )
    store_transfer(model, result, key, folder)
    return Transfer(model, result, key, cached=False)


def store_transfer(model: nn.Module, result: TrainResult, key: str, folder: Path) -> None:
    """Written under a temporary name and renamed: a killed run never leaves a half entry."""
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    save_task_state(model, partial / "state.safetensors", {"transfer_key": key})
    (partial / "result.json").write_text(json.dumps(asdict(result)))
    if folder.exists() and not (folder / "result.json").exists():  # left by an older version
        shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(partial, folder)
    except OSError:  # another process stored the same transfer first: keep theirs
        shutil.rmtree(partial, ignore_errors=True)


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
        return calibration_loader(self.config, self.data, self.device)


def retrain_recipe(config: RunConfig) -> Recipe:
    base = config.train
    epochs = config.retrain.epochs or base.epochs
    if config.retrain.recipe == "released":
        return replace(base, epochs=epochs)
    if config.retrain.recipe == "constant":
        return replace(
            base, epochs=epochs, schedule="constant", lr=config.retrain.constant_lr, warmup_epochs=0
        )
    raise UserError(f"unknown retrain recipe {config.retrain.recipe!r}; use released or constant")


def run_method(ctx: RunContext, spec: MethodSpec) -> Outcome:
    """One MLflow run: resolve the budget → prune → retrain → evaluate → measure → store → log."""
    ctx = ctx.for_method(spec)
    budget = ctx.pruner.budget_for(spec, ctx.config.budget)
    key = cell_key(ctx.config, str(spec), ctx.seed, ctx.weights, ctx.pruner)
    tags = {**run_tags(ctx), "cell.key": key}
    run_name = f"{ctx.data.task.name}-{ctx.settings.method}-{spec}-s{ctx.seed}"
    claim = ctx.config.sweep.claim_cells
    try:
        tracked = TrackedRun(ctx.config.suite, run_name, run_params(ctx, budget), tags)
        with tracked as run, tempfile.TemporaryDirectory() as tmp:
            if claim and (owner := claim_cell(run.run_id, key)) != run.run_id:
                raise CellTaken(owner)  # another sweep runs this cell
            ctx = replace(ctx, run=run, workdir=Path(tmp))
            budget, source = resolve_budget(ctx, budget)
            run.log_params({"budget.resolved": str(budget), "budget.source": source})
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
        return _taken(ctx, spec, tracked.run_id, str(taken))
    except Exception as err:  # recorded FAILED in the store (traceback in error.txt); others go on
        return Outcome(str(spec), ctx.seed, "", "FAILED", {}, one_line(err), ctx.data.task.name)


class CellTaken(Exception):
    """Another sweep owns this cell (the message is its run id)."""


def _taken(ctx: RunContext, spec: MethodSpec, run_id: str, owner: str) -> Outcome:
    client().delete_run(run_id)
    return Outcome(str(spec), ctx.seed, owner, "TAKEN", {}, task=ctx.data.task.name)


def claim_cell(run_id: str, key: str) -> str:
    """Which run owns a sweep cell: of the cell's RUNNING and FINISHED runs, the first created
    (ties by run id). A sweep's new run checks this once it exists; every racer sees the same
    owner, so a cell that several sweeps planned at once runs once. A run checks when it starts
    and again before it finishes (a racer created in the same instant may not have been visible
    at the start); the loser's run is deleted."""
    store = client()
    experiment = store.get_run(run_id).info.experiment_id
    runs = store.search_runs([experiment], f"tags.`cell.key` = '{key}'", max_results=1000)
    runs = [r for r in runs if r.info.status in ("RUNNING", "FINISHED")]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    return min(finished or runs, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id


def prune_and_measure(ctx: RunContext, budget: Budget) -> dict[str, float]:
    reset_peak_gpu_memory(ctx.device)
    pruned, metrics = prune_step(ctx, budget)
    metrics.update(transfer_metrics(ctx))
    metrics.update(accuracy_step(ctx, pruned))
    metrics.update(efficiency_step(ctx, pruned.model))
    metrics.update(budget_metrics(ctx, budget, pruned.model, metrics))
    metrics["bytes/stored"] = store_step(ctx, pruned)
    if (peak := peak_gpu_memory_gb(ctx.device)) is not None:
        metrics["gpu/peak_memory_gb"] = peak  # pruning, retraining and measurement
    log_step(ctx, pruned, metrics)
    return metrics


def prune_step(ctx: RunContext, budget: Budget) -> tuple[PruneResult, dict[str, float]]:
    """The pruner on a copy of the transferred model, timed."""
    prune_ctx = PruneContext(copy.deepcopy(ctx.transfer.model), ctx.calibration(),
                             ctx.data.task, budget, ctx.seed, ctx.device, ctx.workdir,
                             retrain_recipe(ctx.config))  # fmt: skip
    start = time.perf_counter()
    pruned = ctx.pruner.prune(prune_ctx)
    metrics = {"prune/seconds": time.perf_counter() - start}
    metrics.update({f"{ctx.pruner.name}/{k}": v for k, v in pruned.metrics.items()})
    return pruned, metrics


def transfer_metrics(ctx: RunContext) -> dict[str, float]:
    ctx.run.log_history("transfer", ctx.transfer.result.history)
    result = ctx.transfer.result
    metrics = {"transfer/test_acc": result.final_acc, **training_metrics("transfer", result)}
    if result.peak_gpu_memory_gb is not None:
        metrics["transfer/peak_gpu_memory_gb"] = result.peak_gpu_memory_gb
    return metrics


def accuracy_step(ctx: RunContext, pruned: PruneResult) -> dict[str, float]:
    """Retrain PETL + head (every pruner that asks, and the `retrained` control, with one recipe,
    seed and data order), then the headline accuracy. `train/epochs_after_transfer` counts every
    epoch trained after the transfer, the pruner's own included: a pruner that trained the
    recipe's first epochs itself is retrained for the rest only, so the total is the same."""
    tr = ctx.transfer
    epochs = {"train/epochs_after_transfer": float(pruned.epochs_trained)}
    if pruned.retrain:
        recipe = retrain_recipe(ctx.config)
        first = retrain_start_epoch(recipe, pruned.epochs_trained)
        train_loader, eval_loader = loaders(ctx, recipe)
        result = train(pruned.model, train_loader, eval_loader, recipe, ctx.device, ctx.seed,
                       "retrain", ctx.progress, start_epoch=first)  # fmt: skip
        ctx.run.log_history("retrain", result.history)
        epochs["train/epochs_after_transfer"] += recipe.epochs - first
        return {**headline(result), **training_metrics("retrain", result), **epochs}
    if pruned.model is tr.model or _same_weights(pruned.model, tr.model):
        return {**headline(tr.result), **epochs}
    _, eval_loader = loaders(ctx, ctx.config.train)
    acc = evaluate(pruned.model, eval_loader, ctx.device, "eval", ctx.progress,
                   ctx.config.train.dtype)  # fmt: skip
    return {"test/acc": acc, "test/acc_best_of_evals": acc, **epochs}


def headline(result: TrainResult) -> dict[str, float]:
    """The last epoch's accuracy and, where periodic evaluations ran, the best of them."""
    metrics = {"test/acc": result.final_acc}
    if result.best_acc is not None:
        metrics["test/acc_best_of_evals"] = result.best_acc
    return metrics


def training_metrics(phase: str, result: TrainResult) -> dict[str, float]:
    """Where a training's time went: in all and in test evaluations, over how many epochs and
    evaluations."""
    return {f"{phase}/seconds": result.seconds, f"{phase}/eval_seconds": result.eval_seconds,
            f"{phase}/epochs": len(result.history),
            f"{phase}/evaluations": result.evaluations}  # fmt: skip


def efficiency_step(ctx: RunContext, pruned: nn.Module) -> dict[str, float]:
    """Throughput against the unpruned PETL model (interleaved; merged too where adapters merge),
    MACs and parameter counts."""
    config, unpruned, size = ctx.config, ctx.transfer.model, ctx.config.data.image_size
    start = time.perf_counter()
    metrics: dict[str, float] = measure.compare_throughput(
        unpruned, pruned, size, ctx.device, config.measure
    )
    merged_pruned, merged_unpruned = merged_copy(pruned), merged_copy(unpruned)
    if merged_pruned is not None:
        merged = measure.compare_throughput(
            merged_unpruned or unpruned, merged_pruned, size, ctx.device, config.measure
        )
        metrics.update({_merged_name(k): v for k, v in merged.items()})
        metrics["bytes/merged_backbone"] = measure.backbone_bytes(merged_pruned)
    metrics["macs"] = measure.count_macs(pruned, size, ctx.device)
    metrics["macs_unpruned"] = measure.count_macs(unpruned, size, ctx.device)
    metrics.update(measure.parameter_counts(pruned))
    metrics["params/total_unpruned"] = measure.parameter_counts(unpruned)["params/total"]
    metrics["blocks/kept"] = len(pruned.blocks)
    metrics["measure/seconds"] = time.perf_counter() - start
    return metrics


def budget_metrics(ctx: RunContext, budget: Budget, pruned: nn.Module, metrics) -> dict:
    unpruned = ctx.transfer.model
    requested = requested_budget(budget, len(unpruned.blocks), ctx.pruner.budget_axis)
    return {**requested,
            **achieved_budget(unpruned, pruned, metrics["macs"], metrics["macs_unpruned"])}  # fmt: skip


def store_step(ctx: RunContext, pruned: PruneResult) -> int:
    """The per-task state file (rebuilds the deployed model on the shared backbone); its bytes."""
    meta = {"task": ctx.data.task.name, "num_classes": ctx.data.task.num_classes,
            "weights": ctx.weights, "backbone": ctx.config.model.backbone,
            "model_kwargs": ctx.config.model.kwargs, "image_size": ctx.config.data.image_size,
            "petl": ctx.settings.to_dict(), "seed": ctx.seed, "pruner": ctx.pruner.name,
            "pruner_state": pruned.state}  # fmt: skip
    return save_task_state(pruned.model, ctx.workdir / "task_state.safetensors", meta)


def log_step(ctx: RunContext, pruned: PruneResult, metrics: dict[str, float]) -> None:
    run = ctx.run
    run.log_metrics(metrics)
    run.log_block_curves(metrics)  # `sls/score` etc. stepped by block, beside the flat names
    run.set_description(describe_step(ctx, metrics))
    if pruned.tags:
        run.set_tags(pruned.tags)
    run.log_dict(ctx.config.to_dict(), "config.json")
    run.log_dict(pruned.decision or {"pruner": ctx.pruner.name}, "decision.json")
    for path in [ctx.workdir / "task_state.safetensors", *pruned.artifacts]:
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
                           metrics, controls, len(ctx.transfer.model.blocks))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# budgets the harness resolves: match-sls (this transfer's SLS k), sls-mean (the suite's)


def resolve_budget(ctx: RunContext, budget: Budget) -> tuple[Budget, str]:
    """`match-sls` -> `keep:<k>`, SLS's k for this transfer (same task, PETL model, seed): from
    this run set, else from a FINISHED sls run in the store with the same transfer key and SLS
    settings, else computed now (SLS on a copy, no retraining). `sls-mean` -> `keep:<k>`, the
    rounded mean of SLS's k over the suite's finished runs of this PETL method and SLS settings.
    Returns the budget and where it came from."""
    if budget.kind == "sls-mean":
        return sls_mean_budget(ctx)
    if budget.kind != "match-sls":
        return budget, "given"
    key = ctx.transfer.key
    source, k = "run set", ctx.known_k.get(key)
    if k is None:
        source, k = "store", sls_k_from_store(key, sls_settings(ctx.config))
    if k is None:
        source, k = "computed", sls_k_computed(ctx)
    ctx.known_k[key] = k
    return Budget("keep", k), source


def sls_settings(config: RunConfig) -> dict:
    return make_pruner("sls", config.pruners.get("sls")).key_settings()


def _finished_sls_runs(query: str) -> list:
    store = client()
    experiments = [e.experiment_id for e in store.search_experiments()]
    query = f"tags.pruner = 'sls' and attributes.status = 'FINISHED' and {query}"
    runs = store.search_runs(experiments, query, order_by=["attributes.start_time DESC"])
    return [r for r in runs if "sls/k" in r.data.metrics]


def _same_settings(run, settings: dict) -> bool:
    return all(run.data.params.get(f"pruner.{name}") == str(v) for name, v in settings.items())


def sls_k_from_store(key: str, settings: dict) -> int | None:
    """k of the newest FINISHED sls run on this transfer with these SLS settings, if any."""
    for found in _finished_sls_runs(f"tags.`transfer.key` = '{key}'"):
        if _same_settings(found, settings):
            return int(found.data.metrics["sls/k"])
    return None


def sls_mean_budget(ctx: RunContext) -> tuple[Budget, str]:
    """The rounded mean of SLS's k over the suite: the newest finished run per (task, seed) of
    this PETL method, these SLS settings and this evaluation split."""
    config = ctx.config
    query = (f"tags.petl = '{ctx.settings.method}' and "
             f"params.`data.eval_split` = '{config.data.eval_split}'")  # fmt: skip
    settings, ks = sls_settings(config), {}
    for found in _finished_sls_runs(query):
        experiment = client().get_experiment(found.info.experiment_id).name
        cell = (found.data.tags.get("task"), found.data.params.get("seed"))
        if experiment == config.suite and _same_settings(found, settings):
            ks.setdefault(cell, int(found.data.metrics["sls/k"]))
    if not ks:
        raise UserError(
            f"{ctx.pruner.name} keeps the rounded mean of SLS's k over suite {config.suite!r}, "
            f"which has no finished sls run with PETL {ctx.settings.method}: run sls first "
            "(e.g. METHODS=sls," + ctx.pruner.name + ") or give BUDGET=keep:<k>"
        )
    k = int(math.floor(sum(ks.values()) / len(ks) + 0.5))
    return Budget("keep", k), f"mean of SLS's k over {len(ks)} (task, seed) runs of the suite"


def sls_k_computed(ctx: RunContext) -> int:
    pruner = make_pruner("sls", ctx.config.pruners.get("sls"))
    with tempfile.TemporaryDirectory() as tmp:
        prune_ctx = PruneContext(copy.deepcopy(ctx.transfer.model), ctx.calibration(),
                                 ctx.data.task, Budget.parse(pruner.fixed_budget), ctx.seed,
                                 ctx.device, Path(tmp))  # fmt: skip
        return int(pruner.prune(prune_ctx).metrics["k"])


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _merged_name(metric: str) -> str:
    """`speedup/bs1` -> `speedup_merged/bs1`: the same measurement with adapters merged."""
    family, _, batch = metric.partition("/")
    return f"{family}_merged/{batch}"


def run_params(ctx: RunContext, budget: Budget) -> dict:
    """The fully resolved config, flattened, plus what this run adds (method, budget, data)."""
    config, data = ctx.config, ctx.data
    values = config.to_dict()
    for name in ("methods", "seeds", "pruners", "sweep"):
        values.pop(name)
    params = flatten(values)
    params.update({f"petl.{k}": v for k, v in ctx.settings.to_dict().items()})
    params.update({f"pruner.{k}": v for k, v in ctx.pruner.settings().items()})
    params.update({"pruner": ctx.spec.name, "method": str(ctx.spec), "seed": ctx.seed,
                   "budget": str(budget), "weights": ctx.weights, "data.task": data.task.name,
                   "data.source": data.source_name, "data.format": data.source_format,
                   "data.task_version": data.task.version,
                   "retrain.resolved": json.dumps(asdict(retrain_recipe(config)))})  # fmt: skip
    params.update(measure.measure_settings(ctx.device, config.measure))
    return params


def run_tags(ctx: RunContext) -> dict[str, str]:
    return {**environment_tags(), **owner_tags(), **measure.compute_tags(ctx.device),
            "task": ctx.data.task.name,
            "group": ctx.data.task.group, "petl": ctx.settings.method, "pruner": ctx.spec.name,
            "weights": ctx.weights, "transfer.key": ctx.transfer.key,
            "transfer.cached": str(ctx.transfer.cached)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the run set


def run_benchmark(config: RunConfig, progress: bool = True) -> list[Outcome]:
    checked = preflight(config)
    for why in checked.left_out.values():
        print(f"note: {why}", flush=True)
    device = resolve_device(config.device)
    config.data.task = checked.task.name
    weights = weights_id(config)
    data = load_data(config, checked.task, progress)
    if config.measure.threads:
        torch.set_num_threads(config.measure.threads)
    outcomes = []
    for seed in config.seeds:
        try:
            tr = transfer(config, data, checked.settings, seed, device, weights, progress)
        except Exception as err:  # every run of this seed fails with the transfer's error
            outcomes += [record_failure(config, data, checked.settings, str(m), seed, weights, err)
                         for m in checked.methods]  # fmt: skip
            continue
        ctx = RunContext(config, data, checked.settings, device, weights, progress, seed, tr)
        for spec in checked.methods:
            outcome = run_method(ctx, spec)
            if outcome.status == "FINISHED" and "sls/k" in outcome.metrics:
                ctx.known_k[tr.key] = int(outcome.metrics["sls/k"])
            outcomes.append(outcome)
    return outcomes


def record_failure(config, data, settings, method: str, seed, weights, err: Exception) -> Outcome:
    """A FAILED run in the store for a (method, seed) that could not start (e.g. no transfer)."""
    spec = MethodSpec.parse(method)
    params = {"pruner": spec.name, "method": method, "seed": seed, "data.task": data.task.name,
              "petl.method": settings.method}  # fmt: skip
    tags = {**environment_tags(), **owner_tags(), "task": data.task.name, "petl": settings.method,
            "pruner": spec.name, "weights": weights,
            "cell.key": cell_key(config, method, seed, weights)}  # fmt: skip
    run_name = f"{data.task.name}-{settings.method}-{method}-s{seed}"
    try:
        with TrackedRun(config.suite, run_name, params, tags, heartbeat=None):
            raise RuntimeError(f"transfer failed: {one_line(err)}") from err
    except RuntimeError as failure:
        return Outcome(method, seed, "", "FAILED", {}, str(failure), data.task.name)
