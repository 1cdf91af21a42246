"""Every name, file and pairing checked before anything is decoded or trained, so bad input
fails in one line: the task, the PETL settings, the budget, the recipe, the transfer's settings,
every pruner with its settings, the backbone with its checkpoint, the (PETL method, backbone
family) pair and each (pruner, PETL method, backbone family) pair."""

from __future__ import annotations

from dataclasses import dataclass

from bench.config import RunConfig
from bench.models.build import build_backbone
from bench.models.family import family_of
from bench.models.petl import PetlSettings, check_petl_backbone, resolve_settings
from bench.pruning import PRUNERS, Budget, MethodSpec, check_supported, make_pruner
from bench.tasks import TaskSpec, get_task
from bench.train import check_recipe
from bench.transfer import check_transfer


@dataclass
class Preflight:
    task: TaskSpec
    settings: PetlSettings
    methods: list[MethodSpec]  # what runs, in order
    left_out: dict[str, str]  # method -> why it is not run (it would duplicate another)
    num_blocks: int
    family: str  # the backbone's (bench.models.family)


def preflight(config: RunConfig) -> Preflight:
    """Every name and file checked before any training, so bad input fails in one line."""
    task = get_task(config.data.task)
    p = config.petl
    settings = resolve_settings(p.method, task.name, p.dim, p.scale, p.xavier_init, p.dropout)
    Budget.parse(config.budget)
    check_recipe(config.train)
    check_transfer(config)
    methods, left_out = plan_methods(config)
    # a clear error for an unknown backbone or an unfitting checkpoint
    backbone = build_backbone(config.model, task.num_classes, config.data.image_size, 0.0)
    family = family_of(backbone)
    check_petl_backbone(settings.method, family.name)
    for spec in methods:
        check_supported(PRUNERS.get(spec.name), settings.method, family.name)
    return Preflight(task, settings, methods, left_out, family.num_blocks(backbone), family.name)


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
