"""What a `Budget` means in numbers: one rule for every pruner, so budgets match across methods.

A ViT's blocks are equal-sized, so keeping k of N blocks removes (N - k) / N of the backbone
*block* parameters; a width pruner aims at that same fraction, a layer-wise pruner at that k.
A Swin's blocks differ in width from stage to stage: given the blocks' sizes (`block_sizes`),
keeping the first k removes the share of the parameters in the last N - k blocks, and a
`params:f` budget keeps the depth whose removed share is nearest f.
`match-sls` is resolved to `keep:<k>` by the harness (bench.run) before any pruner runs.
"""

from __future__ import annotations

from torch import nn

from bench import record as R
from bench.errors import UserError
from bench.models.family import family_of
from bench.models.petl import is_task_parameter
from bench.pruning import Budget


def blocks_to_keep(budget: Budget, num_blocks: int, sizes: list[int] | None = None) -> int:
    """Blocks a layer-wise pruner keeps: keep:k -> k; params:f -> round(N (1 - f)) (with
    `sizes`: the k >= 1 whose last N - k blocks hold the share nearest f); none -> N."""
    if budget.kind == "none":
        return num_blocks
    if budget.kind == "keep":
        k = _keep_value(budget, num_blocks)
    elif budget.kind == "params":
        f = float(budget.value)
        if sizes is None:
            k = round(num_blocks * (1.0 - f))
        else:
            k = min(range(num_blocks + 1), key=lambda k: (abs(_removed(sizes, k) - f), k))
        if k < 1:
            raise UserError(f"budget {budget} removes every one of the {num_blocks} blocks")
    else:
        raise _unresolved(budget)
    return k


def param_fraction(budget: Budget, num_blocks: int, sizes: list[int] | None = None) -> float:
    """Fraction of backbone block parameters to remove: keep:k -> (N - k) / N (with `sizes`:
    the last N - k blocks' share); params:f -> f."""
    if budget.kind == "none":
        return 0.0
    if budget.kind == "keep":
        k = _keep_value(budget, num_blocks)
        return (num_blocks - k) / num_blocks if sizes is None else _removed(sizes, k)
    if budget.kind == "params":
        return float(budget.value)
    raise _unresolved(budget)


def _removed(sizes: list[int], k: int) -> float:
    """The share of block parameters in the blocks after the first k."""
    return sum(sizes[k:]) / sum(sizes)


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
    """Frozen backbone parameters inside the blocks (PETL modules and head excluded)."""
    return sum(_block_param_counts(model))


def block_sizes(model: nn.Module) -> list[int] | None:
    """Frozen backbone parameters of each block, or None where every block has as many (a ViT:
    then a depth's share is (N - k) / N)."""
    counts = _block_param_counts(model)
    return None if len(set(counts)) <= 1 else counts


def _block_param_counts(model: nn.Module) -> list[int]:
    prefixes = family_of(model).block_prefixes(model)
    counts = dict.fromkeys(prefixes, 0)
    for name, p in model.named_parameters():
        prefix = _block_prefix(name, prefixes)
        if prefix is not None and not is_task_parameter(model, name):
            counts[prefix] += p.numel()
    return list(counts.values())


def _block_prefix(name: str, prefixes: list[str]) -> str | None:
    return next((prefix for prefix in prefixes if name.startswith(prefix)), None)


def petl_params(model: nn.Module) -> int:
    """Stored PETL parameters (task parameters outside the head): what adapter pruners cut."""
    return sum(
        p.numel()
        for name, p in model.named_parameters()
        if not name.startswith("head.") and is_task_parameter(model, name)
    )


def requested_budget(budget: Budget, num_blocks: int, axis: str = "backbone",
                     sizes: list[int] | None = None) -> dict[str, float]:  # fmt: skip
    """The budget asked of a pruner, as a fraction of backbone block parameters (`sizes`: of
    blocks of unequal size), or of PETL parameters for a pruner whose `budget_axis` is "petl"
    (when it has one)."""
    if budget.kind not in ("keep", "params"):
        return {}
    name = R.PETL_TARGET_FRACTION if axis == "petl" else R.PARAMS_TARGET_FRACTION
    return {name: param_fraction(budget, num_blocks, sizes)}


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
