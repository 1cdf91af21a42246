"""A benchmark run set: one task, one PETL method, several pruners and seeds.

Steps: check everything → load data → transfer (PETL training, cached by a hash of what produced
it and shared by every pruner) → for each pruner: prune → retrain → evaluate → measure → store →
log, as one MLflow run per (task, PETL, pruner, budget, seed).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

import bench.plugins  # noqa: F401  (registers SLS and the baselines)
from bench import measure
from bench.budget import achieved_budget, requested_budget
from bench.config import Recipe, RunConfig, flatten
from bench.data import BatchLoader, ImageSplit, cached_split, resolve_source
from bench.errors import UserError
from bench.models.backbone import create_backbone, weights_sha256
from bench.models.petl import PetlSettings, attach_petl, merged_copy, resolve_settings
from bench.paths import cache_dir
from bench.pruning import PRUNERS, Budget, PruneContext, make_pruner
from bench.state import save_task_state
from bench.tasks import TaskSpec, get_task
from bench.tracking import TrackedRun, client, environment_tags
from bench.train import TrainResult, evaluate, train

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


def preflight(config: RunConfig) -> tuple[TaskSpec, PetlSettings, list[str]]:
    """Every name and file checked before any training, so bad input fails in one line."""
    task = get_task(config.data.task)
    settings = resolve_settings(
        config.petl.method, task.name, config.petl.dim, config.petl.scale,
        config.petl.xavier_init, config.petl.dropout,
    )  # fmt: skip
    methods = [PRUNERS.canonical(m) for m in config.methods]
    for method in methods:
        make_pruner(method, config.pruners.get(method))
    if config.budget:
        Budget.parse(config.budget)
    create_backbone(  # raises a clear error for an unknown backbone or a checkpoint that does not fit
        config.model.backbone, task.num_classes, config.data.image_size, 0.0,
        config.model.checkpoint, config.model.pretrained, config.model.kwargs,
    )  # fmt: skip
    return task, settings, methods


def load_data(config: RunConfig, task: TaskSpec, progress: bool) -> TaskData:
    source = resolve_source(task, config.data.source, config.data.data_dir)
    d = config.data

    def split(name: str) -> ImageSplit:
        return cached_split(
            source, task, name, d.data_dir, d.image_size, d.interpolation, cache_dir(), progress
        )

    return TaskData(task, source.name, source.format, split(d.train_split), split(d.eval_split))


def loaders(config: RunConfig, data: TaskData, recipe: Recipe, device: torch.device, seed: int):
    """Training loader (shuffled, drop_last) and evaluation loader."""
    norm = config.data.normalization
    train_loader = BatchLoader(
        data.train, recipe.batch_size, device, norm, shuffle=True, drop_last=True, seed=seed
    )
    eval_loader = BatchLoader(data.eval, 256, device, norm)
    return train_loader, eval_loader


def calibration_loader(config: RunConfig, data: TaskData, device: torch.device) -> BatchLoader:
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
        "recipe": asdict(config.train),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :20
    ]


def cell_key(config: RunConfig, method: str, seed: int, weights: str) -> str:
    """What identifies one run of a sweep: its resolved config (task, model, PETL, recipes,
    measurement), the method and its settings, the budget (with SLS's settings when the budget is
    SLS's k), the seed and the backbone weights. A FINISHED run with this key is not run again."""
    values = config.to_dict()
    for name in ("methods", "seeds", "pruners", "sweep", "suite", "preset"):
        values.pop(name)
    pruner = make_pruner(method, config.pruners.get(method))
    budget = pruner.fixed_budget or config.budget
    payload = {"config": values, "method": PRUNERS.canonical(method), "settings": pruner.settings(),
               "budget": budget, "seed": seed, "weights": weights}  # fmt: skip
    if budget == "match-sls":
        payload["sls"] = make_pruner("sls", config.pruners.get("sls")).settings()
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
    train_loader, eval_loader = loaders(config, data, config.train, device, seed)
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
# one pruner


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


def run_method(
    config: RunConfig,
    data: TaskData,
    settings: PetlSettings,
    tr: Transfer,
    method: str,
    seed: int,
    device: torch.device,
    weights: str,
    progress: bool,
    known_k: dict[str, int] | None = None,
) -> Outcome:
    """One MLflow run; `known_k` holds SLS's k per transfer key from this run set (match-sls)."""
    pruner = make_pruner(method, config.pruners.get(method))
    known_k = {} if known_k is None else known_k
    budget = Budget(pruner.fixed_budget) if pruner.fixed_budget else Budget.parse(config.budget)
    params = run_params(config, data, settings, method, pruner.settings(), budget, seed, weights)
    tags = {**environment_tags(), **owner_tags(), "task": data.task.name, "group": data.task.group,
            "petl": settings.method, "pruner": method, "weights": weights,
            "cell.key": cell_key(config, method, seed, weights),
            "transfer.key": tr.key, "transfer.cached": str(tr.cached)}  # fmt: skip
    run_name = f"{data.task.name}-{settings.method}-{method}-s{seed}"
    try:
        with (
            TrackedRun(config.suite, run_name, params, tags) as run,
            tempfile.TemporaryDirectory() as tmp,
        ):
            budget, source = resolve_budget(budget, config, data, tr, seed, device, known_k)
            run.log_params({"budget.resolved": str(budget), "budget.source": source})
            metrics = _prune_and_measure(config, data, settings, tr, pruner, budget, seed, device, weights,
                                         run, Path(tmp), progress)  # fmt: skip
        return Outcome(method, seed, run.run_id, "FINISHED", metrics, task=data.task.name)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # recorded as FAILED in the store; the other runs go on
        error = f"{type(err).__name__}: {err}"
        return Outcome(method, seed, "", "FAILED", {}, error, data.task.name)


def _prune_and_measure(
    config, data, settings, tr, pruner, budget, seed, device, weights, run, tmp, progress
) -> dict[str, float]:
    ctx = PruneContext(copy.deepcopy(tr.model), calibration_loader(config, data, device), data.task,
                       budget, seed, device, tmp)  # fmt: skip
    start = time.perf_counter()
    pruned = pruner.prune(ctx)
    metrics = {"prune/seconds": time.perf_counter() - start}
    metrics.update({f"{pruner.name}/{k}": v for k, v in pruned.metrics.items()})
    metrics.update(_transfer_metrics(tr, run))
    metrics.update(_accuracy(config, data, pruned, tr, seed, device, run, progress))
    metrics.update(_efficiency(config, tr.model, pruned.model, device))
    metrics.update(requested_budget(budget, len(tr.model.blocks), pruner.budget_axis))
    metrics.update(
        achieved_budget(tr.model, pruned.model, metrics["macs"], metrics["macs_unpruned"])
    )
    meta = {"task": data.task.name, "num_classes": data.task.num_classes, "weights": weights,
            "backbone": config.model.backbone, "model_kwargs": config.model.kwargs,
            "image_size": config.data.image_size, "petl": settings.to_dict(), "seed": seed,
            "pruner": pruner.name, "pruner_state": pruned.state}  # fmt: skip
    state_file = tmp / "task_state.safetensors"
    metrics["bytes/stored"] = save_task_state(pruned.model, state_file, meta)
    run.log_metrics(metrics)
    if pruned.tags:
        run.set_tags(pruned.tags)
    run.log_dict(config.to_dict(), "config.json")
    run.log_dict(pruned.decision or {"pruner": pruner.name}, "decision.json")
    for path in [state_file, *pruned.artifacts]:
        run.log_artifact(path)
    return metrics


def resolve_budget(
    budget: Budget,
    config: RunConfig,
    data: TaskData,
    tr: Transfer,
    seed: int,
    device: torch.device,
    known_k: dict[str, int],
) -> tuple[Budget, str]:
    """`match-sls` -> `keep:<k>`, SLS's k for this transfer (same task, PETL model, seed): from
    this run set, else from a FINISHED sls run in the store with the same transfer key and SLS
    settings, else computed now (SLS on a copy, no retraining). Returns the budget and its source.
    """
    if budget.kind != "match-sls":
        return budget, "given"
    source, k = "run set", known_k.get(tr.key)
    if k is None:
        settings = make_pruner("sls", config.pruners.get("sls")).settings()
        source, k = "store", sls_k_from_store(tr.key, settings)
    if k is None:
        source, k = "computed", sls_k_computed(config, data, tr, seed, device)
    known_k[tr.key] = k
    return Budget("keep", k), source


def sls_k_from_store(key: str, settings: dict) -> int | None:
    """k of the newest FINISHED sls run on this transfer with these SLS settings, if any."""
    store = client()
    experiments = [e.experiment_id for e in store.search_experiments()]
    query = (
        f"tags.`transfer.key` = '{key}' and tags.pruner = 'sls' and attributes.status = 'FINISHED'"
    )
    for found in store.search_runs(experiments, query, order_by=["attributes.start_time DESC"]):
        params = found.data.params
        same = all(params.get(f"pruner.{name}") == str(v) for name, v in settings.items())
        if same and "sls/k" in found.data.metrics:
            return int(found.data.metrics["sls/k"])
    return None


def sls_k_computed(
    config: RunConfig, data: TaskData, tr: Transfer, seed: int, device: torch.device
) -> int:
    pruner = make_pruner("sls", config.pruners.get("sls"))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = PruneContext(copy.deepcopy(tr.model), calibration_loader(config, data, device),
                           data.task, Budget(pruner.fixed_budget or "auto"), seed, device, Path(tmp))  # fmt: skip
        return int(pruner.prune(ctx).metrics["k"])


def _transfer_metrics(tr: Transfer, run: TrackedRun) -> dict[str, float]:
    run.log_history("transfer", tr.result.history)
    return {"transfer/test_acc": tr.result.final_acc, "transfer/seconds": tr.result.seconds}


def _accuracy(config, data, pruned, tr, seed, device, run, progress) -> dict[str, float]:
    if pruned.retrain:
        recipe = retrain_recipe(config)
        train_loader, eval_loader = loaders(config, data, recipe, device, seed)
        result = train(
            pruned.model, train_loader, eval_loader, recipe, device, seed, "retrain", progress
        )
        run.log_history("retrain", result.history)
        return {"test/acc": result.final_acc, "test/acc_best_of_evals": result.best_acc,
                "retrain/seconds": result.seconds}  # fmt: skip
    if pruned.model is tr.model or _same_weights(pruned.model, tr.model):
        return {"test/acc": tr.result.final_acc, "test/acc_best_of_evals": tr.result.best_acc}
    _, eval_loader = loaders(config, data, config.train, device, seed)
    acc = evaluate(pruned.model, eval_loader, device, "eval", progress)
    return {"test/acc": acc, "test/acc_best_of_evals": acc}


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _efficiency(
    config: RunConfig, unpruned: nn.Module, pruned: nn.Module, device
) -> dict[str, float]:
    size = config.data.image_size
    metrics: dict[str, float] = measure.compare_throughput(
        unpruned, pruned, size, device, config.measure
    )
    merged_pruned, merged_unpruned = merged_copy(pruned), merged_copy(unpruned)
    if merged_pruned is not None:
        merged = measure.compare_throughput(
            merged_unpruned or unpruned, merged_pruned, size, device, config.measure
        )
        metrics.update({_merged_name(k): v for k, v in merged.items()})
        metrics["bytes/merged_backbone"] = measure.backbone_bytes(merged_pruned)
    metrics["macs"] = measure.count_macs(pruned, size, device)
    metrics["macs_unpruned"] = measure.count_macs(unpruned, size, device)
    metrics.update(measure.parameter_counts(pruned))
    metrics["params/total_unpruned"] = measure.parameter_counts(unpruned)["params/total"]
    metrics["blocks/kept"] = len(pruned.blocks)
    return metrics


def _merged_name(metric: str) -> str:
    """`speedup/bs1` -> `speedup_merged/bs1`: the same measurement with adapters merged."""
    family, _, batch = metric.partition("/")
    return f"{family}_merged/{batch}"


def run_params(config, data, settings, method, pruner_settings, budget, seed, weights) -> dict:
    values = config.to_dict()
    for name in ("methods", "seeds", "pruners", "sweep"):
        values.pop(name)
    params = flatten(values)
    params.update({f"petl.{k}": v for k, v in settings.to_dict().items()})
    params.update({f"pruner.{k}": v for k, v in pruner_settings.items()})
    params.update({"pruner": method, "seed": seed, "budget": str(budget), "weights": weights,
                   "data.task": data.task.name, "data.source": data.source_name,
                   "data.format": data.source_format, "data.task_version": data.task.version,
                   "retrain.resolved": json.dumps(asdict(retrain_recipe(config)))})  # fmt: skip
    params.update(measure.measure_settings(resolve_device(config.device), config.measure))
    return params


# ---------------------------------------------------------------------------------------------
# the run set


def run_benchmark(config: RunConfig, progress: bool = True) -> list[Outcome]:
    task, settings, methods = preflight(config)
    device = resolve_device(config.device)
    config.data.task = task.name
    weights = weights_id(config)
    data = load_data(config, task, progress)
    if config.measure.threads:
        torch.set_num_threads(config.measure.threads)
    outcomes = []
    for seed in config.seeds:
        try:
            tr = transfer(config, data, settings, seed, device, weights, progress)
        except Exception as err:  # every run of this seed fails with the transfer's error
            outcomes += [
                record_failure(config, data, settings, m, seed, weights, err) for m in methods
            ]
            continue
        known_k: dict[str, int] = {}
        for method in methods:
            outcome = run_method(
                config, data, settings, tr, method, seed, device, weights, progress, known_k
            )
            if outcome.status == "FINISHED" and "sls/k" in outcome.metrics:
                known_k[tr.key] = int(outcome.metrics["sls/k"])
            outcomes.append(outcome)
    return outcomes


def record_failure(config, data, settings, method, seed, weights, err: Exception) -> Outcome:
    """A FAILED run in the store for a (method, seed) that could not start (e.g. no transfer)."""
    params = {
        "pruner": method,
        "seed": seed,
        "data.task": data.task.name,
        "petl.method": settings.method,
    }
    tags = {**environment_tags(), **owner_tags(), "task": data.task.name, "petl": settings.method,
            "pruner": method, "weights": weights,
            "cell.key": cell_key(config, method, seed, weights)}  # fmt: skip
    run_name = f"{data.task.name}-{settings.method}-{method}-s{seed}"
    try:
        with TrackedRun(config.suite, run_name, params, tags):
            raise RuntimeError(f"transfer failed: {type(err).__name__}: {err}") from err
    except RuntimeError as failure:
        return Outcome(method, seed, "", "FAILED", {}, str(failure), data.task.name)
