"""Structured width pruning with torch-pruning (DepGraph): `magnitude`, `taylor`, and
`depgraph_sls`, the committed defaults of the SLS authors' DepGraph script.

Settings follow the SLS authors' DepGraph script (RuiZiHan/SLS compare_depgraph.py): importance
`l1`, `l2` (torch-pruning's group magnitude; their GroupNormImportance), `taylor` (first-order,
gradients of 10 calibration batches of 32), `hessian` (torch-pruning's group OBD: mean squared
per-sample gradients) or `random`; uniform per layer (`global_pruning=False`, their default) or
one ranking across layers; `round_to=2`; heads kept, head dims pruned (the same dims in every
head, as torch-pruning averages a dim's importance over the heads); the head and every PETL
module ignored. The residual/embedding width is kept, so the PETL modules that read and write
the residual stream and the head are untouched (they, and the patch embedding that pins the
residual width, are ignored layers: in the SLS script the ignored adapters pin it the same way).

`magnitude` and `taylor` meet the run's budget: the channel ratio is searched so that the
backbone *block* parameters removed match it (bench.budget), and the harness retrains PETL + head.
Every width pruner follows one softmax-scale rule (baselines/softmax_scale.py): by default the
unpruned scale is kept (`keep_scale`), `keep_scale=false` takes the pruned head's.

`depgraph_sls` reproduces the committed defaults of the SLS authors' script (compare_depgraph.py;
run_depgraph.sh passes none of the options it reads): channel ratio 0.3333, uniform, Taylor from
10 batches of 32, `round_to=2`, and no retraining (its `--retrain` defaults to False); it ignores
the run's budget. What that script's softmax scale was depends on the timm and torch it ran with
(not recorded), so it is the shared `keep_scale` setting here, logged and shown beside the method.
Whether this row is the SLS paper's DepGraph row is not established (the paper's table was not
read). The authors' earlier working copy retrained the pruned model: that variant is `taylor` at
the same channel ratio (`taylor@params:0.3333`: with the residual width kept, the block
parameters removed are about the channel ratio, and the search starts at that ratio), retrained
with the suite's recipe like every pruner.

Per-task state, both ways (spec BASELINES.md, "Storage accounting"): deployed as the kept channel
indices into the shared backbone (`state`, a few KB of JSON; `restore` slices a fresh backbone,
which rebuilds the same model because pruning only removes channels and the backbone stays
frozen while PETL + head retrain); the alternative, the pruned backbone weights themselves, is
written as safetensors and measured (`bytes_pruned_backbone`).
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import torch
import torch_pruning as tp
from safetensors.torch import save_file
from torch import nn

from baselines.softmax_scale import KEEP_SCALE, scale_tags
from bench.budget import backbone_block_params, param_fraction
from bench.errors import UserError
from bench.models.calibration import sample_calibration
from bench.models.gradients import hessian_gradients, taylor_gradients
from bench.models.petl import freeze_backbone, is_task_parameter
from bench.models.petl_base import PetlModule
from bench.models.surgery import (
    KeptIndices,
    check_plain_attention,
    fix_attention,
    slice_block,
    timm_block,
)
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult

DEPLOYED = "indices into the shared backbone"


@dataclass
class Trial:
    ratio: float
    model: nn.Module
    kept: KeptIndices
    fraction: float  # backbone block parameters removed


# the SLS authors' DepGraph choices
Importance = Literal["l1", "l2", "taylor", "hessian", "random"]
IMPORTANCES = get_args(Importance)


@dataclass
class WidthPruner(Pruner):
    """torch-pruning width pruning at a searched channel ratio; subclasses set the defaults."""

    # It cuts the block's frozen Linears: LoRA wraps qkv (its q/v updates would be pruned with
    # it) and SPLoRA's adapters live inside those Linears (torch-pruning prunes nothing in them).
    petl_methods = frozenset({"convpass", "adapter", "repadapter"})

    importance: Importance = "l2"
    global_pruning: bool = False  # False: uniform per layer (SLS script); True: one ranking
    round_to: int | None = 2  # kept channel counts are multiples of this (SLS script: 2)
    keep_scale: bool = KEEP_SCALE  # the unpruned softmax scale (baselines/softmax_scale.py)
    batches: int = 10  # calibration batches for taylor / hessian gradients (SLS authors: 10)
    batch_size: int = 32  # (SLS authors: 32)
    tolerance: float = 0.02  # |achieved - target|, absolute, as a fraction of block params
    max_trials: int = 12  # channel-ratio search steps
    log_pruned_backbone: bool = False  # also log the pruned backbone file as an artifact

    def prune(self, ctx: PruneContext) -> PruneResult:
        start = time.perf_counter()
        target = param_fraction(ctx.budget, len(ctx.model.blocks))
        trial = self.trials(ctx)
        best, history = search_ratio(trial, target, self.tolerance, self.max_trials)
        if target > 0 and best.fraction <= 0:
            raise RuntimeError(
                f"{self.name}: torch-pruning removed no parameters for a budget of {target:.3f}"
            )
        if abs(best.fraction - target) > self.tolerance:
            raise RuntimeError(
                f"{self.name}: closest channel ratio {best.ratio:.4f} removes {best.fraction:.4f}"
                f" of the block parameters, target {target:.4f} ± {self.tolerance}"
            )
        metrics = {"target_fraction": target, "search_trials": float(len(history))}
        return self.result(ctx, best, history, metrics, start, retrain=True)

    def trials(self, ctx: PruneContext) -> Callable[[float], Trial]:
        """Prunes a copy of the model at a channel ratio (the importance's gradients once)."""
        check_supported(ctx.model)
        grads = self.gradients(ctx)

        def trial(ratio: float) -> Trial:
            options = PruneOptions(self.global_pruning, self.round_to, self.keep_scale, ctx.seed)
            return prune_trial(ctx.model, ratio, make_importance(self.importance), grads, options)

        return trial

    def gradients(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        """Backbone gradients the importance reads: summed (taylor), mean squared per sample
        (hessian), none (l1, l2, random)."""
        if self.importance not in ("taylor", "hessian"):
            return {}
        n = self.batches * self.batch_size
        images, labels = sample_calibration(ctx.calibration, n, ctx.seed)
        if self.importance == "hessian":
            return hessian_gradients(ctx.model, images, labels)
        return taylor_gradients(ctx.model, images, labels, self.batch_size)

    def result(self, ctx: PruneContext, best: Trial, history: list, metrics: dict, start: float,
               retrain: bool) -> PruneResult:  # fmt: skip
        """The pruned model, its state (kept indices, checked to rebuild it) and its record."""
        state = {"blocks": best.kept, "keep_scale": self.keep_scale}
        verify_restore(ctx.model, best.model, state, type(self))
        backbone_file = ctx.artifact_dir / "pruned_backbone.safetensors"
        backbone_bytes = save_pruned_backbone(best.model, backbone_file)
        metrics = {
            **metrics,
            "params_removed_fraction": best.fraction,
            "pruning_ratio": best.ratio,
            "search_seconds": time.perf_counter() - start,
            "bytes_indices": float(len(json.dumps(state, separators=(",", ":")))),
            "bytes_pruned_backbone": float(backbone_bytes),
        }
        decision = {
            "deployed": DEPLOYED,
            "alternative": "pruned backbone weights per task (bytes_pruned_backbone)",
            "tolerance": f"absolute {self.tolerance} of backbone block parameters",
            "kept_widths": [kept_widths(b) for b in best.model.blocks],
            "trials": history,
            "settings": self.settings(),
            **metrics,
        }
        artifacts = [backbone_file] if self.log_pruned_backbone else []
        tags = {"stored.deployed": DEPLOYED, **scale_tags(self.keep_scale)}
        return PruneResult(best.model, state, decision, metrics, artifacts, tags, retrain=retrain)

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        check_supported(model)
        if len(state["blocks"]) != len(model.blocks):
            raise ValueError(f"state has {len(state['blocks'])} blocks, model {len(model.blocks)}")
        for block, kept in zip(model.blocks, state["blocks"], strict=True):
            slice_block(timm_block(block), kept, state.get("keep_scale", False))
        return model


@PRUNERS.register("magnitude")
@dataclass
class Magnitude(WidthPruner):
    """Group magnitude (torch-pruning GroupMagnitudeImportance): the L2 (or `importance=l1`)
    norm of each channel's coupled weights, averaged over the group."""


@PRUNERS.register("taylor")
@dataclass
class Taylor(WidthPruner):
    """First-order Taylor (Molchanov et al. 2019; torch-pruning GroupTaylorImportance): |w dL/dw|
    over each channel's coupled weights, with dL/dw the cross-entropy gradient accumulated over
    `batches` seeded calibration batches of `batch_size` (the SLS authors: 10 of 32), no step."""

    importance: Importance = "taylor"


@PRUNERS.register("depgraph_sls")
@dataclass
class DepGraphSLS(WidthPruner):
    """The committed defaults of the SLS authors' DepGraph script (RuiZiHan/SLS
    compare_depgraph.py): uniform torch-pruning at channel ratio 0.3333 with Taylor importance
    (10 calibration batches of 32), round_to=2, heads kept, and no retraining (evaluated as
    pruned). Its budget is that ratio, not the run's; its softmax scale is the shared
    `keep_scale` rule (the script's depended on its timm version; module docstring)."""

    fixed_budget = "auto"

    importance: Importance = "taylor"
    pruning_ratio: float = 0.3333  # the channel ratio of the SLS script

    def prune(self, ctx: PruneContext) -> PruneResult:
        start = time.perf_counter()
        pruned = self.trials(ctx)(self.pruning_ratio)
        history = [{"ratio": pruned.ratio, "fraction": pruned.fraction}]
        return self.result(ctx, pruned, history, {}, start, retrain=False)


# ---------------------------------------------------------------------------------------------
# model structure


def check_supported(model: nn.Module) -> None:
    """Width pruning cuts the block's frozen Linears: PETL modules that wrap them are refused."""
    for block in model.blocks:
        b = timm_block(block)
        if not isinstance(b.attn.qkv, nn.Linear):
            raise UserError(
                "width pruning (magnitude, taylor, depgraph_sls) is not supported with the LoRA "
                "PETL: LoRAQKV wraps the qkv projection, so its trainable q/v updates would be "
                "pruned with it; use --petl convpass, adapter or repadapter"
            )
        if any(isinstance(m, PetlModule) for m in (b.attn.qkv, b.attn.proj, b.mlp.fc1)):
            raise UserError(
                "width pruning (magnitude, taylor, depgraph_sls) is not supported with the SPLoRA "
                "PETL: its adapters live inside the Linears it would cut (torch-pruning prunes "
                "nothing in them); SPLoRA models are pruned by spa, or use --petl convpass or "
                "adapter"
            )
        check_plain_attention(b.attn)


def kept_widths(block: nn.Module) -> dict[str, int]:
    b = timm_block(block)
    return {"head_dim": b.attn.head_dim, "mlp_hidden": b.mlp.fc1.out_features}


# ---------------------------------------------------------------------------------------------
# pruning with torch-pruning


@dataclass(frozen=True)
class PruneOptions:
    """torch-pruning's options that are settings here, and the seed (random importance)."""

    global_pruning: bool = False
    round_to: int | None = 2
    keep_scale: bool = True
    seed: int = 0


def make_importance(name: str) -> tp.importance.Importance:
    """torch-pruning's importance for the SLS script's `pruning_type`."""
    if name in ("l1", "l2"):
        return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)
    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    if name == "hessian":
        return tp.importance.GroupHessianImportance()  # reads the mean squared gradient in .grad
    if name == "random":
        return tp.importance.RandomImportance()
    raise UserError(f"unknown importance {name!r}; use {', '.join(IMPORTANCES)}")


def prune_trial(
    model: nn.Module,
    ratio: float,
    importance: tp.importance.Importance,
    grads: dict[str, torch.Tensor],
    options: PruneOptions,
) -> Trial:
    """Prune a deep copy of `model` at channel ratio `ratio`; `model` is left as it was. The
    random state is seeded per trial, so a random importance draws the same way each time."""
    candidate = copy.deepcopy(model)
    kept: KeptIndices = [{} for _ in candidate.blocks]
    if ratio > 0:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            kept = prune_width(candidate, ratio, importance, grads, options)
    fraction = 1.0 - backbone_block_params(candidate) / backbone_block_params(model)
    return Trial(ratio, candidate, kept, fraction)


def prune_width(
    model: nn.Module,
    ratio: float,
    importance: tp.importance.Importance,
    grads: dict[str, torch.Tensor],
    options: PruneOptions,
) -> KeptIndices:
    """Prune `model` in place with torch-pruning's BasePruner; returns the kept indices.

    torch-pruning traces autograd, and prunes nothing (silently) in a frozen backbone: every
    parameter needs requires_grad while the pruner is built; the freezing is restored after.
    """
    blocks = [timm_block(b) for b in model.blocks]
    watched = {(b.attn.proj, False): (i, "attn") for i, b in enumerate(blocks)}
    watched.update({(b.mlp.fc1, True): (i, "mlp") for i, b in enumerate(blocks)})
    coupled = {m for b in blocks for m in (b.attn.qkv, b.mlp.fc2)}
    widths = {(i, "attn"): b.attn.proj.in_features for i, b in enumerate(blocks)}
    widths.update({(i, "mlp"): b.mlp.fc1.out_features for i, b in enumerate(blocks)})
    device = next(model.parameters()).device
    example = torch.randn(1, 3, *model.patch_embed.img_size, device=device)
    pruned: dict[tuple[int, str], list[int]] = {}
    for name, param in model.named_parameters():
        param.requires_grad_(True)
        param.grad = grads[name].clone() if name in grads else None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
            pruner = tp.pruner.BasePruner(
                model, example, importance, pruning_ratio=ratio,
                global_pruning=options.global_pruning,
                num_heads={b.attn.qkv: b.attn.num_heads for b in blocks}, prune_head_dims=True,
                prune_num_heads=False, ignored_layers=ignored_layers(model),
                round_to=options.round_to,
            )  # fmt: skip
        for group in pruner.step(interactive=True):
            _record(group, pruner.DG, watched, coupled, pruned)
            group.prune()
    finally:
        for param in model.parameters():
            param.grad = None
        freeze_backbone(model)
    for b in blocks:
        fix_attention(b.attn, options.keep_scale)
    return [
        {role: _complement(widths[(i, role)], pruned[(i, role)])
         for role in ("attn", "mlp") if (i, role) in pruned}
        for i in range(len(blocks))
    ]  # fmt: skip


def ignored_layers(model: nn.Module) -> list[nn.Module]:
    """The head, every PETL module, and the patch embedding (which pins the residual width)."""
    petl = [m for m in model.modules() if isinstance(m, PetlModule)]
    return [model.head, model.patch_embed, *petl]


def _record(group, graph, watched: dict, coupled: set, pruned: dict) -> None:
    """Note the indices a group removes from each block's proj input and fc1 output; anything
    outside qkv/proj/fc1/fc2 reached by a group is an error (residual or PETL would change)."""
    for dep, idxs in group:
        module = dep.target.module
        idxs = sorted(int(getattr(i, "idx", i)) for i in idxs)
        key = (module, graph.is_out_channel_pruning_fn(dep.handler))
        if key in watched:
            block, role = watched[key]
            pruned[(block, role)] = sorted(set(pruned.get((block, role), [])) | set(idxs))
        elif module in coupled or not idxs:
            continue
        elif isinstance(module, nn.Parameter) or any(module.parameters(recurse=False)):
            raise RuntimeError(f"torch-pruning would also prune {module}: only inner widths may go")


def _complement(width: int, removed: list[int]) -> list[int]:
    gone = set(removed)
    return [i for i in range(width) if i not in gone]


def search_ratio(
    trial: Callable[[float], Trial], target: float, tolerance: float, max_trials: int
) -> tuple[Trial, list[dict[str, float]]]:
    """Bisection on the channel ratio for the trial whose removed fraction is closest to target.

    With the residual width kept the removed fraction is about the ratio, so that is the first
    guess; the fraction is a non-decreasing step function of the ratio, so the search stops once
    within half the tolerance or once the bracket is narrower than any channel step can matter.
    """
    if target <= 0:
        return trial(0.0), []
    low, high, ratio = 0.0, 1.0, min(target, 0.95)
    best: Trial | None = None
    history = []
    for _ in range(max_trials):
        current = trial(ratio)
        history.append({"ratio": ratio, "fraction": current.fraction})
        if best is None or abs(current.fraction - target) < abs(best.fraction - target):
            best = current
        low, high = (ratio, high) if current.fraction < target else (low, ratio)
        if abs(current.fraction - target) <= tolerance / 2 or high - low < 1e-4:
            break
        ratio = (low + high) / 2
    return best, history


def verify_restore(original: nn.Module, pruned: nn.Module, state: dict, pruner: type) -> None:
    """Slicing a fresh copy by the stored indices must give the pruned weights exactly."""
    model = pruner.restore(copy.deepcopy(original), state)
    rebuilt, expected = model.state_dict(), pruned.state_dict()
    same = rebuilt.keys() == expected.keys() and all(
        torch.equal(rebuilt[k], expected[k]) for k in expected
    )
    pairs = zip(model.blocks, pruned.blocks, strict=True)
    attention = [(timm_block(a).attn, timm_block(b).attn) for a, b in pairs]
    same = same and all(type(a) is type(b) and a.scale == b.scale for a, b in attention)
    if not same:
        raise RuntimeError("the kept indices do not rebuild the pruned model from the backbone")


def save_pruned_backbone(model: nn.Module, path: Path) -> int:
    """The per-task alternative to indices: every backbone tensor of the pruned model."""
    tensors = {
        name: p.detach().cpu().contiguous()
        for name, p in model.named_parameters()
        if not is_task_parameter(model, name)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path.stat().st_size
