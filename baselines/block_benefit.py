"""Block benefit: a PETL adaptation of P3B (Glandorf & Rosenhahn, arXiv 2506.23675).

P3B prunes a fully fine-tuned DeiT; here the backbone stays frozen and only PETL + head +
auxiliary heads train (the gates are not trained, they are recomputed from scores). Each residual
branch (attention, MLP: 2N in an N-block ViT) is scored by its *benefit*: the drop in
cross-entropy of auxiliary classifiers on stop-gradient features from the branch's input to its
output, on the CLS token and on mean-pooled patch tokens (mixed with `alpha`). Benefits are
soft-clipped (softplus with softness `clip`), divided by the branch's remaining parameters and
smoothed with an EMA (`ema`). Per-branch keep ratios proportional to them are rescaled so the kept
parameters meet the global budget, clamped to [0, 1]; a branch at 0 is skipped. Inside a branch,
gates on head dims (the same count in every head; q, k and v of a dim together) and on MLP hidden
neurons are ranked by the squared Taylor score of the gate, (m dL/dm)^2 (EMA-smoothed); masks are
soft (a sigmoid over the rank, temperature annealed to 0) and recomputed every `update_every`
steps, so pruned elements can come back. The budget ramps from 0 at `prune_start` to its full
value at `sparse_at` (fractions of the gate phase); the masks are hard at the end of it. The
model is then physically sliced (faster) and the harness retrains PETL + head with the same
recipe as every pruner (P3B's "retrain to 100").

Reconstructions and departures (the published code does full fine-tuning on CIFAR/ImageNet):
- the gate phase is a short loop over the calibration set (train800val200), with its own
  settings, scaled to VTAB-1k's ~15 steps per epoch (batch 64 of 1000 images);
- auxiliary heads are cheap (LayerNorm + Linear on CLS, on mean-pooled patches), not P3B's ~10 M
  parameter patch heads; the soft clip and the sigmoid-over-rank masks are choices made here;
- the residual (embedding) width is kept: no attention-in/out channel gates, so the PETL modules,
  the shared residual stream and the head are untouched;
- pruned head dims keep the unpruned softmax temperature (head_dim ** -0.5 of the full head), as
  the masked model trained with it, so the sliced model equals the masked one.

Stored per task: the kept indices per branch (JSON, like width pruning) + PETL + head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.vision_transformer import Attention
from torch import nn

from baselines.width import check_supported, slice_head_dims, slice_mlp_hidden, timm_block
from bench.budget import backbone_block_params, param_fraction
from bench.errors import UserError
from bench.models.petl import ParallelBranchBlock, freeze_backbone
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult

DEPLOYED = "kept channel indices into the shared backbone (branches at 0 skipped)"
KeptIndices = list[dict[str, list[int]]]  # per block: {"attn": head-dim channels, "mlp": hidden}


# ---------------------------------------------------------------------------------------------
# gated attention and MLP (the timm modules with a multiplier on their prunable channels)


class GatedAttention(Attention):
    """timm Attention with an optional multiplier on its head-dim channels (q, k and v of a
    channel together) and a softmax scale that stays the unpruned one when sliced."""

    channel_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        b, n, _ = x.shape
        if self.attn_dim == 0:  # skipped branch: only the projection's bias is left
            return self.proj_drop(self.proj(x.new_zeros(b, n, 0)))
        qkv = self.qkv(x)
        if self.channel_gate is not None:
            qkv = qkv * self.channel_gate.repeat(3)
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop.p if self.training else 0.0,
            is_causal=is_causal, scale=self.scale,
        )  # fmt: skip
        x = self.norm(x.transpose(1, 2).reshape(b, n, self.attn_dim))
        return self.proj_drop(self.proj(x))


class GatedMlp(Mlp):
    """timm Mlp with an optional multiplier on its hidden neurons (after the activation)."""

    channel_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        if self.channel_gate is not None:
            x = x * self.channel_gate
        return self.drop2(self.fc2(self.norm(x)))


def install_gates(model: nn.Module) -> None:
    """Turn each block's timm Attention and Mlp into the gated subclasses (same parameters)."""
    for block in model.blocks:
        if not isinstance(block, ParallelBranchBlock):
            raise UserError(
                "block_benefit supports the parallel-branch PETL methods (convpass, adapter), "
                "not LoRA or SPLoRA, whose updates live inside the Linears it would gate"
            )
    check_supported(model)
    for block in model.blocks:
        b = timm_block(block)
        if type(b.mlp) is not Mlp and not isinstance(b.mlp, GatedMlp):
            raise UserError(f"block_benefit supports timm's plain Mlp, not {type(b.mlp).__name__}")
        b.attn.__class__ = GatedAttention
        b.mlp.__class__ = GatedMlp


