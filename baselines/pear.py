"""Pear-style adapter pruning and sharing: a RECONSTRUCTION from the paper's abstract, not the
authors' code.

Pear (Zhong & Zhou, arXiv 2409.19733). Only the abstract was readable; the code it names
(github.com/yibozhong/pear) could not be read here. What the abstract says: adapters can be
redundant; Pear prunes certain adapters and shares "the more important unpruned ones" with the
positions where adapters were pruned, so those positions keep adapting after pruning; a
"knowledge checkpoint" strategy "preserves the information of the pruned adapters". It names no
importance criterion, no ratio, no schedule, and not how the knowledge checkpoint works.

Everything else is this suite's choice, none of it checked against Pear's paper or code:

- warm-up: the transfer (PETL training) that produced the model; no extra warm-up here;
- importance of an adapter: first-order Taylor, the sum over its parameters of
  |theta * dL/dtheta|, with dL/dtheta the cross-entropy gradient summed over seeded calibration
  batches (eval mode, no step);
- what is pruned: the least important adapters, to a target fraction of the PETL parameters
  (the run's budget; `budget_axis = "petl"`: keep:k of N blocks removes (N - k) / N of them);
- sharing (`share`): `important` (default, the abstract's "more important unpruned ones"): every
  pruned position reuses the kept adapter of the same role (attention or MLP branch) with the
  highest score (any role if none of its own is left), so one adapter may serve several
  positions; `nearest`: the kept adapter of the same role in the nearest block (ties to the
  higher score). The shared adapter is one module at all its positions, so retraining (by the
  harness, the same recipe as every pruner) trains it for all of them;
- knowledge checkpoint (`knowledge`): `distil` (default): at the moment of pruning, each shared
  adapter is fitted to compute, at every position it now serves, what the adapter there computed
  before pruning (its own included): Adam (`distil_lr`) for `distil_epochs` passes over the
  calibration sample, minimising per position the mean squared error between its output and the
  transferred adapter's on that position's input (read from the unpruned model, so positions
  downstream see the inputs they had), averaged over the positions it serves. `none`: the shared
  adapter keeps its own weights. `taylor` / `mean`: the score-weighted / plain average of the
  weights of the shared adapter and those it replaces (a weight average of independently trained
  nonlinear bottlenecks is not a function average: their hidden units are not aligned).
  The metrics `knowledge_error_before` / `knowledge_error_after` give that mean squared error
  with the shared adapter as it was and as the knowledge checkpoint left it.

Pear prunes adapters, not the backbone: it reduces stored parameters, not compute (with
RepAdapter, merged, not even the unmerged adapter cost: each position folds its shared adapter
into its own qkv and fc1). Stored per task: the kept adapters + the sharing map (JSON state) +
the head.
"""

from __future__ import annotations

import copy
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
    "Pear-style reconstruction from the paper's abstract (its code could not be read): pruned "
    "positions share a kept adapter, a knowledge checkpoint; the Taylor score, the sharing "
    "rule and the checkpoint's method are the suite's choices"
)
Share = Literal["important", "nearest"]
SHARES: dict[Share, str] = {
    "important": "each pruned position shares the highest-scored kept adapter of its role",
    "nearest": "each pruned position shares the kept adapter of its role in the nearest block",
}
Knowledge = Literal["distil", "none", "taylor", "mean"]
KNOWLEDGE: dict[Knowledge, str] = {
    "distil": "shared adapters fitted to the outputs of the adapters they replace and their own",
    "none": "no knowledge checkpoint: the shared adapter keeps its own weights",
    "taylor": "pruned adapters folded into the shared one (score-weighted average of weights)",
    "mean": "pruned adapters folded into the shared one (plain average of weights)",
}


