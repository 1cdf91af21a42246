"""Block benefit: a PETL adaptation of P3B (Glandorf & Rosenhahn, arXiv 2506.23675; code
github.com/PatGlan/Pruning_by_Block_Benefit, followed where PETL allows: loss/prune_loss.py,
pruner/forward_functions.py, models/FmAnalyseHead.py).

P3B prunes while it fine-tunes; here the backbone stays frozen and PETL + head + auxiliary heads
train during the *gate phase*, the first epochs of the run's training budget (the retraining
recipe), after which the model is sliced and the harness retrains it for the rest of the budget:
every method trains the same number of epochs after the transfer. The schedule is P3B's as
BASELINES.md scales it to VTAB-1k (fractions of the training budget): pruning from 10%, fully
sparse at 40%, hard masks at 50% (the end of the gate phase), then retraining to 100%; masks
are recomputed every `update_every` steps (~3 per VTAB-1k epoch of ~15 steps, as P3B's ~3 per
epoch).

As P3B's code (main.py, utils/optimizer.py, engine.py, loss/prune_loss.py), each a setting:
- `gate_lr="constant"`: the gate phase trains at a constant rate, the recipe's base lr (P3B's
  main.py builds no lr scheduler when it prunes); `recipe` runs the recipe's warm-up + cosine
  over its first epochs instead;
- `aux_lr=5e-4`: the auxiliary heads train at their own rate (P3B's `--lr-soft-head`, 5e-4, not
  scaled with the batch as its main rate is); None: the recipe's lr;
- `mask_update="before_step"`: a mask update happens before the forward of its step, from the
  window of the steps before it (P3B's engine.py calls `prune_forward` before the forward and
  accumulates the gate scores after the optimiser step), and a last one after the gate phase
  (P3B's finalize); `after_step` updates after the step, its window including it;
- `mask_centre="last_kept"`: the soft mask is 0.5 at the last kept gate (P3B's sigmoid is
  centred on its threshold index, and its hard mask keeps m >= 0.5); `between` centres it
  halfway between the last kept and the first pruned gate.

As in P3B:
- each residual branch (attention, MLP: 2N in an N-block ViT) has one auxiliary head per token
  type that classifies both its input and its output (stop-gradient features; P3B's 2N heads),
  so the *benefit* of the branch, the drop in cross-entropy from input to output, is measured by
  the same classifier; on the CLS token and on the patch tokens;
- benefits and gate Taylor scores are accumulated from the pruning start; each mask update uses
  the window since the last one and resets it;
- benefits per token type are scaled so the largest is `imp_scale`, soft-clipped to
  [0, imp_scale] (softplus(1.4 b) - softplus(1.4 b - imp_scale)), divided by the branch's
  remaining parameters, normalised to mean 1, smoothed by an EMA (new-value weight `ema`), then
  mixed CLS/patch with `alpha`;
- keep ratios proportional to the benefits are rescaled so the kept parameters meet the budget,
  clamped to [0, 1] (a branch at 0 is skipped); each branch moves linearly from 1 to its goal
  between the pruning start and full sparsity;
- inside a branch, gates are ranked by the squared Taylor score of the gate, (m dL/dm)^2,
  averaged over the window: one head-dim gate shared by all heads (and by q, k, v, as P3B's
  attn_qkv gate), so every head keeps the same dims, and one gate per MLP hidden neuron; the
  masks are sigmoid(log(9) (centre - rank) / (tau size)) (0.9 at tau size ranks inside the
  centre, P3B's factor), tau = `temperature` until full sparsity, then annealed to 0.

Departures, and why:
- frozen backbone (PETL): no attention-in/out or MLP-in/out gates on the residual width, which
  would cut the shared residual stream the PETL modules and the head read; P3B's per-gate-type
  importance factors then have nothing to weigh (one gate type per branch);
- the gate phase trains on the calibration split (train800val200, the training split) with the
  recipe's AdamW, base lr and batch size (P3B: its DeiT fine-tuning recipe, lr 5e-4 x batch/512,
  no weight decay on biases and norms); after it the harness retrains for the rest of the
  recipe's schedule (P3B fine-tunes the pruned model in a second run with a fresh schedule);
- P3B's last mask update also adds the previous window's sums to the last window; here it uses
  the last window alone;
- auxiliary heads are cheap: a Linear on the CLS token (as P3B) and a Linear on the mean-pooled
  patch tokens (P3B: two 3x3 conv-BN-ReLU layers before pooling, ~10 M parameters a head);
- the softmax scale of the sliced head is the rule every width pruner shares
  (baselines/softmax_scale.py): by default the unpruned one, as P3B's attention keeps and as the
  masked model trained with, so the sliced model equals the masked one.

Stored per task: the kept indices per branch (JSON, like width pruning) + PETL + head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn

from baselines.softmax_scale import KEEP_SCALE, scale_tags
from bench.budget import backbone_block_params, param_fraction
from bench.config import Recipe
from bench.errors import UserError
from bench.models.petl import AdapterBlock, freeze_backbone
from bench.models.surgery import (
    KeptIndices,
    ScaledAttention,
    check_plain_attention,
    fix_attention,
    slice_head_dims,
    slice_mlp_hidden,
    timm_block,
)
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult
from bench.train import autocast, make_scheduler, set_epoch_lr

DEPLOYED = "kept channel indices into the shared backbone (branches at 0 skipped)"
MASK_AT_TAU = 0.9  # P3B: the mask value tau * size ranks inside the threshold


# ---------------------------------------------------------------------------------------------
# gated attention and MLP (the timm modules with a multiplier on their prunable channels)


class GatedAttention(ScaledAttention):
    """timm Attention with an optional multiplier on its head-dim channels (q, k and v of a
    channel together) and a softmax scale that stays the unpruned one when sliced."""

    channel_gate: torch.Tensor | None = None

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        return qkv if self.channel_gate is None else qkv * self.channel_gate.repeat(3)


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
        if not isinstance(block, AdapterBlock):  # its forward is split at branch boundaries
            raise UserError(
                "block_benefit supports the per-block adapter PETL methods (convpass, adapter, "
                "repadapter), not LoRA or SPLoRA, whose updates live inside the Linears it would "
                "gate"
            )
    for block in model.blocks:
        check_plain_attention(timm_block(block).attn)
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
    """One residual branch: `size` gates, each repeated `copies` times (a head-dim gate is
    shared by every head; 1 for MLP neurons); a unit is one gate, `unit_params` its parameters
    (in every head); `fixed` what can never go."""

    block: int
    kind: str  # attn | mlp
    module: nn.Module
    copies: int
    size: int
    unit_params: int
    fixed: int
    keep: int = 0  # units kept now
    goal: int = 0  # units to keep once fully sparse (the latest allocation)
    taylor: torch.Tensor | None = None  # (size,) mean squared gate gradient of the last window
    gate: torch.Tensor | None = None  # the leaf whose gradient is m dL/dm (this step)
    mask: torch.Tensor | None = None  # (size,) current mask
    acc: torch.Tensor | None = None  # squared gate gradients summed since the last update
    steps: int = 0  # steps in `acc`

    def params(self, keep: int | None = None) -> int:
        return (self.keep if keep is None else keep) * self.unit_params + self.fixed

    def channel_gate(self) -> torch.Tensor:
        """The multiplier on the module's channels: mask x gate, repeated over the heads."""
        return (self.mask * self.gate).repeat(self.copies)


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
        br.keep = br.goal = br.size
    return out


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _numel_bias(linear: nn.Linear) -> int:
    return 0 if linear.bias is None else linear.bias.numel()


