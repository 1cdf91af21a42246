"""Structured width pruning with torch-pruning (DepGraph): `magnitude` and first-order `taylor`.

Uniform per layer (global_pruning=False): every block loses the same fraction of its attention
head dims (all heads kept) and of its MLP hidden units. The residual/embedding width is kept, so
the PETL modules that read and write the residual stream and the head are untouched (they, and
the patch embedding that pins the residual width, are ignored layers). The channel ratio is
searched so that the backbone *block* parameters removed match the budget (bench.budget).

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
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from safetensors.torch import save_file
from timm.layers import Attention
from torch import nn

from bench.budget import backbone_block_params, param_fraction
from bench.errors import UserError
from bench.models.petl import PetlModule, freeze_backbone, is_task_parameter
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult

DEPLOYED = "indices into the shared backbone"
KeptIndices = list[dict[str, list[int]]]  # per block: {"attn": head-dim channels, "mlp": hidden}


@dataclass
class Trial:
    ratio: float
    model: nn.Module
    kept: KeptIndices
    fraction: float  # backbone block parameters removed


@dataclass
class WidthPruner(Pruner):
    """Shared search and bookkeeping; subclasses give the torch-pruning importance."""

    tolerance: float = 0.02  # |achieved - target|, absolute, as a fraction of block params
    max_trials: int = 12  # channel-ratio search steps
    round_to: int | None = None  # keep channel counts multiples of this (torch-pruning)
    log_pruned_backbone: bool = False  # also log the pruned backbone file as an artifact

    @abstractmethod
    def importance(self) -> tp.importance.Importance: ...

    def gradients(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        """Backbone gradients the importance reads (none for magnitude)."""
        return {}

    def prune(self, ctx: PruneContext) -> PruneResult:
        check_supported(ctx.model)
        start = time.perf_counter()
        target = param_fraction(ctx.budget, len(ctx.model.blocks))
        grads = self.gradients(ctx)

        def trial(ratio: float) -> Trial:
            return prune_trial(ctx.model, ratio, self.importance(), grads, self.round_to)

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
        state = {"blocks": best.kept}
        verify_restore(ctx.model, best.model, state, type(self))
        backbone_file = ctx.artifact_dir / "pruned_backbone.safetensors"
        backbone_bytes = save_pruned_backbone(best.model, backbone_file)
        index_bytes = len(json.dumps(state, separators=(",", ":")))
        metrics = {
            "target_fraction": target,
            "params_removed_fraction": best.fraction,
            "pruning_ratio": best.ratio,
            "search_trials": float(len(history)),
            "search_seconds": time.perf_counter() - start,
            "bytes_indices": float(index_bytes),
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
        tags = {"stored.deployed": DEPLOYED}
        return PruneResult(best.model, state, decision, metrics, artifacts, retrain=True, tags=tags)

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        check_supported(model)
        if len(state["blocks"]) != len(model.blocks):
            raise ValueError(f"state has {len(state['blocks'])} blocks, model {len(model.blocks)}")
        for block, kept in zip(model.blocks, state["blocks"], strict=True):
            slice_block(timm_block(block), kept)
        return model


@PRUNERS.register("magnitude")
@dataclass
class Magnitude(WidthPruner):
    """Group magnitude (torch-pruning GroupMagnitudeImportance): the Lp norm of each channel's
    coupled weights, averaged over the group; p=2 by default, p=1 for L1."""

    name = "magnitude"

    p: int = 2

    def importance(self) -> tp.importance.Importance:
        return tp.importance.GroupMagnitudeImportance(p=self.p)


@PRUNERS.register("taylor")
@dataclass
class Taylor(WidthPruner):
    """First-order Taylor (Molchanov et al. 2019; torch-pruning GroupTaylorImportance): |w dL/dw|
    over each channel's coupled weights, with dL/dw the cross-entropy gradient accumulated over
    `batches` seeded calibration batches of `batch_size` (the SLS authors: 10 of 32), no step."""

    name = "taylor"

    batches: int = 10
    batch_size: int = 32

    def importance(self) -> tp.importance.Importance:
        return tp.importance.GroupTaylorImportance()

    def gradients(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        n = self.batches * self.batch_size
        images, labels = sample_calibration(ctx.calibration, n, ctx.seed)
        return taylor_gradients(ctx.model, images, labels, self.batch_size)


# ---------------------------------------------------------------------------------------------
# model structure


def timm_block(block: nn.Module) -> nn.Module:
    """The timm Block inside a PETL wrapper (Convpass/adapter), or the block itself."""
    return getattr(block, "block", block)


def check_supported(model: nn.Module) -> None:
    """Width pruning cuts the block's frozen Linears: PETL modules that wrap them are refused."""
    for block in model.blocks:
        b = timm_block(block)
        if not isinstance(b.attn.qkv, nn.Linear):
            raise UserError(
                "width pruning (magnitude, taylor) is not supported with the LoRA PETL: LoRAQKV "
                "wraps the qkv projection, so its trainable q/v updates would be pruned with it; "
                "use --petl convpass or adapter"
            )
        if any(isinstance(m, PetlModule) for m in (b.attn.qkv, b.attn.proj, b.mlp.fc1)):
            raise UserError(
                "width pruning (magnitude, taylor) is not supported with the SPLoRA PETL: its "
                "adapters live inside the Linears it would cut (torch-pruning prunes nothing in "
                "them); SPLoRA models are pruned by spa, or use --petl convpass or adapter"
            )
        check_plain_attention(b.attn)


