"""Structured Pruning Adapters (Hedegaard et al.): channel-pruned SPLoRA, library `sp_adapters`.

Each block's qkv, proj, fc1 and fc2 become `SPLoRALinear` layers (never the whole model: the head
would freeze): frozen pretrained weight W, trainable bias, trainable low-rank update cols @ rows.
Channels are pruned as in width pruning (all heads kept with the same number of head dims; MLP
hidden neurons; the residual width kept, so the PETL modules and the head are untouched), ranked
by the magnitude (default) or first-order Taylor score of the *adapted* weight W + cols @ rows.
The masks are computed here: the library's own torch-pruning importance breaks with
torch-pruning 1.6, and torch-pruning's built-in importance prunes nothing in SPLoRA layers. One
uniform channel ratio is searched so the backbone block parameters removed meet the budget (the
SPLoRA biases become task parameters, so they count as removed from the backbone).

The model returned is physically sliced (so it is faster): W is sliced from the shared backbone,
the adapter and bias are the library's masked `splora.named_parameters(...)`. The harness then
retrains adapters + biases + PETL + head (the base weight stays the pretrained one). Per-task
state: the kept channel indices (JSON) + masked adapter rows/cols + masked biases + PETL + head.
Deployed: the sliced SPLoRA layers merged into plain Linears, computed at load time from the
shared backbone and the stored task state. The model the harness times is that: in inference
(eval, no grad) each SPLoRA layer runs one Linear with its merged weight, computed once
(`bench.models.petl.merged_copy` gives the same model with plain Linears, measured as the
`*_merged` metrics; the tests check they agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sp_adapters import SPLoRA, SPLoRALinear
from sp_adapters import splora as splora_lib
from sp_adapters.utils import copy_linear_params_
from torch import nn

from baselines.width import check_supported, sample_calibration, timm_block
from bench.budget import backbone_block_params, param_fraction
from bench.errors import UserError
from bench.models.petl import PetlModule, freeze_backbone
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult

LAYERS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
DEPLOYED = "masks + masked SPLoRA adapters + masked biases + PETL + head; merged at load"
KeptIndices = list[dict[str, list[int]]]  # per block: {"attn": head-dim channels, "mlp": hidden}


class SPLoRAProjection(SPLoRALinear, PetlModule):
    """The library's SPLoRALinear, marked so its weight is frozen backbone and its bias and
    adapter are task parameters (bench.models.petl.is_task_parameter), and mergeable."""

    frozen_children = ("weight",)
    _merged: tuple[tuple, torch.Tensor] | None = None  # inference cache: (tensor versions, W')

    @classmethod
    def from_module(cls, module: nn.Linear, rank: int | float = 8, init_range: float = 1e-4):
        layer = cls(module.in_features, module.out_features, module.bias is not None, rank,
                    init_range, device=module.weight.device, dtype=module.weight.dtype)  # fmt: skip
        copy_linear_params_(module, layer)
        return layer.to(module.weight.device)  # the library makes the adapter on the CPU

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Training and gradient passes: the library's forward. Inference (eval, no grad): one
        Linear with the merged weight W + cols @ rows, computed once and reused while the
        tensors are unchanged; the same numbers as the library's eval forward."""
        if self.training or torch.is_grad_enabled():
            return super().forward(input)
        tensors = (self.weight, self.adapter.rows, self.adapter.cols)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._merged is None or self._merged[0] != key:
            self._merged = (key, self.adapted_weight)
        return F.linear(input, self._merged[1], self.bias)

    def merged(self) -> nn.Linear:
        """W + cols @ rows as one plain Linear (the library's `to_module`), frozen."""
        linear = self.to_module()
        linear.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return linear

    def keep(self, in_mask: torch.Tensor | None, out_mask: torch.Tensor | None) -> None:
        """Slice in place to the kept input/output features: weight from the frozen weight, the
        adapter and bias through the library's masked `named_parameters`."""
        device = self.weight.device
        in_mask = None if in_mask is None else in_mask.to(device)
        out_mask = None if out_mask is None else out_mask.to(device)
        masked = dict(
            splora_lib.named_parameters(
                self, adapter_weights_only=True, in_features_mask=in_mask,
                out_features_mask=out_mask,
            )
        )  # fmt: skip
        weight = self.weight.data
        if out_mask is not None:
            weight = weight[out_mask]
        if in_mask is not None:
            weight = weight[:, in_mask]
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        for name, value in masked.items():
            owner, _, leaf = name.rpartition(".")
            module = self.get_submodule(owner) if owner else self
            setattr(module, leaf, nn.Parameter(value.detach().clone()))
        self.out_features, self.in_features = self.weight.shape
        self.adapter.out_features, self.adapter.in_features = self.weight.shape


