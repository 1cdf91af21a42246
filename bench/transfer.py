"""The transfer: the PETL model trained on one task and seed, shared by every pruner of a run set.

Cached under `<cache>/transfer/<key>`, the key a hash of everything that produced it (task and
data, backbone weights, PETL settings, the recipe's identity, the seed). An entry is written
under a temporary name and renamed, so a killed run never leaves half of one. Its manifest
(`manifest.json`: the size and SHA-256 of the state and the result) is checked on every read, then
the state's tensors against the model's task parameters (names, shapes, finite values) and the
result record; a damaged entry is set aside and trained again (`bench.cache_entry`). An entry of
an older version (no manifest) gets every check but the checksums, then its manifest.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from torch import nn

from bench.cache_entry import (
    Damaged,
    check_files,
    read_manifest,
    require,
    set_aside,
    write_manifest,
)
from bench.config import RunConfig
from bench.data.task_data import TaskData, data_loaders
from bench.errors import UserError
from bench.keys import stable_hash
from bench.models.build import build_petl_model
from bench.models.petl import PetlSettings, task_parameter_names
from bench.paths import cache_dir
from bench.state import META_KEY, copy_tensors, save_task_state
from bench.train import TrainResult, reset_peak_gpu_memory, train

TRANSFER_FORMAT = 2  # 2: Convpass branches drop-pathed apart from attention (training changed)
CHECKPOINTS = ("last", "best_of_evals")
STATE_FILE = "state.safetensors"
RESULT_FILE = "result.json"
MANIFEST_FILE = "manifest.json"


@dataclass
class Transfer:
    model: nn.Module  # the trained, unpruned PETL model
    result: TrainResult
    key: str
    cached: bool


def transfer_key(
    config: RunConfig, data: TaskData, settings: PetlSettings, seed: int, weights: str
) -> str:
    payload = {
        "format": TRANSFER_FORMAT,
        "task": [data.task.name, data.task.version],
        "data": [data.train.key, data.eval.key, data.normalization],
        "model": {**asdict(config.model), "checkpoint": None, "weights": weights},
        "petl": settings.to_dict(),
        "recipe": config.train.identity(),
        "seed": seed,
        "checkpoint": config.transfer.checkpoint,
    }
    return stable_hash(payload)


def transfer(config: RunConfig, data: TaskData, settings: PetlSettings, seed: int,
             device: torch.device, weights: str, progress: bool) -> Transfer:  # fmt: skip
    """The trained PETL model: from the cache if this exact transfer ran before."""
    key = transfer_key(config, data, settings, seed, weights)
    folder = cache_dir() / "transfer" / key
    model = build_petl_model(config.model, config.data, data.task.num_classes, settings, seed,
                             device)  # fmt: skip
    if folder.exists():
        try:
            return Transfer(model, load_transfer(model, key, folder), key, cached=True)
        except Damaged as damage:
            set_aside(damage, [folder], cache_dir())
    train_loader, eval_loader = data_loaders(data, config.train, device, seed)
    reset_peak_gpu_memory(device)
    keep_best = config.transfer.checkpoint == "best_of_evals"
    result = train(model, train_loader, eval_loader, config.train, device, seed, "transfer",
                   progress, keep_best=keep_best)  # fmt: skip
    store_transfer(model, result, key, folder)
    return Transfer(model, result, key, cached=False)


def check_transfer(config: RunConfig) -> None:
    """The transfer's settings, before anything is decoded or trained."""
    checkpoint = config.transfer.checkpoint
    if checkpoint not in CHECKPOINTS:
        raise UserError(
            f"transfer.checkpoint {checkpoint!r}: expected one of {', '.join(CHECKPOINTS)}"
        )
    if checkpoint == "best_of_evals" and config.train.eval_every == 0:
        raise UserError(
            "transfer.checkpoint=best_of_evals selects among periodic evaluations, but "
            "train.eval_every=0 evaluates the last epoch only: set train.eval_every (e.g. 10)"
        )


def load_transfer(model: nn.Module, key: str, folder: Path) -> TrainResult:
    """The entry's tensors copied into `model` once every check passed; its training result.
    Raises `Damaged` naming the first file that fails (the model is then untouched)."""
    state, result_file, manifest = (folder / n for n in (STATE_FILE, RESULT_FILE, MANIFEST_FILE))
    require([state, result_file])
    adopt = not manifest.exists()  # an older version's entry
    if not adopt:
        check_files(read_manifest(manifest), [state, result_file])
    try:
        result = TrainResult(**json.loads(result_file.read_text()))
        float(result.final_acc)
    except (ValueError, TypeError) as err:
        raise Damaged(result_file, f"the record does not parse ({type(err).__name__})") from err
    tensors = _checked_tensors(model, key, state)
    copy_tensors(model, tensors)
    if adopt:
        write_manifest(manifest, [state, result_file])
    return result


def _checked_tensors(model: nn.Module, key: str, state: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(state), framework="pt") as file:
            stored_key = json.loads((file.metadata() or {}).get(META_KEY, "{}")).get("transfer_key")
        tensors = load_file(str(state))
    except (SafetensorError, OSError, ValueError) as err:
        raise Damaged(state, f"does not load ({type(err).__name__}: {err})") from err
    if stored_key != key:
        raise Damaged(state, f"holds transfer {stored_key!r}, not {key!r}")
    expected = {n: model.get_parameter(n).shape for n in task_parameter_names(model)}
    found = {n: t.shape for n, t in tensors.items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or [n for n in found if found[n] != expected[n]]
        raise Damaged(state, f"its tensors do not fit the model ({wrong[0]}, ...)")
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise Damaged(state, "holds NaN or infinite values")
    return tensors


def store_transfer(model: nn.Module, result: TrainResult, key: str, folder: Path) -> None:
    """Written under a temporary name and renamed: a killed run never leaves a half entry."""
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    save_task_state(model, partial / STATE_FILE, {"transfer_key": key})
    (partial / RESULT_FILE).write_text(json.dumps(asdict(result)))
    write_manifest(partial / MANIFEST_FILE, [partial / STATE_FILE, partial / RESULT_FILE])
    try:
        os.replace(partial, folder)
    except OSError:  # another process stored the same transfer first: keep theirs
        shutil.rmtree(partial, ignore_errors=True)
