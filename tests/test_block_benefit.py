"""Block benefit (PETL P3B): keep ratios meet the budget, the sliced model equals the masked one,
branches can be skipped, masks are soft then hard and follow the scores."""

import copy

import pytest
import torch

from baselines.block_benefit import (
    BlockBenefit,
    allocate,
    apply_masks,
    branches,
    install_gates,
    slice_model,
    soft_mask,
)
from bench.budget import backbone_block_params
from bench.errors import UserError
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.test_pruner_contract import _loader, _petl_model

FAST = {"epochs": 2, "batch_size": 32, "update_every": 2}


def _context(tmp_path, budget="keep:2", petl="convpass"):
    return PruneContext(_petl_model(petl), _loader(), get_task("digits"),
                        Budget.parse(budget), 0, torch.device("cpu"), tmp_path)  # fmt: skip


@pytest.mark.parametrize(("budget", "target"), [("keep:2", 0.5), ("params:0.3", 0.3)])
def test_keep_ratios_meet_the_budget(tmp_path, budget, target):
    unpruned = backbone_block_params(_petl_model("convpass"))
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
    model = _petl_model("convpass")
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
    model = _petl_model("convpass")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        install_gates(model)
        assert torch.allclose(model(x), before, atol=1e-5)


def test_soft_masks_anneal_to_hard_and_follow_the_scores():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3]])
    hard = soft_mask(scores, 2, 0.0)
    assert hard.tolist() == [[0.0, 1.0, 1.0, 0.0]]
    soft = soft_mask(scores, 2, 0.5)
    assert ((soft > 0) & (soft < 1)).all() and (soft[hard == 1] > 0.5).all()
    assert soft_mask(scores, 4, 0.5).eq(1).all()
    revived = soft_mask(torch.tensor([[0.1, 0.9, 0.2, 0.8]]), 2, 0.0)  # scores changed
    assert revived[0, 3] == 1.0 and revived[0, 2] == 0.0  # a pruned gate comes back


def test_branch_costs_add_up_to_the_block_parameters():
    model = _petl_model("convpass")
    install_gates(model)
    total = sum(br.params() for br in branches(model))
    assert total == backbone_block_params(model)


def test_settings_are_the_schedule():
    pruner = BlockBenefit()
    assert 0 < pruner.prune_start < pruner.sparse_at <= 1
    assert make_pruner("block_benefit", {"epochs": 3}).epochs == 3
