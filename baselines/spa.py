"""Structured Pruning Adapters (Hedegaard et al.): channel pruning of a SPLoRA-tuned ViT.

As in the paper, SPLoRA *is* the adapter: the transfer trains it (`PETL=splora`,
bench/models/splora.py: a frozen weight W, a trainable bias and a low-rank update cols @ rows on
every block's qkv, proj, fc1 and fc2), and `spa` prunes channels of those layers by the trained
*adapted* weight W' = W + cols @ rows: its magnitude (default; the squared L2 norm of a channel's
weights) or its first-order Taylor score (|W' * dL/dW'| summed over a channel's weights, the
cross-entropy gradient summed over seeded calibration batches, as torch-pruning's
GroupTaylorImportance). The masks therefore follow what the task taught the adapters. With
another PETL method `spa` refuses: it needs `PETL=splora`. The masks are computed here: the
library's own torch-pruning importance breaks with torch-pruning 1.6, and torch-pruning's
built-in importance prunes nothing in SPLoRA layers.

Channels go as in width pruning: all heads kept with the same number of head dims (q, k and v of
a dim and the proj column together), MLP hidden neurons (fc1 row and fc2 column together); the
residual width is kept, so the head is untouched. One uniform channel ratio is searched so the
frozen backbone block parameters removed meet the budget; the SPLoRA biases were trained in the
transfer, so they are task parameters in every count (never "removed backbone"). The softmax
scale of the sliced attention follows the rule every width pruner shares
(baselines/softmax_scale.py: the unpruned scale unless `keep_scale=false`).

The model returned is physically sliced (so it is faster): W is sliced from the shared backbone,
the adapter and bias are the library's masked `splora.named_parameters(...)`. The harness then
retrains adapters + biases + head (W stays the pretrained one). Per-task state: the kept channel
indices (JSON) + masked adapter rows/cols + masked biases + head. Deployed: the sliced SPLoRA
layers merged into plain Linears at load time (`bench.models.petl.merged_copy`, measured as the
`*_merged` metrics; in inference each SPLoRA layer already runs one merged Linear).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from baselines.softmax_scale import KEEP_SCALE, scale_tags
from bench.budget import backbone_block_params, param_fraction
from bench.errors import UserError
from bench.models.calibration import sample_calibration
from bench.models.petl import freeze_backbone
from bench.models.splora import SPLoRAProjection, splora_layers
from bench.models.surgery import (
    KeptIndices,
    check_plain_attention,
    fix_attention,
    slice_head_dims,
    slice_mlp_hidden,
    timm_block,
)
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult

DEPLOYED = "masks + masked SPLoRA adapters + masked biases + head; merged at load"
WeightScore = Callable[[SPLoRAProjection], torch.Tensor]  # a layer -> a score per weight entry


@PRUNERS.register("spa")
@dataclass
class SPA(Pruner):
    """Channel Structured Pruning Adapters (SPLoRA, Hedegaard et al. 2022/2024) on qkv, proj,
    fc1, fc2 of every block of a SPLoRA transfer (`PETL=splora`); masks from the trained adapted
    weight; sliced, merged for deployment."""

    petl_methods = frozenset({"splora"})  # it prunes by the SPLoRA adapters the transfer trained

    importance: Literal["magnitude", "taylor"] = "magnitude"  # of the adapted weight
    batches: int = 10  # calibration batches for taylor
    batch_size: int = 32
    tolerance: float = 0.02  # |achieved - target| as a fraction of backbone block parameters
    keep_scale: bool = KEEP_SCALE  # the unpruned softmax scale (baselines/softmax_scale.py)

    def prune(self, ctx: PruneContext) -> PruneResult:
        require_splora(ctx.model)
        model = ctx.model
        before = backbone_block_params(model)
        target = param_fraction(ctx.budget, len(model.blocks))
        scores = self.channel_scores(ctx)
        ratio, predicted = search_ratio(model, before, target)
        kept = keep_indices(model, scores, ratio)
        slice_model(model, kept, self.keep_scale)
        freeze_backbone(model)
        achieved = 1.0 - backbone_block_params(model) / before
        if abs(achieved - target) > self.tolerance or abs(achieved - predicted) > 1e-9:
            raise RuntimeError(
                f"spa: channel ratio {ratio:.4f} removes {achieved:.4f} of the block parameters "
                f"(predicted {predicted:.4f}), target {target:.4f} ± {self.tolerance}"
            )
        metrics = {"target_fraction": target, "params_removed_fraction": achieved,
                   "pruning_ratio": ratio}  # fmt: skip
        decision = {
            "deployed": DEPLOYED,
            "kept_widths": [{"attn": len(k["attn"]), "mlp": len(k["mlp"])} for k in kept],
            "settings": self.settings(),
            **metrics,
        }
        tags = {"stored.deployed": DEPLOYED, **scale_tags(self.keep_scale)}
        state = {"blocks": kept, "keep_scale": self.keep_scale}
        return PruneResult(model, state, decision, metrics, tags=tags, retrain=True)

    def channel_scores(self, ctx: PruneContext) -> list[dict[str, torch.Tensor]]:
        if self.importance == "magnitude":
            return channel_scores(ctx.model, magnitude)
        n = self.batches * self.batch_size
        images, labels = sample_calibration(ctx.calibration, n, ctx.seed)
        grads = adapted_weight_gradients(ctx.model, images, labels, self.batch_size)
        return channel_scores(ctx.model, lambda layer: (layer.adapted_weight * grads[layer]).abs())

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        require_splora(model)
        # states stored before `keep_scale` existed used the pruned head's scale
        slice_model(model, state["blocks"], state.get("keep_scale", False))
        freeze_backbone(model)
        return model


def require_splora(model: nn.Module) -> None:
    """spa prunes the SPLoRA adapters trained in the transfer: any other PETL base is refused."""
    for block in model.blocks:
        b = timm_block(block)
        if splora_layers(b) is None:
            raise UserError(
                "spa needs PETL=splora (--petl splora): it prunes channels by the SPLoRA "
                "adapters trained in the transfer, as in the SPA paper where SPLoRA is the "
                "adapter; this model's block Linears carry no SPLoRA adapters"
            )
        check_plain_attention(b.attn)


# ---------------------------------------------------------------------------------------------
# structure


def slice_model(model: nn.Module, kept: KeptIndices, keep_scale: bool) -> None:
    """Keep the given head-dim channels (same count in every head) and MLP hidden neurons; the
    SPLoRA layers slice their weight, adapter and bias (`SPLoRAProjection.keep`). `keep_scale`:
    the softmax scale stays the unpruned one, else it follows the pruned head dim."""
    if len(kept) != len(model.blocks):
        raise ValueError(f"state has {len(kept)} blocks, model {len(model.blocks)}")
    for block, k in zip(model.blocks, kept, strict=True):
        b = timm_block(block)
        slice_head_dims(b.attn, k["attn"])
        fix_attention(b.attn, keep_scale)
        slice_mlp_hidden(b.mlp, k["mlp"])


# ---------------------------------------------------------------------------------------------
# scores and the ratio


def magnitude(layer: SPLoRAProjection) -> torch.Tensor:
    """Squared adapted weight W' = W + cols @ rows, per entry."""
    return layer.adapted_weight.pow(2)


