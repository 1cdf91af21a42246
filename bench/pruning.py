"""The pruner contract: a pruner takes the trained PETL model of a task, calibration data and a
budget, and returns the pruned model with a record of its decision.

A pruner is a dataclass (its fields are its settings, filled from `pruners.<name>.*` in the
config, typed by their annotations) registered by name in `PRUNERS`, which gives it its `name`.
It declares the PETL methods and backbone families it prunes (`petl_methods`, `backbones`) and
checks its settings when built (`__post_init__`), so a run fails before any training.
`prune` decides and applies; `restore` re-applies a stored decision to a fresh PETL model so
per-task state files rebuild the deployed model.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from bench.config import Recipe, coerce
from bench.errors import UserError
from bench.models.family import NAMES as FAMILIES
from bench.models.family import family_of
from bench.models.petl import PETL_METHODS
from bench.registry import Registry
from bench.tasks import TaskSpec


@dataclass(frozen=True)
class Budget:
    """How much a pruner may remove: `none`, `match-sls` (SLS's k for the same transfer),
    `sls-mean` (the rounded mean of SLS's k over the suite), `keep:<k>` blocks,
    `params:<fraction>`."""

    kind: str
    value: float | None = None

    RESOLVED_BY_HARNESS = ("match-sls", "sls-mean")

    @classmethod
    def parse(cls, text: str) -> Budget:
        kind, _, value = text.strip().lower().partition(":")
        if kind in ("none", "auto", *cls.RESOLVED_BY_HARNESS) and not value:
            return cls(kind)
        try:
            if kind == "keep":
                return cls(kind, int(value))
            if kind == "params" and 0.0 <= float(value) < 1.0:
                return cls(kind, float(value))
        except ValueError:
            pass
        raise UserError(
            f"unknown budget {text!r}; use match-sls, sls-mean, keep:<blocks>, "
            "params:<fraction removed in [0,1)>"
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
    # The training budget after the transfer: the recipe the harness retrains with. A pruner
    # that trains (block_benefit) spends its first epochs and declares them in
    # `PruneResult.epochs_trained`; the harness trains the rest (`retrain_start_epoch`).
    recipe: Recipe = field(default_factory=Recipe)


@dataclass
class PruneResult:
    model: nn.Module
    state: dict[str, Any] = field(default_factory=dict)  # JSON: what `restore` needs
    decision: dict[str, Any] = field(default_factory=dict)  # JSON: what was decided and why
    metrics: dict[str, float] = field(default_factory=dict)  # logged as <pruner>/<name>
    artifacts: list[Path] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # e.g. what is stored, reconstruction notes
    retrain: bool = True  # whether the harness retrains PETL + head afterwards
    # Epochs the pruner itself trained, as the first epochs of `PruneContext.recipe`: they count
    # after the transfer, and the harness's retraining is shortened by them (same total).
    epochs_trained: float = 0.0


class Pruner(ABC):
    """Subclasses are dataclasses whose fields are their settings, typed by their annotations; a
    subclass checks their ranges in its `__post_init__`, after calling this one's."""

    name: ClassVar[str] = ""  # given by `PRUNERS.register`
    petl_methods: ClassVar[frozenset[str] | None] = None  # the PETL methods it prunes; None: all
    # backbone families it prunes (bench.models.family: vit, swin); `FAMILIES`: every one
    backbones: ClassVar[frozenset[str]] = frozenset({"vit"})
    fixed_budget: str | None = None  # set when the pruner ignores the run's budget ("none", "auto")
    default_budget: str | None = None  # replaces the run's `match-sls` default (e.g. "sls-mean")
    budget_axis: str = "backbone"  # what the budget's fraction removes: "backbone" | "petl" params
    # Settings that change how fast the pruner decides, never what: left out of `key_settings`.
    speed_only: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        """Each setting as its annotation says: strings (the command line) parsed, `Literal`
        choices checked, in one line such as "pruners.sls.alpha 'abc': expected a number"."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = coerce(getattr(self, f.name), hints[f.name], f"pruners.{self.name}.{f.name}")
            setattr(self, f.name, value)

    @abstractmethod
    def prune(self, ctx: PruneContext) -> PruneResult: ...

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        """Re-apply a stored decision to a fresh PETL model (before loading its tensors)."""
        return model

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self) if dataclasses.is_dataclass(self) else {}

    def key_settings(self) -> dict[str, Any]:
        """The settings that identify a run of this pruner (sweep cells, SLS runs to reuse)."""
        return {k: v for k, v in self.settings().items() if k not in self.speed_only}

    def same_model_as(self, budget: Budget) -> str | None:
        """The method whose model this pruner would build, trained the same way, at `budget`
        (then the harness does not run it twice); None when it builds its own."""
        return None

    def budget_for(self, spec: MethodSpec, run_budget: str) -> Budget:
        """The budget this run of the pruner gets: its fixed one, the method's own
        (`drop_last@keep:6`), or the run's, where `match-sls` may give way to its default."""
        if self.fixed_budget:
            if spec.budget:
                raise UserError(f"{spec.name} chooses its own budget; drop '@{spec.budget}'")
            return Budget.parse(self.fixed_budget)
        text = spec.budget or run_budget
        if text == "match-sls" and self.default_budget:
            text = self.default_budget
        return Budget.parse(text)


class PrunerRegistry(Registry[type[Pruner]]):
    """Pruner classes by name; registering one gives the class its `name`."""

    def register(self, name: str, obj=None, *, aliases: tuple[str, ...] = ()):
        def add(cls: type[Pruner]) -> type[Pruner]:
            super(PrunerRegistry, self).register(name, cls, aliases=aliases)
            cls.name = name
            return cls

        return add(obj) if obj is not None else add


PRUNERS = PrunerRegistry("method")


def backbone_family(model: nn.Module) -> str:
    """The family a backbone belongs to, as pruners declare it in `Pruner.backbones`."""
    return family_of(model).name


def check_supported(pruner: type[Pruner], petl: str, backbone: str | None = None) -> None:
    """A one-line UserError, with what to use instead, where `pruner` does not prune models of
    the PETL method `petl` on a backbone of the family `backbone` (None: not known yet)."""
    petl = PETL_METHODS.canonical(petl)
    instead = ",".join(_pruners_for(petl, backbone))
    if pruner.petl_methods is not None and petl not in pruner.petl_methods:
        supported = [p for p in PETL_METHODS.names() if p in pruner.petl_methods]
        raise UserError(
            f"{pruner.name} does not prune PETL {petl} models (it supports "
            f"{', '.join(supported)}); use PETL={supported[0]} or METHODS={instead}"
        )
    if backbone is not None and backbone not in pruner.backbones:
        raise UserError(
            f"{pruner.name} does not prune {backbone} backbones (it supports "
            f"{', '.join(sorted(pruner.backbones))}); use one of those or METHODS={instead}"
        )


def _pruners_for(petl: str, backbone: str | None) -> list[str]:
    """The registered pruners (not the controls) that prune this PETL method and backbone."""
    return [
        name
        for name, cls in PRUNERS.items()
        if cls.fixed_budget != "none"
        and (cls.petl_methods is None or petl in cls.petl_methods)
        and (backbone is None or backbone in cls.backbones)
    ]


@dataclass(frozen=True)
class MethodSpec:
    """A method as a run set names it: `sls`, or `drop_last@keep:6` with a budget of its own."""

    name: str
    budget: str | None = None

    @classmethod
    def parse(cls, text: str) -> MethodSpec:
        name, at, budget = text.strip().partition("@")
        if at and not budget.strip():
            raise UserError(f"method {text!r}: say a budget after '@', e.g. drop_last@keep:6")
        budget = str(Budget.parse(budget)) if at else None
        return cls(PRUNERS.canonical(name), budget)

    def __str__(self) -> str:
        return f"{self.name}@{self.budget}" if self.budget else self.name


def make_pruner(name: str, options: dict[str, Any] | None = None) -> Pruner:
    """The pruner `name` with its settings (`pruners.<name>.*`), checked as it is built."""
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

    fixed_budget = "none"
    backbones = FAMILIES

    def prune(self, ctx: PruneContext) -> PruneResult:
        return PruneResult(ctx.model, retrain=False)


@PRUNERS.register("retrained")
@dataclass
class Retrained(Pruner):
    """The control: the unpruned PETL model retrained with exactly the recipe, seed and data order
    the pruners get, so a pruner's gain over `none` can be told apart from what the extra epochs
    alone do."""

    fixed_budget = "none"
    backbones = FAMILIES

    def prune(self, ctx: PruneContext) -> PruneResult:
        return PruneResult(ctx.model, retrain=True)
