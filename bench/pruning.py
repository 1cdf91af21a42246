"""The pruner contract: a pruner takes the trained PETL model of a task, calibration data and a
budget, and returns the pruned model with a record of its decision.

A pruner is a dataclass (its fields are its settings, filled from `pruners.<name>.*` in the
config) registered by name in `PRUNERS`. `prune` decides and applies; `restore` re-applies a
stored decision to a fresh PETL model so per-task state files rebuild the deployed model.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import UserError
from bench.registry import Registry
from bench.tasks import TaskSpec


@dataclass(frozen=True)
class Budget:
    """How much a pruner may remove: `none`, `match-sls`, `keep:<k>` blocks, `params:<fraction>`."""

    kind: str
    value: float | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        kind, _, value = text.strip().lower().partition(":")
        if kind in ("none", "match-sls") and not value:
            return cls(kind)
        try:
            if kind == "keep":
                return cls(kind, int(value))
            if kind == "params" and 0.0 <= float(value) < 1.0:
                return cls(kind, float(value))
        except ValueError:
            pass
        raise UserError(
            f"unknown budget {text!r}; use match-sls, keep:<blocks>, params:<fraction removed in [0,1)>"
        )

    def __str__(self) -> str:
        return self.kind if self.value is None else f"{self.kind}:{self.value:g}"


@dataclass
class PruneContext:
    model: nn.Module  # the trained PETL model (a copy the pruner may change)
    calibration: Any  # BatchLoader over train800val200, fixed order, never the test set
    task: TaskSpec
    budget: Budget
    seed: int
    device: torch.device
    artifact_dir: Path  # where the pruner may write plots / decision files to log


@dataclass
class PruneResult:
    model: nn.Module
    state: dict[str, Any] = field(default_factory=dict)  # JSON: what `restore` needs
    decision: dict[str, Any] = field(default_factory=dict)  # JSON: what was decided and why
    metrics: dict[str, float] = field(default_factory=dict)  # logged as <pruner>/<name>
    artifacts: list[Path] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # e.g. what is stored, reconstruction notes
    retrain: bool = True  # whether the harness retrains PETL + head afterwards


class Pruner(ABC):
    """Subclasses are dataclasses whose fields are their settings."""

    name: str = ""
    fixed_budget: str | None = None  # set when the pruner ignores the run's budget ("none", "auto")
    budget_axis: str = "backbone"  # what the budget's fraction removes: "backbone" | "petl" params

    @abstractmethod
    def prune(self, ctx: PruneContext) -> PruneResult: ...

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        """Re-apply a stored decision to a fresh PETL model (before loading its tensors)."""
        return model

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}


PRUNERS: Registry[type[Pruner]] = Registry("method")


def make_pruner(name: str, options: dict[str, Any] | None = None) -> Pruner:
    cls = PRUNERS.get(name)
    options = options or {}
    known = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(f"method {name!r} has no setting {unknown}; settings: {sorted(known)}")
    return cls(**options)


@PRUNERS.register("none")
@dataclass
class NoPruning(Pruner):
    """The unpruned PETL model: the reference every pruner is compared with."""

    name = "none"
    fixed_budget = "none"

    def prune(self, ctx: PruneContext) -> PruneResult:
        return PruneResult(ctx.model, retrain=False)
