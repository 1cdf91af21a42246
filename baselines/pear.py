"""Pear-style adapter pruning and sharing: a RECONSTRUCTION from the paper, not the authors' code.

Pear (Zhong & Zhou, arXiv 2409.19733): the original Pear code could not be checked (no public
code was found), and only the abstract and a review of the paper were readable. What is
reconstructed from them: adapters are scored by first-order Taylor importance, the least
important are pruned to a target ratio of adapter parameters, each pruned position then *shares*
(reuses, and keeps training) a kept adapter, and a "knowledge checkpoint" preserves what the
pruned adapters had learnt. The choices made here, none of them checked against Pear's code:

- warm-up: the transfer (PETL training) that produced the model; no extra warm-up here;
- score of an adapter: sum over its parameters of |theta * dL/dtheta|, with dL/dtheta the
  cross-entropy gradient summed over seeded calibration batches (eval mode, no step);
- sharing: a pruned position reuses the nearest kept adapter of the same role (attention or MLP
  branch), ties broken by the higher score; the shared adapter is one module at both positions,
  so retraining (by the harness, same recipe as every pruner) trains it for all of them;
- knowledge checkpoint: off by default (`fold="none"`): the shared adapter keeps its own
  weights, and the retraining carries what the task needs. Averaging the weights of independently
  initialised nonlinear bottlenecks does not preserve what either computed (their hidden units
  are not aligned), so it is not the default; the score-weighted average of the kept adapter and
  the pruned ones that now share it (`fold="taylor"`) and the plain average (`fold="mean"`)
  remain as labelled options.

Pear prunes adapters, not the backbone: it reduces stored parameters, not compute (with RepAdapter,
merged, not even the unmerged adapter cost: each position folds its shared adapter into its own
qkv and fc1). Stored per task:
the kept adapters + the sharing map (JSON state) + the head. The budget is a fraction of PETL
parameters (`budget_axis = "petl"`): keep:k of N blocks removes (N - k) / N of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench.budget import param_fraction
from bench.errors import UserError
from bench.models.calibration import sample_calibration
from bench.models.petl import AdapterBlock, PetlModule, freeze_backbone
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult

RECONSTRUCTION = (
    "Pear-style reconstruction from the paper's abstract and a review (the original code could "
    "not be checked): Taylor-scored adapters, pruned positions share the nearest kept adapter"
)
Fold = Literal["none", "taylor", "mean"]
FOLDS: dict[Fold, str] = {
    "none": "no weight folding: the shared adapter keeps its own weights",
    "taylor": "pruned adapters folded into the shared one (score-weighted average of weights)",
    "mean": "pruned adapters folded into the shared one (plain average of weights)",
}


@PRUNERS.register("pear")
@dataclass
class Pear(Pruner):
    """Prunes the least important adapters (first-order Taylor) to a ratio of PETL parameters;
    every pruned position shares the nearest kept adapter (weights folded in only with `fold`).
    A Pear-style reconstruction from the paper (the original code could not be checked): see the
    module docstring for what is and is not from the paper."""

    budget_axis = "petl"
    # the per-block adapter methods: LoRA's updates wrap the frozen qkv, SPLoRA's every Linear
    petl_methods = frozenset({"convpass", "adapter", "repadapter"})

    batches: int = 10  # calibration batches for the Taylor gradients
    batch_size: int = 32
    fold: Fold = "none"  # knowledge checkpoint: none | taylor (score-weighted mean) | mean
    tolerance: float = 0.05  # |achieved - target| as a fraction of PETL parameters

    def prune(self, ctx: PruneContext) -> PruneResult:
        model = ctx.model
        adapters = adapter_paths(model)
        target = param_fraction(ctx.budget, len(model.blocks))
        images, labels = sample_calibration(
            ctx.calibration, self.batches * self.batch_size, ctx.seed
        )
        scores = taylor_scores(model, adapters, images, labels, self.batch_size)
        pruned = choose_pruned(model, adapters, scores, target)
        sharing = sharing_map(adapters, pruned, scores)
        fold_adapters(model, sharing, scores, self.fold)
        apply_sharing(model, sharing)
        freeze_backbone(model)
        sizes = {p: _numel(model.get_submodule(p)) for p in adapters}
        achieved = sum(sizes[p] for p in pruned) / sum(sizes.values())
        if abs(achieved - target) > self.tolerance:
            raise RuntimeError(
                f"pear: pruning {len(pruned)} of {len(adapters)} adapters removes {achieved:.3f} "
                f"of the PETL parameters, target {target:.3f} ± {self.tolerance}"
            )
        decision = {
            "reconstruction": RECONSTRUCTION,
            "knowledge_checkpoint": FOLDS[self.fold],
            "scores": scores,
            "pruned": pruned,
            "sharing": sharing,
            "target_fraction": target,
            "petl_removed_fraction": achieved,
            "settings": self.settings(),
        }
        metrics = {
            "target_fraction": target,
            "petl_removed_fraction": achieved,
            "adapters_kept": float(len(adapters) - len(pruned)),
            "adapters_pruned": float(len(pruned)),
        }
        metrics.update({f"score/{p}": s for p, s in scores.items()})
        tags = {
            "reconstruction": RECONSTRUCTION,
            "pear.fold": FOLDS[self.fold],
            "stored.deployed": "kept adapters + sharing map + head",
        }
        return PruneResult(model, {"sharing": sharing}, decision, metrics, tags=tags, retrain=True)

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        adapter_paths(model)  # checks the PETL method is one Pear can share
        apply_sharing(model, state["sharing"])
        freeze_backbone(model)
        return model


def adapter_paths(model: nn.Module) -> list[str]:
    """Module paths of every per-block adapter (Convpass and RepAdapter: 2 a block, AdaptFormer:
    1), in order; an adapter's role is its attribute name in the block (`adapter_roles`)."""
    paths = []
    for i, block in enumerate(model.blocks):
        if not isinstance(block, AdapterBlock):
            raise UserError(
                "pear shares per-block adapters (convpass, adapter, repadapter); this PETL method "
                "has none (LoRA's updates wrap the frozen qkv and cannot be shared between blocks)"
            )
        paths += [f"blocks.{i}.{r}" for r in block.adapter_roles if getattr(block, r) is not None]
    if len(paths) < 2:
        raise UserError("pear needs at least two adapters to share")
    return paths