def check_plain_attention(attn: nn.Module) -> None:
    plain = isinstance(attn, Attention) and attn.gate is None
    if not plain or not all(isinstance(m, nn.Identity) for m in (attn.q_norm, attn.norm)):
        raise UserError(f"width pruning supports timm's plain Attention, not {attn}")


def fix_attention(attn: Attention) -> None:
    """Set timm Attention's cached sizes from the pruned projections (heads kept, head dim cut).

    The softmax scale follows the pruned head dim, as fused attention (SDPA's default) does.
    """
    attn.attn_dim = attn.proj.in_features
    if attn.attn_dim % attn.num_heads or attn.qkv.out_features != 3 * attn.attn_dim:
        raise RuntimeError(f"pruned attention does not split into {attn.num_heads} heads: {attn}")
    attn.head_dim = attn.attn_dim // attn.num_heads
    attn.scale = attn.head_dim**-0.5


def kept_widths(block: nn.Module) -> dict[str, int]:
    b = timm_block(block)
    return {"head_dim": b.attn.head_dim, "mlp_hidden": b.mlp.fc1.out_features}


def keep_channels(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep the output (dim 0) or input (dim 1) channels `index` of a frozen Linear."""
    index = index.to(linear.weight.device)
    weight = linear.weight
    linear.weight = nn.Parameter(weight.data.index_select(dim, index).clone(), weight.requires_grad)
    if dim == 0:
        if linear.bias is not None:
            bias = linear.bias
            linear.bias = nn.Parameter(bias.data.index_select(0, index).clone(), bias.requires_grad)
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def slice_block(block: nn.Module, kept: dict[str, list[int]]) -> None:
    """Re-apply a block's kept indices to a fresh (unpruned) timm Block."""
    if "attn" in kept:
        slice_head_dims(block.attn, kept["attn"])
        fix_attention(block.attn)
    if "mlp" in kept:
        slice_mlp_hidden(block.mlp, kept["mlp"])


def slice_head_dims(attn: Attention, kept: list[int]) -> None:
    """Keep channels `kept` of the attention width in q, k and v alike, and in proj's input.
    The caller sets the attention's cached sizes (`fix_attention`, or its own rule)."""
    index = torch.tensor(kept, dtype=torch.long)
    width = attn.proj.in_features
    keep_channels(attn.qkv, torch.cat([index + part * width for part in range(3)]), 0)
    keep_channels(attn.proj, index, 1)


def slice_mlp_hidden(mlp: nn.Module, kept: list[int]) -> None:
    index = torch.tensor(kept, dtype=torch.long)
    keep_channels(mlp.fc1, index, 0)
    keep_channels(mlp.fc2, index, 1)


# ---------------------------------------------------------------------------------------------
# pruning with torch-pruning


def prune_trial(
    model: nn.Module,
    ratio: float,
    importance: tp.importance.Importance,
    grads: dict[str, torch.Tensor],
    round_to: int | None,
) -> Trial:
    """Prune a deep copy of `model` at channel ratio `ratio`; `model` is left as it was."""
    candidate = copy.deepcopy(model)
    kept: KeptIndices = [{} for _ in candidate.blocks]
    if ratio > 0:
        kept = prune_width(candidate, ratio, importance, grads, round_to)
    fraction = 1.0 - backbone_block_params(candidate) / backbone_block_params(model)
    return Trial(ratio, candidate, kept, fraction)


def prune_width(
    model: nn.Module,
    ratio: float,
    importance: tp.importance.Importance,
    grads: dict[str, torch.Tensor],
    round_to: int | None = None,
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
                model, example, importance, pruning_ratio=ratio, global_pruning=False,
                num_heads={b.attn.qkv: b.attn.num_heads for b in blocks}, prune_head_dims=True,
                prune_num_heads=False, ignored_layers=ignored_layers(model), round_to=round_to,
            )  # fmt: skip
        for group in pruner.step(interactive=True):
            _record(group, pruner.DG, watched, coupled, pruned)
            group.prune()
    finally:
        for param in model.parameters():
            param.grad = None
        freeze_backbone(model)
    for b in blocks:
        fix_attention(b.attn)
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
    rebuilt = pruner.restore(copy.deepcopy(original), state).state_dict()
    expected = pruned.state_dict()
    same = rebuilt.keys() == expected.keys() and all(
        torch.equal(rebuilt[k], expected[k]) for k in expected
    )
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


# ---------------------------------------------------------------------------------------------
# Taylor gradients


def sample_calibration(loader, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` calibration images drawn without replacement (seeded) from the fixed-order loader."""
    total = len(loader.split)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(total, dtype=torch.bool)
    chosen[torch.randperm(total, generator=generator)[:n]] = True
    images, labels, offset = [], [], 0
    for x, y in loader:
        mask = chosen[offset : offset + len(x)].to(x.device)
        images.append(x[mask])
        labels.append(y[mask])
        offset += len(x)
    return torch.cat(images), torch.cat(labels)


def taylor_gradients(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[str, torch.Tensor]:
    """Cross-entropy gradients of the backbone parameters, summed over batches (eval mode, so
    dropout does not make them random); no optimizer step, and the freezing is restored."""
    was_training = model.training
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
        param.grad = None
    try:
        for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
            F.cross_entropy(model(x), y).backward()
        return {
            name: p.grad.detach().clone()
            for name, p in model.named_parameters()
            if p.grad is not None and not is_task_parameter(model, name)
        }
    finally:
        for param in model.parameters():
            param.grad = None
        freeze_backbone(model)
        model.train(was_training)
