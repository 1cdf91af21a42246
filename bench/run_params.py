"""The params and tags of one run: the resolved config, flattened, plus what the run adds.

A run that could not start (its transfer failed) logs the same params as a finished one.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import torch

from bench import measure
from bench import record as R
from bench.cells import owner_tags
from bench.config import RunConfig, flatten
from bench.data.task_data import TaskData
from bench.models.petl import PetlSettings
from bench.pruning import Budget, MethodSpec, Pruner
from bench.tracking import environment_tags
from bench.train import retrain_recipe


def run_params(config: RunConfig, data: TaskData, settings: PetlSettings, spec: MethodSpec,
               pruner: Pruner, budget: Budget, seed: int, weights: str,
               device: torch.device) -> dict:  # fmt: skip
    params = flatten(config.run_values())
    params.update({f"{R.PETL_SETTING_PREFIX}{k}": v for k, v in settings.to_dict().items()})
    params.update({f"{R.PRUNER_SETTING_PREFIX}{k}": v for k, v in pruner.settings().items()})
    params.update({R.P_PRUNER: spec.name, R.P_METHOD: str(spec), R.P_SEED: seed,
                   R.P_BUDGET: str(budget), R.P_WEIGHTS: weights, R.P_TASK: data.task.name,
                   R.P_SOURCE: data.source_name, R.P_FORMAT: data.source_format,
                   R.P_TASK_VERSION: data.task.version,
                   R.P_RETRAIN_RESOLVED: json.dumps(asdict(retrain_recipe(config)))})  # fmt: skip
    params.update(measure.measure_settings(device, config.measure))
    return params


def run_tags(data: TaskData, settings: PetlSettings, spec: MethodSpec, weights: str,
             device: torch.device, family: str) -> dict[str, str]:  # fmt: skip
    """What a run is, as searchable tags (the transfer's tags are added once it exists)."""
    return {**environment_tags(), **owner_tags(), **measure.compute_tags(device),
            R.TASK: data.task.name, R.GROUP: data.task.group, R.PETL: settings.method,
            R.PRUNER: spec.name, R.WEIGHTS: weights, R.BACKBONE_FAMILY: family}  # fmt: skip