@PRUNERS.register("spa")
@dataclass
class SPA(Pruner):
    """Channel Structured Pruning Adapters (SPLoRA, Hedegaard et al. 2022/2024) on qkv, proj,
    fc1, fc2 of every block; masks from the adapted weight; sliced, merged for deployment."""

    name = "spa"

    rank: int = 8  # SPLoRA rank of each adapted layer
    init_range: float = 1e-4  # the library's init of the adapter columns
    importance: str = "magnitude"  # magnitude | taylor (of the adapted weight)
    batches: int = 10  # calibration batches for taylor
    batch_size: int = 32
    tolerance: float = 0.02  # |achieved - target| as a fraction of backbone block parameters

    def prune(self, ctx: PruneContext) -> PruneResult:
        if self.importance not in ("magnitude", "taylor"):
            raise UserError(f"spa: unknown importance {self.importance!r}; use magnitude or taylor")
        check_supported(ctx.model)
        model = ctx.model
        before = backbone_block_params(model)
        target = param_fraction(ctx.budget, len(model.blocks))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            attach_splora(model, self.rank, self.init_range)
        if self.importance == "taylor":
            images, labels = sample_calibration(
                ctx.calibration, self.batches * self.batch_size, ctx.seed
            )
            scores = taylor_scores(model, images, labels, self.batch_size)
        else:
            scores = magnitude_scores(model)
        ratio, predicted = search_ratio(model, before, target)
        kept = keep_indices(model, scores, ratio)
        slice_model(model, kept)
        freeze_backbone(model)
        achieved = 1.0 - backbone_block_params(model) / before
        if abs(achieved - target) > self.tolerance or abs(achieved - predicted) > 1e-9:
            raise RuntimeError(
                f"spa: channel ratio {ratio:.4f} removes {achieved:.4f} of the block parameters "
                f"(predicted {predicted:.4f}), target {target:.4f} ± {self.tolerance}"
            )
        state = {"rank": self.rank, "blocks": kept}
        metrics = {"target_fraction": target, "params_removed_fraction": achieved,
                   "pruning_ratio": ratio}  # fmt: skip
        decision = {
            "deployed": DEPLOYED,
            "kept_widths": [{"attn": len(k["attn"]), "mlp": len(k["mlp"])} for k in kept],
            "settings": self.settings(),
            **metrics,
        }
        tags = {"stored.deployed": DEPLOYED}
        return PruneResult(model, state, decision, metrics, tags=tags, retrain=True)

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        check_supported(model)
        attach_splora(model, state["rank"])
        slice_model(model, state["blocks"])
        freeze_backbone(model)
        return model


# ---------------------------------------------------------------------------------------------
# structure


def attach_splora(model: nn.Module, rank: int, init_range: float = 1e-4) -> None:
    """SPLoRA (through `sp_adapters.SPLoRA`) on each block's qkv, proj, fc1 and fc2 only."""
    for block in model.blocks:
        b = timm_block(block)
        for path in LAYERS:
            parent, _, leaf = path.rpartition(".")
            owner = b.get_submodule(parent)
            layer = SPLoRA(
                getattr(owner, leaf), rank=rank, init_range=init_range, inplace=True,
                replacements=[(nn.Linear, SPLoRAProjection)],
            )  # fmt: skip
            if not isinstance(layer, SPLoRAProjection):
                raise RuntimeError(f"sp_adapters did not adapt {path}: {type(layer).__name__}")
            setattr(owner, leaf, layer)


def _masks(width: int, kept: list[int]) -> torch.Tensor:
    mask = torch.zeros(width, dtype=torch.bool)
    mask[torch.tensor(kept, dtype=torch.long)] = True
    return mask