# ---------------------------------------------------------------------------------------------
# branches: what can be pruned, and what it costs


@dataclass
class Branch:
    """One residual branch: `groups` x `size` gates (heads x head dims, or 1 x hidden); a unit
    is one gate in every group, `unit_params` its parameters; `fixed` what can never go."""

    block: int
    kind: str  # attn | mlp
    module: nn.Module
    groups: int
    size: int
    unit_params: int
    fixed: int
    keep: int = 0  # units kept now
    taylor: torch.Tensor | None = None  # (groups, size) EMA of squared gate gradients
    benefit: float | None = None  # EMA of the clipped benefit per remaining parameter
    gate: torch.Tensor | None = None  # the leaf whose gradient is m dL/dm (this step)
    mask: torch.Tensor | None = None  # (groups, size) current mask
    acc: torch.Tensor | None = None  # squared gate gradients summed since the last update
    steps: int = 0
    drops: list[float] = field(default_factory=lambda: [0.0, 0.0])  # CE drops (cls, patch)

    def params(self, keep: int | None = None) -> int:
        return (self.keep if keep is None else keep) * self.unit_params + self.fixed


def branches(model: nn.Module) -> list[Branch]:
    out = []
    for i, block in enumerate(model.blocks):
        b = timm_block(block)
        attn, mlp = b.attn, b.mlp
        dim, heads = attn.proj.out_features, attn.num_heads
        qkv_bias = attn.qkv.bias is not None
        per_channel = 3 * dim + 3 * qkv_bias + dim
        attn_fixed = _numel(b.norm1) + _numel_bias(attn.proj) + _numel(b.ls1)
        out.append(Branch(i, "attn", attn, heads, attn.proj.in_features // heads,
                          heads * per_channel, attn_fixed))  # fmt: skip
        per_neuron = 2 * dim + (mlp.fc1.bias is not None)
        mlp_fixed = _numel(b.norm2) + _numel_bias(mlp.fc2) + _numel(b.ls2) + _numel(mlp.norm)
        out.append(Branch(i, "mlp", mlp, 1, mlp.fc1.out_features, per_neuron, mlp_fixed))
    for br in out:
        br.keep = br.size
    return out


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _numel_bias(linear: nn.Linear) -> int:
    return 0 if linear.bias is None else linear.bias.numel()


# ---------------------------------------------------------------------------------------------
# the budget: keep ratios from benefits, then whole units


def allocate(scores: list[float], units: list[int], unit_params: list[int], keep_params: float):
    """Units kept per branch: ratios min(1, c * score) (c found by bisection) so that the kept
    prunable parameters are `keep_params`, then rounded to whole units (largest remainders)."""
    total = sum(n * u for n, u in zip(units, unit_params, strict=True))
    keep_params = min(max(keep_params, 0.0), float(total))
    scores = [max(s, 0.0) for s in scores]
    if not any(scores):
        scores = [1.0] * len(scores)

    def kept(c: float) -> float:
        return sum(
            min(1.0, c * s) * n * u for s, n, u in zip(scores, units, unit_params, strict=True)
        )

    low, high = 0.0, 1.0
    while kept(high) < keep_params and high < 1e30:
        high *= 2.0
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if kept(mid) < keep_params else (low, mid)
    ideal = [min(1.0, high * s) * n for s, n in zip(scores, units, strict=True)]
    counts = [math.floor(x + 1e-9) for x in ideal]
    left = keep_params - sum(k * u for k, u in zip(counts, unit_params, strict=True))
    for j in sorted(range(len(counts)), key=lambda j: (-(ideal[j] - counts[j]), j)):
        if counts[j] < units[j] and left >= unit_params[j] / 2:
            counts[j] += 1
            left -= unit_params[j]
    return counts