def taylor_scores(
    model: nn.Module,
    adapters: list[str],
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
) -> dict[str, float]:
    """First-order Taylor importance of each adapter: sum |theta * dL/dtheta| over its
    parameters, with the cross-entropy gradient summed over the batches (eval mode, no step)."""
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    try:
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
            F.cross_entropy(model(x), y).backward()
        scores = {}
        for path in adapters:
            params = model.get_submodule(path).parameters()
            total = sum((p.detach() * p.grad).abs().sum() for p in params if p.grad is not None)
            scores[path] = float(total)
        return scores
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)


def choose_pruned(
    model: nn.Module, adapters: list[str], scores: dict[str, float], target: float
) -> list[str]:
    """The lowest-scored adapters whose parameters come closest to `target` of the total
    (adapters are equal-sized in practice; at least one adapter is kept)."""
    sizes = [_numel(model.get_submodule(p)) for p in adapters]
    total = sum(sizes)
    ranked = sorted(range(len(adapters)), key=lambda i: (scores[adapters[i]], i))
    pruned, removed = [], 0
    for i in ranked[:-1]:
        if abs(removed + sizes[i] - target * total) >= abs(removed - target * total):
            break
        pruned.append(i)
        removed += sizes[i]
    return [adapters[i] for i in sorted(pruned)]


def sharing_map(adapters: list[str], pruned: list[str], scores: dict[str, float]) -> dict[str, str]:
    """Pruned path -> the kept adapter it shares: the nearest kept one of the same role (any
    role if none is left), ties broken by the higher score, then the earlier block."""
    kept = [p for p in adapters if p not in pruned]

    def block(path: str) -> int:
        return int(path.split(".")[1])

    sharing = {}
    for path in pruned:
        role = path.split(".")[-1]
        pool = [k for k in kept if k.endswith(role)] or kept
        sharing[path] = min(pool, key=lambda k: (abs(block(k) - block(path)), -scores[k], block(k)))
    return sharing


@torch.no_grad()
def fold_adapters(
    model: nn.Module, sharing: dict[str, str], scores: dict[str, float], fold: str
) -> None:
    """The optional knowledge checkpoint (`fold` taylor | mean): each shared adapter becomes the
    (score-weighted) average of itself and the adapters it replaces; `none` leaves it as is."""
    if fold == "none":
        return
    groups: dict[str, list[str]] = {}
    for pruned, kept in sharing.items():
        groups.setdefault(kept, [kept]).append(pruned)
    for members in groups.values():
        weights = torch.tensor([scores[m] if fold == "taylor" else 1.0 for m in members])
        weights = (
            weights / weights.sum()
            if weights.sum() > 0
            else torch.full_like(weights, 1.0 / len(members))
        )
        modules = [model.get_submodule(m) for m in members]
        for name, param in modules[0].named_parameters():
            stacked = torch.stack([m.get_parameter(name) for m in modules])
            shape = (-1,) + (1,) * param.dim()
            param.copy_((stacked * weights.view(shape).to(stacked)).sum(0))


def apply_sharing(model: nn.Module, sharing: dict[str, str]) -> None:
    """Point each pruned position at the module of its kept adapter (one module, shared)."""
    for pruned, kept in sharing.items():
        if kept in sharing:
            raise ValueError(f"pear: {pruned} would share {kept}, which is itself pruned")
        parent, _, role = pruned.rpartition(".")
        setattr(model.get_submodule(parent), role, model.get_submodule(kept))


def _numel(module: nn.Module) -> int:
    if not isinstance(module, PetlModule):
        raise TypeError(f"not a PETL module: {type(module).__name__}")
    return sum(p.numel() for p in module.parameters())
