"""What a `Budget` means in numbers: one rule for every pruner, so budgets match across methods.

A ViT's blocks are equal-sized, so keeping k of N blocks removes (N - k) / N of the backbone
*block* parameters; a width pruner aims at that same fraction, a layer-wise pruner at that k.
`match-sls` is resolved to `keep:<k>` by the harness (bench.run) before any pruner runs.
"""

from __future__ import annotations

from torch import nn

from bench import record as R
from bench.errors import UserError
from bench.models.petl import is_task_parameter
from bench.pruning import Budget


def blocks_to_keep(budget: Budget, num_blocks: int) -> int:
    """Blocks a layer-wise pruner keeps: keep:k -> k; params:f -> round(N (1 - f)); none -> N."""
    if budget.kind == "none":
        return num_blocks
    if budget.kind == "keep":
        k = _keep_value(budget, num_blocks)
    elif budget.kind == "params":
        k = round(num_blocks * (1.0 - float(budget.value)))
        if k < 1:
            raise UserError(f"budget {budget} removes every one of the {num_blocks} blocks")
    else:
        raise _unresolved(budget)
    return k


def param_fraction(budget: Budget, num_blocks: int) -> float:
    """Fraction of backbone block parameters to remove: keep:k -> (N - k) / N; params:f -> f."""
    if budget.kind == "none":
        return 0.0
    if budget.kind == "keep":
        return (num_blocks - _keep_value(budget, num_blocks)) / num_blocks
    if budget.kind == "params":
        return float(budget.value)
    raise _unresolved(budget)


def _keep_value(budget: Budget, num_blocks: int) -> int:
    k = int(budget.value)
    if k != budget.value or not 1 <= k <= num_blocks:
        raise UserError(f"budget {budget} makes no sense for {num_blocks} blocks: use keep:1..N")
    return k


def _unresolved(budget: Budget) -> UserError:
    return UserError(
        f"budget {budget!r} has no size here; match-sls must be resolved to keep:<k> first "
        "(bench.run does it), and auto/none budgets belong to pruners that choose their own"
    )


def backbone_block_params(model: nn.Module) -> int:
    """Frozen backbone parameters inside `model.blocks` (PETL modules and head excluded)."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if name.startswith("blocks.") and not is_task_parameter(model, name)
    )


def petl_params(model: nn.Module) -> int:
    """Stored PETL parameters (task parameters outside the head): what adapter pruners cut."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if not name.startswith("head.") and is_task_parameter(model, name)
    )


def requested_budget(budget: Budget, num_blocks: int, axis: str = "backbone") -> dict[str, float]:
    """The budget asked of a pruner, as a fraction of backbone block parameters, or of PETL
    parameters for a pruner whose `budget_axis` is "petl" (when it has one)."""
    if budget.kind not in ("keep", "params"):
        return {}
    name = R.PETL_TARGET_FRACTION if axis == "petl" else R.PARAMS_TARGET_FRACTION
    return {name: param_fraction(budget, num_blocks)}


def achieved_budget(
    unpruned: nn.Module, pruned: nn.Module, macs: float, macs_unpruned: float
) -> dict[str, float]:
    """The budget a pruner actually met: backbone block params, PETL params (the axis adapter
    pruners budget on) and whole-model MACs removed."""
    before, petl_before = backbone_block_params(unpruned), petl_params(unpruned)
    return {
        R.PARAMS_REMOVED_FRACTION: 1.0 - backbone_block_params(pruned) / before,
        R.PETL_REMOVED_FRACTION: 1.0 - petl_params(pruned) / petl_before if petl_before else 0.0,
        R.MACS_REMOVED_FRACTION: 1.0 - macs / macs_unpruned,
    }
