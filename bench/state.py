"""Per-task state: what must be stored, beside the shared frozen backbone, to rebuild a model.

One safetensors file holds the task tensors (PETL modules + head + whatever the pruner keeps)
and, as JSON metadata, how to rebuild: the backbone, the PETL settings, the pruner and its state.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from bench.models.petl import task_parameter_names

META_KEY = "sls_bench"


def task_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: model.get_parameter(n).detach().cpu().contiguous() for n in task_parameter_names(model)
    }


def save_task_state(model: nn.Module, path: Path, meta: dict[str, Any]) -> int:
    """Write the state file; returns its size in bytes (the `bytes/stored` metric)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(task_tensors(model), str(path), metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    return path.stat().st_size


def read_task_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as file:
        meta = json.loads(file.metadata()[META_KEY])
    return load_file(str(path)), meta


def rebuild(path: Path, build_petl_model: Callable[[dict[str, Any]], nn.Module]) -> nn.Module:
    """Fresh PETL model from `build_petl_model(meta)` (shared backbone + PETL modules), the
    pruner's structure re-applied, then the task tensors loaded; every one must fit exactly."""
    from bench.pruning import PRUNERS

    tensors, meta = read_task_state(path)
    model = build_petl_model(meta)
    model = PRUNERS.get(meta["pruner"]).restore(model, meta.get("pruner_state", {}))
    expected = set(task_parameter_names(model))
    if expected != set(tensors):
        missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
        raise ValueError(
            f"state {path.name} does not fit: missing {missing[:3]}, extra {extra[:3]}"
        )
    copy_tensors(model, tensors)
    return model


def load_task_tensors(model: nn.Module, path: Path) -> None:
    """Copy a state file's tensors into `model`'s parameters of the same names."""
    copy_tensors(model, load_file(str(path)))


def copy_tensors(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, tensor in tensors.items():
            model.get_parameter(name).copy_(tensor)