def soft_mask(scores: torch.Tensor, keep: int, temperature: float) -> torch.Tensor:
    """Mask over (groups, size) gates keeping the `keep` best-ranked of each group: a sigmoid
    over the rank with the given temperature (relative to the group size), hard at 0."""
    size = scores.shape[1]
    if keep >= size:
        return torch.ones_like(scores)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(size, device=scores.device).expand_as(order))
    if temperature <= 0:
        return (ranks < keep).to(scores.dtype)
    return torch.sigmoid((keep - 0.5 - ranks.to(scores.dtype)) / (temperature * size))


def kept_indices(brs: list[Branch], num_blocks: int) -> KeptIndices:
    """The channels each branch keeps: its `keep` best Taylor-ranked gates in every group."""
    kept: KeptIndices = [{} for _ in range(num_blocks)]
    for br in brs:
        mask = soft_mask(br.taylor, br.keep, 0.0).flatten()
        kept[br.block][br.kind] = [int(i) for i in torch.nonzero(mask).flatten()]
    return kept


# ---------------------------------------------------------------------------------------------
# slicing


def slice_model(model: nn.Module, kept: KeptIndices) -> None:
    """Physically keep the given head-dim channels and hidden neurons of every gated block; the
    softmax scale stays the unpruned one. An empty list skips the branch."""
    if len(kept) != len(model.blocks):
        raise ValueError(f"state has {len(kept)} blocks, model {len(model.blocks)}")
    for block, k in zip(model.blocks, kept, strict=True):
        attn, mlp = timm_block(block).attn, timm_block(block).mlp
        if len(k["attn"]) % attn.num_heads:
            raise ValueError(f"kept head dims {len(k['attn'])} do not split into {attn.num_heads}")
        slice_head_dims(attn, k["attn"])
        attn.attn_dim, attn.head_dim = len(k["attn"]), len(k["attn"]) // attn.num_heads
        slice_mlp_hidden(mlp, k["mlp"])
        attn.channel_gate = mlp.channel_gate = None


def apply_masks(model: nn.Module, kept: KeptIndices) -> None:
    """The masked (unsliced) model with hard masks for `kept`: what `slice_model` must equal."""
    for block, k in zip(model.blocks, kept, strict=True):
        attn, mlp = timm_block(block).attn, timm_block(block).mlp
        device = attn.qkv.weight.device
        attn.channel_gate = torch.zeros(attn.proj.in_features, device=device)
        attn.channel_gate[k["attn"]] = 1.0
        mlp.channel_gate = torch.zeros(mlp.fc1.out_features, device=device)
        mlp.channel_gate[k["mlp"]] = 1.0


# ---------------------------------------------------------------------------------------------
# the pruner