@torch.no_grad()
def channel_scores(model: nn.Module, weight_score: WeightScore) -> list[dict[str, torch.Tensor]]:
    """A channel's score: the sum of `weight_score` over the weights it couples: q, k and v rows
    and the proj column for a head dim; the fc1 row and the fc2 column for a hidden neuron."""
    scores = []
    for block in model.blocks:
        layers = splora_layers(timm_block(block))
        qkv, proj = weight_score(layers["attn.qkv"]), weight_score(layers["attn.proj"])
        fc1, fc2 = weight_score(layers["mlp.fc1"]), weight_score(layers["mlp.fc2"])
        attn = qkv.sum(1).view(3, -1).sum(0) + proj.sum(0)
        scores.append({"attn": attn.cpu(), "mlp": (fc1.sum(1) + fc2.sum(0)).cpu()})
    return scores


def adapted_weight_gradients(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> dict[SPLoRAProjection, torch.Tensor]:
    """dL/dW' of every SPLoRA layer (W' = W + cols @ rows; W is frozen, so it is read from the
    layer's input and output gradient: the sum over tokens of grad_out^T input), for the
    cross-entropy summed over the batches; eval mode (no dropout), no step."""
    layers = [layer for block in model.blocks
              for layer in splora_layers(timm_block(block)).values()]  # fmt: skip
    grads = {layer: torch.zeros_like(layer.weight) for layer in layers}

    def hook(layer: SPLoRAProjection):
        def record(module, args, output):
            inputs = args[0].detach().flatten(0, -2)

            def accumulate(grad: torch.Tensor) -> None:
                grads[layer].add_(grad.flatten(0, -2).T @ inputs)

            output.register_hook(accumulate)

        return record

    handles = [layer.register_forward_hook(hook(layer)) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
                F.cross_entropy(model(x), y).backward()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return grads


def _kept_counts(model: nn.Module, ratio: float) -> list[tuple[int, int]]:
    """(head dims kept per head, hidden neurons kept) per block at channel ratio `ratio`."""
    counts = []
    for block in model.blocks:
        attn, mlp = timm_block(block).attn, timm_block(block).mlp
        head_dim = attn.proj.in_features // attn.num_heads
        counts.append(
            (
                max(1, round(head_dim * (1 - ratio))),
                max(1, round(mlp.fc1.out_features * (1 - ratio))),
            )
        )
    return counts


def predicted_fraction(model: nn.Module, before: int, ratio: float) -> float:
    """Backbone block parameters removed at `ratio`, of `before`: the frozen weights of the
    adapted layers shrink with the kept channels (their biases are task parameters), every other
    frozen block parameter stays."""
    removed = 0
    for block, (a, h) in zip(model.blocks, _kept_counts(model, ratio), strict=True):
        b = timm_block(block)
        attn_dim, dim = b.attn.proj.in_features, b.attn.proj.out_features
        kept_attn = a * b.attn.num_heads
        removed += 4 * (attn_dim - kept_attn) * dim + 2 * (b.mlp.fc1.out_features - h) * dim
    return removed / before


def search_ratio(model: nn.Module, before: int, target: float) -> tuple[float, float]:
    """The channel ratio on a fine grid whose removed fraction is closest to `target`."""
    if target <= 0:
        return 0.0, predicted_fraction(model, before, 0.0)
    grid = [i / 1000 for i in range(1000)]
    fractions = [predicted_fraction(model, before, r) for r in grid]
    best = min(range(len(grid)), key=lambda i: (abs(fractions[i] - target), i))
    return grid[best], fractions[best]


def keep_indices(
    model: nn.Module, scores: list[dict[str, torch.Tensor]], ratio: float
) -> KeptIndices:
    """The highest-scored head dims in every head (same count per head) and hidden neurons."""
    kept = []
    for block, score, (a, h) in zip(model.blocks, scores, _kept_counts(model, ratio), strict=True):
        heads = timm_block(block).attn.num_heads
        per_head = score["attn"].view(heads, -1)
        attn = []
        for head, s in enumerate(per_head):
            order = torch.sort(s, descending=True, stable=True).indices[:a]
            attn += sorted(int(i) + head * per_head.shape[1] for i in order)
        order = torch.sort(score["mlp"], descending=True, stable=True).indices[:h]
        kept.append({"attn": attn, "mlp": sorted(int(i) for i in order)})
    return kept