# ---------------------------------------------------------------------------------------------
# benefits (P3B's transform_imp_block and get_imp_block, loss/prune_loss.py)


def transform_benefits(drops: torch.Tensor, remaining: torch.Tensor, scale: float) -> torch.Tensor:
    """One token type's mean cross-entropy drops per branch -> benefit per remaining parameter:
    scaled so the largest is `scale`, soft-clipped to [0, scale], divided by the remaining
    parameters, normalised to mean 1 (P3B's order). A window where no branch helps (largest
    drop <= 0) is scaled by a tiny positive number instead of flipping the order."""
    peak = drops.max().clamp_min(1e-12)
    benefit = drops * scale / peak
    benefit = F.softplus(1.4 * benefit) - F.softplus(1.4 * benefit - scale)
    benefit = benefit / (remaining + 1e-6)
    return benefit / benefit.mean()


@dataclass
class Benefits:
    """Cross-entropy drops per branch and token type (CLS, patch), summed since the last update,
    and the EMA of their transforms."""

    drops: torch.Tensor  # (2, branches)
    steps: int = 0
    smoothed: torch.Tensor | None = None  # (2, branches) EMA of the transformed benefits

    def add(self, drops: torch.Tensor) -> None:
        self.drops += drops
        self.steps += 1

    def update(self, remaining: torch.Tensor, scale: float, ema: float, alpha: float):
        """The window's benefits, transformed per token type, EMA-smoothed, then mixed CLS/patch
        with `alpha`; the window is reset."""
        mean = self.drops / max(1, self.steps)
        new = torch.stack([transform_benefits(d, remaining, scale) for d in mean])
        self.smoothed = new if self.smoothed is None else ema * new + (1 - ema) * self.smoothed
        self.drops.zero_()
        self.steps = 0
        return alpha * self.smoothed[0] + (1 - alpha) * self.smoothed[1]


