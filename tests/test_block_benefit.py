"""Block benefit (PETL P3B): keep ratios meet the budget, the sliced model equals the masked one,
branches can be skipped, masks are soft then hard and follow the scores."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from baselines.block_benefit import (
    AuxHeads,
    Benefits,
    BlockBenefit,
    Schedule,
    allocate,
    apply_masks,
    branches,
    install_gates,
    slice_model,
    soft_mask,
    transform_benefits,
)
from bench.budget import backbone_block_params
from bench.config import Recipe
from bench.errors import UserError
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model

FAST = {"epochs": 2, "batch_size": 32, "update_every": 2}


def _context(tmp_path, budget="keep:2", petl="convpass", recipe=None):
    return PruneContext(petl_model(petl), calibration_loader(), get_task("digits"),
                        Budget.parse(budget), 0, torch.device("cpu"), tmp_path,
                        recipe or Recipe())  # fmt: skip


@pytest.mark.parametrize(("budget", "target"), [("keep:2", 0.5), ("params:0.3", 0.3)])
def test_keep_ratios_meet_the_budget(tmp_path, budget, target):
    unpruned = backbone_block_params(petl_model("convpass"))
    result = make_pruner("block_benefit", FAST).prune(_context(tmp_path, budget))
    removed = 1 - backbone_block_params(result.model) / unpruned
    assert removed == pytest.approx(target, abs=0.02)
    assert result.metrics["params_removed_fraction"] == pytest.approx(removed)
    ratios = result.decision["keep_ratios"]
    assert len(ratios) == 8 and all(0.0 <= r <= 1.0 for r in ratios.values())
    assert len(set(ratios.values())) > 1  # not uniform: allocated by benefit
    assert result.decision["history"][-1]["ramp"] == 1.0


def test_adapter_petl_is_supported_and_lora_refused(tmp_path):
    result = make_pruner("block_benefit", FAST).prune(_context(tmp_path, petl="adapter"))
    assert result.metrics["params_removed_fraction"] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(UserError, match="LoRA"):
        make_pruner("block_benefit", FAST).prune(_context(tmp_path, petl="lora"))


def test_allocation_is_proportional_clamped_and_exact():
    units, unit_params = [10, 10, 10, 10], [5, 5, 20, 20]
    keep = 0.5 * sum(n * u for n, u in zip(units, unit_params, strict=True))
    counts = allocate([0.0, 4.0, 1.0, 2.0], units, unit_params, keep)
    assert counts[0] == 0  # no benefit: the branch is skipped
    assert counts[1] == 10  # clamped at 1
    assert counts[3] == pytest.approx(2 * counts[2], abs=1)
    kept = sum(k * u for k, u in zip(counts, unit_params, strict=True))
    assert abs(kept - keep) <= max(unit_params) / 2


def _kept(model, generator):
    """Random kept indices: same count per head, one attention and one MLP branch skipped."""
    kept = []
    for i, block in enumerate(model.blocks):
        attn, mlp = block.block.attn, block.block.mlp
        hd, heads = attn.head_dim, attn.num_heads
        a = 0 if i == 1 else int(torch.randint(1, hd, (1,), generator=generator))
        dims = [
            h * hd + int(j)
            for h in range(heads)
            for j in sorted(torch.randperm(hd, generator=generator)[:a])
        ]
        hidden = mlp.fc1.out_features
        m = 0 if i == 2 else int(torch.randint(1, hidden, (1,), generator=generator))
        kept.append(
            {
                "attn": sorted(dims),
                "mlp": sorted(int(j) for j in torch.randperm(hidden, generator=generator)[:m]),
            }
        )
    return kept


def test_sliced_model_equals_the_masked_one():
    model = petl_model("convpass")
    install_gates(model)
    kept = _kept(model, torch.Generator().manual_seed(0))
    masked, sliced = copy.deepcopy(model), copy.deepcopy(model)
    apply_masks(masked, kept)
    slice_model(sliced, kept)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(sliced(x), masked(x), atol=1e-5)
        assert not torch.allclose(sliced(x), model(x), atol=1e-3)
    assert backbone_block_params(sliced) < backbone_block_params(model)
    assert sliced.blocks[1].block.attn.qkv.out_features == 0  # skipped: only proj's bias is left
    assert sliced.blocks[2].block.mlp.fc1.out_features == 0


def test_gated_model_without_masks_equals_the_timm_one():
    model = petl_model("convpass")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        install_gates(model)
        assert torch.allclose(model(x), before, atol=1e-5)


def test_soft_masks_anneal_to_hard_and_follow_the_scores():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3])
    hard = soft_mask(scores, 2, 0.0)
    assert hard.tolist() == [0.0, 1.0, 1.0, 0.0]
    soft = soft_mask(scores, 2, 0.5)
    assert ((soft > 0) & (soft < 1)).all()
    assert (soft[hard == 1] >= 0.5).all() and (soft[hard == 0] < 0.5).all()
    assert soft_mask(scores, 4, 0.5).eq(1).all()
    revived = soft_mask(torch.tensor([0.1, 0.9, 0.2, 0.8]), 2, 0.0)  # scores changed
    assert revived[3] == 1.0 and revived[2] == 0.0  # a pruned gate comes back


def test_soft_mask_is_0_9_at_tau_times_size_inside_the_threshold():
    """P3B's sigmoid factor log(9): at temperature x size ranks inside the centre the mask
    is 0.9, as far outside 0.1 (10 gates, keep 5, tau 0.2; `between`: the centre is at rank 4.5)."""
    ranked = torch.arange(10.0, 0.0, -1.0)  # ranks 0..9 in order
    mask = soft_mask(ranked, 5, 0.2, "between")
    assert mask[2].item() == pytest.approx(1 / (1 + math.exp(-math.log(9) * 2.5 / 2)))
    assert soft_mask(ranked, 5, 0.25, "between")[2].item() == pytest.approx(0.9)
    assert soft_mask(ranked, 5, 0.25, "between")[7].item() == pytest.approx(0.1)


def test_p3bs_mask_is_one_half_at_the_last_kept_gate():
    """P3B (loss/prune_loss.py `_get_new_mask`): sigmoid centred on the threshold index, whose
    gate its hard mask (m >= 0.5) keeps: the last kept gate (rank keep - 1) is at exactly 0.5,
    0.9 at tau x size ranks better, 0.1 as far worse; the default centre."""
    ranked = torch.arange(10.0, 0.0, -1.0)
    mask = soft_mask(ranked, 5, 0.2)
    assert mask[4].item() == 0.5
    assert mask[2].item() == pytest.approx(0.9) and mask[6].item() == pytest.approx(0.1)
    assert BlockBenefit().mask_centre == "last_kept"


def test_branch_costs_add_up_to_the_block_parameters():
    model = petl_model("convpass")
    install_gates(model)
    total = sum(br.params() for br in branches(model))
    assert total == backbone_block_params(model)


def test_settings_are_the_schedule():
    pruner = BlockBenefit()
    assert (pruner.prune_start, pruner.sparse_at, pruner.harden_at) == (0.1, 0.4, 0.5)
    assert make_pruner("block_benefit", {"epochs": 3}).epochs == 3


def test_the_gate_phase_is_the_first_half_of_the_training_budget(tmp_path):
    """BASELINES.md's schedule in fractions of the budget: 100 epochs -> prune from 10, fully
    sparse at 40, hard at 50; the pruner declares its 50 epochs so the harness trains 50 more."""
    pruner = BlockBenefit()
    schedule = pruner.schedule(Recipe(epochs=100, batch_size=64), images=1000)
    assert (schedule.epochs, schedule.steps_per_epoch) == (50, 15)
    assert (schedule.start, schedule.sparse, schedule.total) == (150, 600, 750)  # epochs 10, 40, 50
    ctx = _context(tmp_path)
    ctx.recipe = Recipe(epochs=4, batch_size=32)
    result = make_pruner("block_benefit", {"update_every": 2}).prune(ctx)
    assert result.epochs_trained == 2.0 and result.metrics["gate_epochs"] == 2.0
    with pytest.raises(UserError, match="does not fit the training budget"):
        make_pruner("block_benefit", {"epochs": 5}).prune(_context(tmp_path, recipe=ctx.recipe))


def test_mask_updates_start_at_the_pruning_start_and_ramp_each_branch():
    """P3B's update steps (every k steps from the start, and the last one), its linear ramp
    to full sparsity and its sharpening from full sparsity to the end."""
    schedule = Schedule(epochs=2, steps_per_epoch=5, start=2, sparse=6)
    assert [s for s in range(10) if schedule.updates_at(s, 3)] == [4, 7, 9]
    assert [schedule.ramp(s) for s in (0, 1, 2, 4, 5, 9)] == [0.0, 0.0, 0.25, 0.75, 1.0, 1.0]
    assert [schedule.sharpness(s) for s in (4, 5, 7, 9)] == [0.0, 0.0, 0.5, 1.0]


def test_p3b_updates_masks_before_the_step_then_once_more_at_the_end():
    """P3B's engine.py: `prune_forward(step)` before the forward of steps start + k*every - 1,
    the finalize after the last epoch (not at the last step); sharpening (step - sparse) /
    (total - sparse)."""
    schedule = Schedule(epochs=2, steps_per_epoch=5, start=2, sparse=6, mask_update="before_step")
    assert [s for s in range(10) if schedule.updates_at(s, 3)] == [4, 7]
    assert [schedule.sharpness(s) for s in (5, 6, 8, 10)] == [0.0, 0.0, 0.5, 1.0]
    assert BlockBenefit().mask_update == "before_step"


def _recorded_steps(tmp_path, monkeypatch, options, recipe):
    """Prune with `options`; per training step, the optimiser's learning rates (main, auxiliary)
    and every branch's mask as that step's forward saw them."""
    steps = []
    train_step = BlockBenefit.train_step

    def recording(self, model, aux, optimizer, brs, x, y, dtype="float32"):
        lrs = [group["lr"] for group in optimizer.param_groups]
        steps.append((lrs, [br.mask.clone() for br in brs]))
        return train_step(self, model, aux, optimizer, brs, x, y, dtype)

    monkeypatch.setattr(BlockBenefit, "train_step", recording)
    make_pruner("block_benefit", {**FAST, **options}).prune(_context(tmp_path, recipe=recipe))
    return steps


WARM_COSINE = Recipe(epochs=4, warmup_epochs=1, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5,
                     batch_size=32, lr_step="before_epoch")  # fmt: skip


def test_the_gate_phase_trains_at_a_constant_rate_and_the_heads_at_their_own(tmp_path, monkeypatch):
    """P3B's main.py builds no scheduler when it prunes, and its auxiliary heads train at
    --lr-soft-head 5e-4: every step of the gate phase at (1e-3, 5e-4), although the recipe
    warms up from 1e-6; `gate_lr=recipe` follows the recipe's warm-up and cosine instead."""
    steps = _recorded_steps(tmp_path, monkeypatch, {}, WARM_COSINE)
    assert [lrs for lrs, _ in steps] == [[1e-3, 5e-4]] * 6  # 2 epochs of 3 steps
    steps = _recorded_steps(tmp_path, monkeypatch, {"gate_lr": "recipe"}, WARM_COSINE)
    cosine = [1e-5 + 0.5 * (base - 1e-5) * (1 + math.cos(math.pi / 4)) for base in (1e-3, 5e-4)]
    lrs = [lrs for lrs, _ in steps]  # epoch 0 warms up, epoch 1 is t=1 of a 4-epoch cosine
    assert lrs[:3] == [[1e-6, 1e-6]] * 3
    assert all(step == pytest.approx(cosine, rel=1e-12) for step in lrs[3:])
    steps = _recorded_steps(tmp_path, monkeypatch, {"aux_lr": None}, WARM_COSINE)
    assert [lrs for lrs, _ in steps] == [[1e-3, 1e-3]] * 6