@PRUNERS.register("pear")
@dataclass
class Pear(Pruner):
    """Prunes the least important adapters (first-order Taylor) to a ratio of PETL parameters;
    every pruned position shares the most important kept adapter of its role (`share`), which
    the knowledge checkpoint (`knowledge`) fits to what the adapters it replaces computed.
    A Pear-style reconstruction from the abstract (the code could not be read): see the module
    docstring for what is from the abstract and what is the suite's choice."""

    budget_axis = "petl"
    # the per-block adapter methods: LoRA's updates wrap the frozen qkv, SPLoRA's every Linear
    petl_methods = frozenset({"convpass", "adapter", "repadapter"})

    batches: int = 10  # calibration batches for the Taylor gradients (and the distillation)
    batch_size: int = 32
    share: Share = "important"  # important | nearest
    knowledge: Knowledge = "distil"  # the knowledge checkpoint: distil | none | taylor | mean
    distil_epochs: int = 5  # passes over the calibration sample (`knowledge=distil`)
    distil_lr: float = 1e-3  # Adam's rate (`knowledge=distil`)
    tolerance: float = 0.05  # |achieved - target| as a fraction of PETL parameters

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.distil_epochs < 0 or self.distil_lr <= 0:
            raise UserError(
                "pruners.pear: distil_epochs must be >= 0 and distil_lr > 0, got "
                f"{self.distil_epochs}, {self.distil_lr}"
            )

    def prune(self, ctx: PruneContext) -> PruneResult:
        model = ctx.model
        adapters = adapter_paths(model)
        target = param_fraction(ctx.budget, len(model.blocks))
        images, labels = sample_calibration(
            ctx.calibration, self.batches * self.batch_size, ctx.seed
        )
        scores = taylor_scores(model, adapters, images, labels, self.batch_size)
        pruned = choose_pruned(model, adapters, scores, target)
        sharing = sharing_map(adapters, pruned, scores, self.share)
        errors = {}
        if self.knowledge == "distil":
            errors = distil_shared(model, sharing, images, self.batch_size, self.distil_epochs,
                                   self.distil_lr)  # fmt: skip
        else:
            fold_adapters(model, sharing, scores, self.knowledge)
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
            "share": SHARES[self.share],
            "knowledge_checkpoint": KNOWLEDGE[self.knowledge],
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
            **errors,
        }
        metrics.update({f"score/{p}": s for p, s in scores.items()})
        tags = {
            "reconstruction": RECONSTRUCTION,
            "pear.share": SHARES[self.share],
            "pear.knowledge_checkpoint": KNOWLEDGE[self.knowledge],
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


def sharing_map(
    adapters: list[str], pruned: list[str], scores: dict[str, float], share: str = "important"
) -> dict[str, str]:
    """Pruned path -> the kept adapter it shares, among the kept ones of the same role (any
    role if none is left): `important`, the highest-scored (ties to the earlier block);
    `nearest`, the one in the nearest block (ties to the higher score, then the earlier block)."""
    kept = [p for p in adapters if p not in pruned]

    def block(path: str) -> int:
        return int(path.split(".")[1])

    def rank(path: str, target: str) -> tuple:
        if share == "important":
            return (-scores[target], block(target))
        return (abs(block(target) - block(path)), -scores[target], block(target))

    sharing = {}
    for path in pruned:
        role = path.split(".")[-1]
        pool = [k for k in kept if k.endswith(role)] or kept
        sharing[path] = min(pool, key=lambda k: rank(path, k))
    return sharing


def distil_shared(
    model: nn.Module,
    sharing: dict[str, str],
    images: torch.Tensor,
    batch_size: int,
    epochs: int,
    lr: float,
) -> dict[str, float]:
    """The knowledge checkpoint `distil` (before `apply_sharing`): each kept adapter that will be
    shared is fitted, with Adam at `lr` for `epochs` passes over `images`, so that at every
    position it will serve (its own included) its output on that position's input matches the
    output of the adapter there, both read from a frozen copy of the unpruned model (eval mode).
    Returns the mean squared error averaged over those positions, before and after."""
    groups: dict[str, list[str]] = {}
    for pruned, kept in sharing.items():
        groups.setdefault(kept, [kept]).append(pruned)
    if not groups:
        return {}
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    students = {kept: model.get_submodule(kept) for kept in groups}
    modes = {kept: m.training for kept, m in students.items()}
    for m in students.values():
        m.eval()
    batches = images.split(batch_size)

    def error(batch: torch.Tensor) -> torch.Tensor:
        seen = teacher_io(teacher, [p for members in groups.values() for p in members], batch)
        per_group = [
            torch.stack(
                [F.mse_loss(students[kept](seen[p][0]), seen[p][1]) for p in members]
            ).mean()
            for kept, members in groups.items()
        ]
        return torch.stack(per_group).mean()

    def mean_error() -> float:
        with torch.no_grad():
            return float(sum(error(b) for b in batches) / len(batches))

    before = mean_error()
    params = [p for m in students.values() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr)
    try:
        with torch.enable_grad():
            for _ in range(epochs):
                for batch in batches:
                    loss = error(batch)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
    finally:
        for p in params:
            p.grad = None
        for kept, m in students.items():
            m.train(modes[kept])
    return {"knowledge_error_before": before, "knowledge_error_after": mean_error()}


def teacher_io(
    teacher: nn.Module, paths: list[str], images: torch.Tensor
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each adapter's (input, output) in a forward of the frozen teacher on `images`."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(path: str):
        def record(module, args, output):
            seen[path] = (args[0].detach(), output.detach())

        return record

    handles = [teacher.get_submodule(p).register_forward_hook(hook(p)) for p in paths]
    try:
        with torch.no_grad():
            teacher(images)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@torch.no_grad()
def fold_adapters(
    model: nn.Module, sharing: dict[str, str], scores: dict[str, float], fold: str
) -> None:
    """The weight-average knowledge checkpoints (`knowledge` taylor | mean): each shared adapter
    becomes the (score-weighted) average of itself and the adapters it replaces; any other value
    leaves it as is."""
    if fold not in ("taylor", "mean"):
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