# ---------------------------------------------------------------------------------------------
# the budget: keep ratios from benefits, masks from gate Taylor scores


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


MaskCentre = Literal["last_kept", "between"]
CENTRE_OFFSET: dict[str, float] = {"last_kept": 1.0, "between": 0.5}


def soft_mask(
    scores: torch.Tensor, keep: int, temperature: float, centre: MaskCentre = "last_kept"
) -> torch.Tensor:
    """Mask over `size` gates keeping the `keep` best-ranked: P3B's sigmoid over the rank,
    sigmoid(log(9) (keep - offset - rank) / (temperature size)), 0.9 at temperature x size
    ranks inside its centre. `last_kept` (P3B, offset 1): 0.5 at the last kept gate, which P3B's
    hard mask (m >= 0.5) keeps; `between` (offset 1/2): halfway between the last kept and the
    first pruned gate. Hard (the `keep` best at 1, the rest at 0) at temperature 0."""
    size = scores.shape[0]
    if keep >= size:
        return torch.ones_like(scores)
    order = torch.sort(scores, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(size, device=scores.device)
    if temperature <= 0:
        return (ranks < keep).to(scores.dtype)
    factor = math.log(MASK_AT_TAU / (1 - MASK_AT_TAU))
    position = keep - CENTRE_OFFSET[centre] - ranks.to(scores.dtype)
    return torch.sigmoid(factor * position / (temperature * size))


def kept_indices(brs: list[Branch], num_blocks: int) -> KeptIndices:
    """The channels each branch keeps: its `keep` best Taylor-ranked gates, in every head."""
    kept: KeptIndices = [{} for _ in range(num_blocks)]
    for br in brs:
        gates = torch.nonzero(soft_mask(br.taylor, br.keep, 0.0)).flatten().tolist()
        kept[br.block][br.kind] = [c * br.size + g for c in range(br.copies) for g in gates]
    return kept


# ---------------------------------------------------------------------------------------------
# slicing


def slice_model(model: nn.Module, kept: KeptIndices, keep_scale: bool = KEEP_SCALE) -> None:
    """Physically keep the given head-dim channels and hidden neurons of every gated block; the
    softmax scale stays the unpruned one unless `keep_scale` is False. An empty list skips the
    branch."""
    if len(kept) != len(model.blocks):
        raise ValueError(f"state has {len(kept)} blocks, model {len(model.blocks)}")
    for block, k in zip(model.blocks, kept, strict=True):
        attn, mlp = timm_block(block).attn, timm_block(block).mlp
        if len(k["attn"]) % attn.num_heads:
            raise ValueError(f"kept head dims {len(k['attn'])} do not split into {attn.num_heads}")
        slice_head_dims(attn, k["attn"])
        fix_attention(attn, keep_scale or not k["attn"])  # a skipped branch has no softmax
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
    """Per branch (2N): a Linear on the CLS token and a Linear on the mean-pooled patch tokens,
    each scoring both the branch's input and its output (P3B's FeaturemapAnalyseHead)."""

    def __init__(self, branches: int, dim: int, classes: int, prefix: int):
        super().__init__()
        self.prefix = prefix
        self.cls = nn.ModuleList(nn.Linear(dim, classes) for _ in range(branches))
        self.patch = nn.ModuleList(nn.Linear(dim, classes) for _ in range(branches))

    def losses(self, points: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """(2 in/out, 2 CLS/patch, branches) cross-entropies; branch j reads points j and j+1
        (stop-gradient), with its own two heads."""
        out = []
        for j, (cls, patch) in enumerate(zip(self.cls, self.patch, strict=True)):
            per_side = []
            for x in (points[j].detach(), points[j + 1].detach()):
                pooled = x[:, self.prefix :].mean(1)
                per_side.append(torch.stack([F.cross_entropy(cls(x[:, 0]), labels),
                                             F.cross_entropy(patch(pooled), labels)]))  # fmt: skip
            out.append(torch.stack(per_side))
        return torch.stack(out, dim=-1)


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


@dataclass
class Schedule:
    """The gate phase in steps: pruning from `start`, fully sparse at `sparse`, hard at `total`.
    `mask_update`: whether a step's mask update comes before its forward (P3B) or after its
    optimiser step."""

    epochs: int
    steps_per_epoch: int
    start: int
    sparse: int
    mask_update: str = "after_step"

    @property
    def total(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def before_step(self) -> bool:
        return self.mask_update == "before_step"

    def updates_at(self, step: int, every: int) -> bool:
        """P3B's update steps: every `every` steps from the start; after the step, also at the
        last step (before the step, the last update follows the gate phase: `final`)."""
        regular = step >= self.start and (step - self.start) % every == every - 1
        return regular or (not self.before_step and step == self.total - 1)

    def ramp(self, step: int) -> float:
        """0 before the start, 1 from full sparsity (P3B's pr_step)."""
        return min(max(step + 1 - self.start, 0) / max(self.sparse - self.start, 1), 1.0)

    def sharpness(self, step: int) -> float:
        """0 until full sparsity, 1 at the end (tau anneals to 0). Before the step, P3B's
        (step - sparse) / (total - sparse); after it, the step just trained counts."""
        done = step if self.before_step else step + 1
        return min(max((done - self.sparse) / max(self.total - self.sparse, 1), 0.0), 1.0)


@PRUNERS.register("block_benefit")
@dataclass
class BlockBenefit(Pruner):
    """Block benefit: a PETL adaptation of P3B (Glandorf & Rosenhahn, arXiv 2506.23675).
    See the module docstring for the method and where and why it departs from P3B."""

    # the per-block adapter methods: LoRA's and SPLoRA's updates live inside the Linears it gates
    petl_methods = frozenset({"convpass", "adapter", "repadapter"})

    # the schedule, as fractions of the training budget (BASELINES.md: 10, 40, 50 of 100 epochs)
    prune_start: float = 0.1
    sparse_at: float = 0.4
    harden_at: float = 0.5  # the gate phase ends here; the harness retrains the rest
    epochs: int | None = None  # gate-phase epochs; None: harden_at x the training budget
    batch_size: int | None = None  # None: the recipe's
    update_every: int = 5  # steps between mask updates (~3 per VTAB-1k epoch of ~15 steps)
    temperature: float = 0.1  # P3B's tau_max (soft-mask width as a fraction of the gates)
    ema: float = 0.2  # P3B's gamma: weight of the new benefits
    alpha: float = 0.5  # CLS vs patch benefit mix
    imp_scale: float = 10.0  # P3B's pr_block_imp_scale: the soft clip's ceiling
    tolerance: float = 0.02  # |achieved - target| as a fraction of backbone block parameters
    # P3B's training of the gate phase (module docstring)
    gate_lr: Literal["constant", "recipe"] = "constant"  # constant: the recipe's base lr
    aux_lr: float | None = 5e-4  # P3B's --lr-soft-head; None: the recipe's lr
    mask_update: Literal["before_step", "after_step"] = "before_step"
    mask_centre: MaskCentre = "last_kept"
    keep_scale: bool = KEEP_SCALE  # the unpruned softmax scale (baselines/softmax_scale.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.prune_start < self.sparse_at <= self.harden_at <= 1:
            raise UserError(
                "pruners.block_benefit: need 0 <= prune_start < sparse_at <= harden_at <= 1, got "
                f"{self.prune_start}, {self.sparse_at}, {self.harden_at}"
            )
        if self.aux_lr is not None and self.aux_lr <= 0:
            raise UserError(
                f"pruners.block_benefit.aux_lr must be > 0 (or none), got {self.aux_lr}"
            )

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
            schedule, history = self.gate_phase(ctx, model, brs, prunable - target * before)
        kept = kept_indices(brs, len(model.blocks))
        slice_model(model, kept, self.keep_scale)
        freeze_backbone(model)
        achieved = 1.0 - backbone_block_params(model) / before
        if abs(achieved - target) > self.tolerance:
            raise RuntimeError(
                f"block_benefit: kept channels remove {achieved:.4f} of the block parameters, "
                f"target {target:.4f} ± {self.tolerance}"
            )
        ratios = [br.keep / br.size for br in brs]
        metrics = {"target_fraction": target, "params_removed_fraction": achieved,
                   "branches_skipped": float(sum(r == 0 for r in ratios)),
                   "gate_epochs": float(schedule.epochs)}  # fmt: skip
        for br, r in zip(brs, ratios, strict=True):
            metrics[f"keep/{br.kind}_{br.block + 1:02d}"] = r
        decision = {
            "deployed": DEPLOYED,
            "reconstruction": "PETL adaptation of P3B (see docstring)",
            "keep_ratios": {
                f"{br.kind}_{br.block + 1:02d}": r for br, r in zip(brs, ratios, strict=True)
            },
            "schedule_steps": {
                "start": schedule.start,
                "sparse": schedule.sparse,
                "total": schedule.total,
            },  # fmt: skip
            "history": history,
            "settings": self.settings(),
            **metrics,
        }
        tags = {"stored.deployed": DEPLOYED, "reconstruction": "PETL adaptation of P3B",
                **scale_tags(self.keep_scale)}  # fmt: skip
        state = {"blocks": kept, "keep_scale": self.keep_scale}
        return PruneResult(model, state, decision, metrics, tags=tags, retrain=True,
                           epochs_trained=float(schedule.epochs))  # fmt: skip

    def schedule(self, recipe: Recipe, images: int) -> Schedule:
        epochs = self.epochs if self.epochs is not None else round(self.harden_at * recipe.epochs)
        if not 1 <= epochs <= recipe.epochs:
            raise UserError(
                f"block_benefit: a gate phase of {epochs} epochs does not fit the training "
                f"budget of {recipe.epochs} epochs (it is the budget's first epochs)"
            )
        steps = max(1, images // min(self.batch_size or recipe.batch_size, images))
        total = epochs * steps
        start = round(self.prune_start / self.harden_at * total)
        sparse = max(start + 1, round(self.sparse_at / self.harden_at * total))
        return Schedule(epochs, steps, min(start, total - 1), min(sparse, total), self.mask_update)

    def gate_phase(self, ctx: PruneContext, model: nn.Module, brs: list[Branch], keep: float):
        """Train PETL + head + auxiliary heads on the calibration set, the recipe's first epochs
        (its AdamW at a constant rate or on its schedule, `gate_lr`; the auxiliary heads at
        `aux_lr`), while benefits and gate Taylor scores are accumulated and the masks
        recomputed; ends with hard masks at the full budget (`keep` parameters)."""
        images = torch.cat([x for x, _ in ctx.calibration])
        labels = torch.cat([y for _, y in ctx.calibration])
        schedule = self.schedule(ctx.recipe, len(images))
        batch = len(images) // schedule.steps_per_epoch
        aux = AuxHeads(len(brs), model.embed_dim, model.num_classes, model.num_prefix_tokens)
        aux = aux.to(ctx.device)
        aux_lr = ctx.recipe.lr if self.aux_lr is None else self.aux_lr
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]},
                  {"params": list(aux.parameters()), "lr": aux_lr}]  # fmt: skip
        optimizer = torch.optim.AdamW(
            groups, lr=ctx.recipe.lr, weight_decay=ctx.recipe.weight_decay
        )
        scheduler = make_scheduler(optimizer, ctx.recipe) if self.gate_lr == "recipe" else None
        for br in brs:
            br.mask = torch.ones(br.size, device=ctx.device)
            br.taylor = torch.zeros(br.size, device=ctx.device)
            br.acc = torch.zeros_like(br.taylor)
        benefits = Benefits(torch.zeros(2, len(brs)))
        generator = torch.Generator().manual_seed(ctx.seed)
        history, step = [], 0

        def update(at: int, final: bool = False) -> None:
            entry = self.update(brs, benefits, schedule, at, keep, final)
            if entry is not None:
                history.append(entry)

        was_training = model.training
        model.train()
        try:
            for epoch in range(schedule.epochs):
                set_epoch_lr(scheduler, ctx.recipe, epoch)
                order = torch.randperm(len(images), generator=generator).to(images.device)
                for b in range(schedule.steps_per_epoch):
                    index = order[b * batch : (b + 1) * batch]
                    if schedule.before_step and schedule.updates_at(step, self.update_every):
                        update(step)
                    drops = self.train_step(
                        model, aux, optimizer, brs, images[index], labels[index], ctx.recipe.dtype
                    )
                    if step >= schedule.start:
                        self.accumulate(brs, benefits, drops)
                    if not schedule.before_step and schedule.updates_at(step, self.update_every):
                        update(step)
                    step += 1
            if schedule.before_step:  # P3B's finalize: the last window, at the full budget
                update(step, final=True)
        finally:
            for br in brs:
                br.module.channel_gate = None
            model.train(was_training)
        return schedule, history

    def train_step(self, model, aux, optimizer, brs, x, y, dtype="float32") -> torch.Tensor:
        """One step of the main and auxiliary losses through the masked gates (in the recipe's
        `dtype`, as every training); returns the branches' cross-entropy drops (2 CLS/patch,
        branches)."""
        for br in brs:
            br.gate = torch.ones(br.size, device=x.device, requires_grad=True)
            br.module.channel_gate = br.channel_gate()
        with autocast(x.device, dtype):
            logits, points = forward_points(model, x)
            aux_losses = aux.losses(points, y)
            loss = F.cross_entropy(logits, y) + aux_losses.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return (aux_losses[0] - aux_losses[1]).detach().cpu()

    def accumulate(self, brs: list[Branch], benefits: Benefits, drops: torch.Tensor) -> None:
        benefits.add(drops)
        for br in brs:
            br.acc += br.gate.grad.pow(2)
            br.steps += 1

    def update(self, brs: list[Branch], benefits: Benefits, schedule: Schedule, step: int,
               keep: float, final: bool = False) -> dict | None:  # fmt: skip
        """P3B's prune_forward: the window's benefits -> each branch's goal at the full budget;
        its keep moves there with the ramp; masks from the window's Taylor scores; the windows
        reset. `final`: the full budget, hard masks. An empty window (no step since the pruning
        start) changes nothing."""
        if benefits.steps == 0:
            return None
        remaining = torch.tensor([float(br.params()) for br in brs])
        scores = benefits.update(remaining, self.imp_scale, self.ema, self.alpha)
        goals = allocate(scores.tolist(), [br.size for br in brs],
                         [br.unit_params for br in brs], keep)  # fmt: skip
        ramp = 1.0 if final else schedule.ramp(step)
        temperature = 0.0 if final else self.temperature * (1.0 - schedule.sharpness(step))
        for br, goal in zip(brs, goals, strict=True):
            br.taylor = br.acc / max(1, br.steps)
            br.acc.zero_()
            br.steps = 0
            br.goal = goal
            br.keep = round(br.size - (br.size - goal) * ramp)
            br.mask = soft_mask(br.taylor, br.keep, temperature, self.mask_centre)
        return {"step": step + 1, "ramp": ramp, "temperature": temperature,
                "keep": [br.keep / br.size for br in brs],
                "benefit": [round(float(s), 6) for s in scores]}  # fmt: skip

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        install_gates(model)
        slice_model(model, state["blocks"], state.get("keep_scale", True))
        freeze_backbone(model)
        return model