@pytest.mark.parametrize("update", ["before_step", "after_step"])
def test_a_mask_update_applies_from_its_own_step_in_p3bs_order(tmp_path, monkeypatch, update):
    """2 epochs of 3 steps, pruning from step 1, updates every 2 steps: the first update is at
    step 2. Before the step (P3B), step 2's forward already sees the new, soft masks, with the
    last kept gate of a shrinking branch at 0.5; after the step, only step 3's does."""
    steps = _recorded_steps(tmp_path, monkeypatch, {"mask_update": update}, Recipe(epochs=4,
                            batch_size=32))  # fmt: skip
    first_new = 2 if update == "before_step" else 3
    for step, (_, masks) in enumerate(steps):
        changed = any(not mask.eq(1).all() for mask in masks)
        assert changed == (step >= first_new), step
    shrinking = [m for m in steps[first_new][1] if not m.eq(1).all()]
    assert all((m == 0.5).sum() == 1 for m in shrinking)  # P3B's centre: the last kept gate


def test_one_probe_head_scores_a_branchs_input_and_output():
    """P3B's 2N heads: branch j's benefit compares the same classifier on its input and output,
    so a branch that leaves the stream unchanged has a drop of exactly 0."""
    torch.manual_seed(0)
    heads = AuxHeads(branches=2, dim=8, classes=3, prefix=1)
    x, y = torch.randn(4, 5, 8), torch.tensor([0, 1, 2, 0])
    points = [x, x.clone(), torch.randn(4, 5, 8)]  # branch 0 is the identity, branch 1 is not
    losses = heads.losses(points, y)
    assert losses.shape == (2, 2, 2)  # in/out, CLS/patch, branches
    drops = losses[0] - losses[1]
    assert drops[:, 0].tolist() == [0.0, 0.0]
    assert (drops[:, 1] != 0).all()
    expected = F.cross_entropy(heads.cls[1](points[1][:, 0]), y)
    assert losses[0, 0, 1].item() == pytest.approx(expected.item())