class AuxHeads(nn.Module):
    """Per residual point (2N + 1): a linear classifier on the CLS token and one on the
    mean-pooled patch tokens, each after a LayerNorm without affine parameters."""

    def __init__(self, points: int, dim: int, classes: int, prefix: int):
        super().__init__()
        self.prefix = prefix
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.cls = nn.ModuleList(nn.Linear(dim, classes) for _ in range(points))
        self.patch = nn.ModuleList(nn.Linear(dim, classes) for _ in range(points))

    def losses(self, points: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """(points, 2) cross-entropies, CLS and patch, on stop-gradient features."""
        out = []
        for x, cls, patch in zip(points, self.cls, self.patch, strict=True):
            x = self.norm(x.detach())
            pooled = x[:, self.prefix :].mean(1)
            ce_cls, ce_patch = (
                F.cross_entropy(cls(x[:, 0]), labels),
                F.cross_entropy(patch(pooled), labels),
            )
            out.append(torch.stack([ce_cls, ce_patch]))
        return torch.stack(out)


def forward_points(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the residual stream at every branch boundary (2N + 1 points)."""
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    points = [x]
    for block in model.blocks:
        x = block.attn_residual(x)
        points.append(x)
        x = block.mlp_residual(x)
        points.append(x)
    return model.forward_head(model.norm(x)), points


@PRUNERS.register("block_benefit")
@dataclass
class BlockBenefit(Pruner):
    """Block benefit: a PETL adaptation of P3B (Glandorf & Rosenhahn, arXiv 2506.23675).
    See the module docstring for the method and which parts are reconstructions."""

    name = "block_benefit"

    epochs: int = 10  # gate phase over the calibration set (P3B's epochs 0-50, scaled)
    batch_size: int = 64  # ~15 steps per epoch on 1000 images, as VTAB-1k training
    lr: float = 1e-3  # AdamW on PETL + head + auxiliary heads during the gate phase
    weight_decay: float = 1e-4
    update_every: int = 5  # steps between mask recomputations
    prune_start: float = 0.2  # fraction of the gate phase where the budget starts to ramp
    sparse_at: float = 0.8  # fraction where the full budget is reached (hard at the end)
    temperature: float = 0.1  # initial soft-mask temperature (rank units / group size)
    ema: float = 0.2  # gamma of the benefit and Taylor EMAs (new-value weight)
    alpha: float = 0.5  # CLS vs patch benefit mix
    clip: float = 0.05  # softness of the soft clip of benefits at 0
    tolerance: float = 0.02  # |achieved - target| as a fraction of backbone block parameters

    def prune(self, ctx: PruneContext) -> PruneResult:
        model = ctx.model
        install_gates(model)
        freeze_backbone(model)
        before = backbone_block_params(model)
        target = param_fraction(ctx.budget, len(model.blocks))
        brs = branches(model)
        prunable = sum(br.size * br.unit_params for br in brs)
        if target * before > prunable:
            raise UserError(
                f"block_benefit: budget {ctx.budget} removes more than the prunable channels"
            )
        devices = [ctx.device] if ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(ctx.seed)
            history = self.gate_phase(ctx, model, brs, target * before)
        final_keep = prunable - target * before
        counts = allocate([_score(br) for br in brs], [br.size for br in brs],
                          [br.unit_params for br in brs], final_keep)  # fmt: skip
        for br, k in zip(brs, counts, strict=True):
            br.keep = k
        kept = kept_indices(brs, len(model.blocks))
        slice_model(model, kept)
        freeze_backbone(model)
        achieved = 1.0 - backbone_block_params(model) / before
        if abs(achieved - target) > self.tolerance:
            raise RuntimeError(
                f"block_benefit: kept channels remove {achieved:.4f} of the block parameters, "
                f"target {target:.4f} ± {self.tolerance}"
            )
        ratios = [br.keep / br.size for br in brs]
        metrics = {"target_fraction": target, "params_removed_fraction": achieved,
                   "branches_skipped": float(sum(r == 0 for r in ratios))}  # fmt: skip
        for br, r in zip(brs, ratios, strict=True):
            metrics[f"keep/{br.kind}_{br.block + 1:02d}"] = r
            metrics[f"benefit/{br.kind}_{br.block + 1:02d}"] = _score(br)
        decision = {
            "deployed": DEPLOYED,
            "reconstruction": "PETL adaptation of P3B (see docstring)",
            "keep_ratios": {
                f"{br.kind}_{br.block + 1:02d}": r for br, r in zip(brs, ratios, strict=True)
            },
            "history": history,
            "settings": self.settings(),
            **metrics,
        }
        tags = {"stored.deployed": DEPLOYED, "reconstruction": "PETL adaptation of P3B"}
        return PruneResult(model, {"blocks": kept}, decision, metrics, tags=tags, retrain=True,
                           epochs_trained=float(self.epochs))  # fmt: skip

    def gate_phase(self, ctx: PruneContext, model: nn.Module, brs: list[Branch], removed: float):
        """Train PETL + head + auxiliary heads on the calibration set while the gates' Taylor
        scores and the branches' benefits are tracked and the masks are recomputed."""
        images = torch.cat([x for x, _ in ctx.calibration])
        labels = torch.cat([y for _, y in ctx.calibration])
        n = len(images)
        batch = min(self.batch_size, n)
        steps_per_epoch = max(1, n // batch)
        total = max(1, self.epochs * steps_per_epoch)
        start, sparse = round(self.prune_start * total), max(1, round(self.sparse_at * total))
        dim, classes = model.embed_dim, model.num_classes
        aux = AuxHeads(2 * len(model.blocks) + 1, dim, classes, model.num_prefix_tokens)
        aux = aux.to(ctx.device)
        params = [p for p in model.parameters() if p.requires_grad] + list(aux.parameters())
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        prunable = sum(br.size * br.unit_params for br in brs)
        for br in brs:
            br.mask = torch.ones(br.groups, br.size, device=ctx.device)
            br.taylor = torch.zeros(br.groups, br.size, device=ctx.device)
            br.acc = torch.zeros_like(br.taylor)
        generator = torch.Generator().manual_seed(ctx.seed)
        history, step = [], 0
        was_training = model.training
        model.train()
        try:
            for _ in range(self.epochs):
                order = torch.randperm(n, generator=generator).to(images.device)
                for b in range(steps_per_epoch):
                    index = order[b * batch : (b + 1) * batch]
                    self.train_step(model, aux, optimizer, brs, images[index], labels[index])
                    step += 1
                    if step % self.update_every == 0 or step == total:
                        ramp = min(1.0, max(0.0, (step - start) / max(1, sparse - start)))
                        cooling = max(0.0, 1.0 - max(0, step - start) / max(1, total - start))
                        self.update(brs, step >= start, prunable - ramp * removed,
                                    self.temperature * cooling)  # fmt: skip
                        history.append({"step": step, "ramp": ramp,
                                        "keep": [br.keep / br.size for br in brs]})  # fmt: skip
        finally:
            for br in brs:
                br.module.channel_gate = None
            model.train(was_training)
        return history

    def train_step(self, model, aux, optimizer, brs, x, y) -> None:
        for br in brs:
            br.gate = torch.ones(br.groups * br.size, device=x.device, requires_grad=True)
            br.module.channel_gate = br.mask.flatten() * br.gate
        logits, points = forward_points(model, x)
        aux_losses = aux.losses(points, y)
        loss = F.cross_entropy(logits, y) + aux_losses.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        drops = (aux_losses[:-1] - aux_losses[1:]).detach().cpu()  # branch j: input j, output j+1
        for j, br in enumerate(brs):
            br.acc += br.gate.grad.view(br.groups, br.size).pow(2)
            br.drops = [br.drops[0] + float(drops[j, 0]), br.drops[1] + float(drops[j, 1])]
            br.steps += 1

    def update(self, brs: list[Branch], pruning: bool, keep_params: float, temperature: float):
        """EMAs of Taylor scores and benefits from the steps since the last update; then, while
        pruning, the keep ratios for the current budget and the masks."""
        for br in brs:
            steps = max(1, br.steps)
            taylor = br.acc / steps
            benefit = self.alpha * br.drops[0] / steps + (1 - self.alpha) * br.drops[1] / steps
            benefit = self.clip * F.softplus(torch.tensor(benefit / self.clip)).item()
            benefit /= br.params()
            if br.benefit is None:
                br.taylor, br.benefit = taylor, benefit
            else:
                br.taylor = (1 - self.ema) * br.taylor + self.ema * taylor
                br.benefit = (1 - self.ema) * br.benefit + self.ema * benefit
            br.acc.zero_()
            br.drops, br.steps = [0.0, 0.0], 0
        if not pruning:
            return
        counts = allocate([_score(br) for br in brs], [br.size for br in brs],
                          [br.unit_params for br in brs], keep_params)  # fmt: skip
        for br, k in zip(brs, counts, strict=True):
            br.keep = k
            br.mask = soft_mask(br.taylor, k, temperature)

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        install_gates(model)
        slice_model(model, state["blocks"])
        freeze_backbone(model)
        return model


def _score(br: Branch) -> float:
    return 0.0 if br.benefit is None else br.benefit