def slice_model(model: nn.Module, kept: KeptIndices) -> None:
    """Keep the given head-dim channels (same count in every head) and MLP hidden neurons."""
    if len(kept) != len(model.blocks):
        raise ValueError(f"state has {len(kept)} blocks, model {len(model.blocks)}")
    for block, k in zip(model.blocks, kept, strict=True):
        b = timm_block(block)
        attn, mlp = b.attn, b.mlp
        mask = _masks(attn.proj.in_features, k["attn"])
        attn.qkv.keep(None, mask.repeat(3))
        attn.proj.keep(mask, None)
        attn.attn_dim = int(mask.sum())
        attn.head_dim = attn.attn_dim // attn.num_heads
        attn.scale = attn.head_dim**-0.5  # as fused attention (SDPA's default) does
        mask = _masks(mlp.fc1.out_features, k["mlp"])
        mlp.fc1.keep(None, mask)
        mlp.fc2.keep(mask, None)


# ---------------------------------------------------------------------------------------------
# scores and the ratio


@torch.no_grad()
def magnitude_scores(model: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Squared L2 norm of each channel's adapted weights: q, k, v rows + proj column for a head
    dim; fc1 row + fc2 column for a hidden neuron."""
    scores = []
    for block in model.blocks:
        b = timm_block(block)
        qkv, proj = b.attn.qkv.adapted_weight, b.attn.proj.adapted_weight
        fc1, fc2 = b.mlp.fc1.adapted_weight, b.mlp.fc2.adapted_weight
        attn = qkv.pow(2).sum(1).view(3, -1).sum(0) + proj.pow(2).sum(0)
        scores.append({"attn": attn.cpu(), "mlp": (fc1.pow(2).sum(1) + fc2.pow(2).sum(0)).cpu()})
    return scores


def taylor_scores(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> list[dict[str, torch.Tensor]]:
    """First-order Taylor of each channel of the adapted layers: (sum of output * dL/doutput)^2
    over tokens, summed over batches, at the qkv output (q, k, v summed) and the fc1 output."""
    outputs: dict[tuple[int, str], torch.Tensor] = {}
    totals: dict[tuple[int, str], torch.Tensor] = {}

    def hook(key):
        def keep(module, args, output):
            output.retain_grad()
            outputs[key] = output

        return keep

    handles = []
    for i, block in enumerate(model.blocks):
        b = timm_block(block)
        handles.append(b.attn.qkv.register_forward_hook(hook((i, "attn"))))
        handles.append(b.mlp.fc1.register_forward_hook(hook((i, "mlp"))))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
                F.cross_entropy(model(x), y).backward()
                for key, out in outputs.items():
                    score = (out.detach() * out.grad).sum(dim=(0, 1)).pow(2).cpu()
                    if key[1] == "attn":
                        score = score.view(3, -1).sum(0)
                    totals[key] = totals.get(key, 0) + score
                outputs.clear()
                model.zero_grad(set_to_none=True)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [
        {"attn": totals[(i, "attn")], "mlp": totals[(i, "mlp")]} for i in range(len(model.blocks))
    ]


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


def predicted_fraction(model: nn.Module, before: int, frozen: int, ratio: float) -> float:
    """Backbone block parameters removed at `ratio`, from `frozen` (the block's frozen
    parameters with SPLoRA attached: its biases are task parameters): the frozen weights of the
    adapted layers shrink with the kept channels, every other frozen block parameter stays."""
    for block, (a, h) in zip(model.blocks, _kept_counts(model, ratio), strict=True):
        b = timm_block(block)
        attn_dim, dim = b.attn.proj.in_features, b.attn.proj.out_features
        kept_attn = a * b.attn.num_heads
        frozen -= 4 * (attn_dim - kept_attn) * dim + 2 * (b.mlp.fc1.out_features - h) * dim
    return 1.0 - frozen / before


def search_ratio(model: nn.Module, before: int, target: float) -> tuple[float, float]:
    """The channel ratio on a fine grid whose removed fraction is closest to `target`."""
    frozen = backbone_block_params(model)
    if target <= 0:
        return 0.0, predicted_fraction(model, before, frozen, 0.0)
    grid = [i / 1000 for i in range(1000)]
    fractions = [predicted_fraction(model, before, frozen, r) for r in grid]
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