def test_benefits_follow_p3bs_transform_order():
    """Scale to the peak, soft clip, divide by the remaining parameters, normalise, then the EMA
    per token type, then the CLS/patch mix (P3B loss/prune_loss.py)."""

    def softplus(v):
        return math.log1p(math.exp(v))

    def by_hand(drops, remaining):
        scaled = [d * 10 / max(drops) for d in drops]
        clipped = [softplus(1.4 * v) - softplus(1.4 * v - 10) for v in scaled]
        per_param = [c / r for c, r in zip(clipped, remaining, strict=True)]
        return [v / (sum(per_param) / len(per_param)) for v in per_param]

    remaining = torch.tensor([1.0, 2.0, 1.0])
    got = transform_benefits(torch.tensor([2.0, 1.0, -1.0]), remaining, 10.0)
    assert got.tolist() == pytest.approx(by_hand([2.0, 1.0, -1.0], [1.0, 2.0, 1.0]), rel=1e-5)
    benefits = Benefits(torch.zeros(2, 3))
    for drops in ([[2.0, 1.0, -1.0], [1.0, 1.0, 1.0]], [[4.0, 2.0, -2.0], [1.0, 1.0, 1.0]]):
        benefits.add(torch.tensor(drops))  # one step each window: the mean is the step
        mixed = benefits.update(remaining, 10.0, ema=0.2, alpha=0.5)
    cls = by_hand([2.0, 1.0, -1.0], [1.0, 2.0, 1.0])  # the same after scaling to the peak
    patch = by_hand([1.0, 1.0, 1.0], [1.0, 2.0, 1.0])
    assert mixed.tolist() == pytest.approx(
        [0.5 * c + 0.5 * p for c, p in zip(cls, patch, strict=True)], rel=1e-5
    )
    assert benefits.steps == 0 and not benefits.drops.any()  # the window was reset


def test_the_shared_head_dim_gate_keeps_the_same_dims_in_every_head(tmp_path):
    result = make_pruner("block_benefit", FAST).prune(_context(tmp_path, "params:0.3"))
    for block, kept in zip(result.model.blocks, result.state["blocks"], strict=True):
        head_dim = 16  # the tiny ViT: width 32, 2 heads
        heads = [sorted(c % head_dim for c in kept["attn"] if c // head_dim == h) for h in (0, 1)]
        assert heads[0] == heads[1]
        assert block.block.attn.head_dim == len(heads[0])
