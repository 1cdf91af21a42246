"""Width pruning specifics: the frozen-backbone trap, re-freezing, and attention sizes."""

import copy

import pytest
import torch

import baselines.width as width
from bench.models.gradients import hessian_gradients, taylor_gradients
from bench.models.petl import attach_petl, is_task_parameter, resolve_settings
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import calibration_loader, tiny_vit


def _context(tmp_path, budget="keep:2"):
    model = attach_petl(tiny_vit(), resolve_settings("convpass", "digits"))
    return PruneContext(model.eval(), calibration_loader(), get_task("digits"),
                        Budget.parse(budget), 0, torch.device("cpu"), tmp_path)  # fmt: skip


def test_a_frozen_backbone_is_pruned_and_frozen_again(tmp_path):
    result = make_pruner("magnitude").prune(_context(tmp_path))
    model = result.model
    for name, param in model.named_parameters():
        assert param.requires_grad == is_task_parameter(model, name), name
    attn = model.blocks[0].block.attn
    assert attn.head_dim * attn.num_heads == attn.proj.in_features < 32


def test_a_pruning_step_that_removes_nothing_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.setattr(width, "prune_width", lambda *args, **kwargs: [{} for _ in range(4)])
    with pytest.raises(RuntimeError, match="removed no parameters"):
        make_pruner("magnitude").prune(_context(tmp_path))


def test_channel_ratio_search_meets_a_params_budget(tmp_path):
    result = make_pruner("taylor", {"batches": 1, "batch_size": 16}).prune(
        _context(tmp_path, "params:0.3")
    )
    assert result.metrics["params_removed_fraction"] == pytest.approx(0.3, abs=0.02)
    assert result.metrics["bytes_pruned_backbone"] > result.metrics["bytes_indices"] > 0


def _widths(model):
    return [(b.block.attn.head_dim, b.block.mlp.fc1.out_features) for b in model.blocks]


def test_round_to_2_gives_even_widths_by_default(tmp_path):
    """The SLS script's round_to=2: every kept head dim count and MLP width is even (the tiny
    ViT's 16 head dims and 128 hidden units would otherwise give odd counts at this budget)."""
    assert make_pruner("magnitude").round_to == make_pruner("taylor").round_to == 2
    for budget in ("params:0.3", "params:0.45"):
        widths = _widths(make_pruner("magnitude").prune(_context(tmp_path, budget)).model)
        assert all(h % 2 == 0 and m % 2 == 0 for h, m in widths), widths
    unrounded = make_pruner("magnitude", {"round_to": None})
    odd = _widths(unrounded.prune(_context(tmp_path, "params:0.3")).model)
    assert any(h % 2 or m % 2 for h, m in odd), odd


def _zeroed_attention(attn, kept):
    """A copy of the unpruned attention with the q, k, v rows of the pruned head dims zeroed."""
    zeroed = copy.deepcopy(attn)
    gone = [c for c in range(attn.attn_dim) if c not in set(kept)]
    rows = [part * attn.attn_dim + c for part in range(3) for c in gone]
    with torch.no_grad():
        zeroed.qkv.weight[rows] = 0.0
        zeroed.qkv.bias[rows] = 0.0
    return zeroed


@pytest.mark.parametrize("keep_scale", [True, False])
def test_keep_scale_keeps_the_unpruned_softmax_scale(tmp_path, keep_scale):
    """With keep_scale (the default) attn.scale stays 16 ** -0.5 and the pruned attention equals
    the unpruned one with the pruned dims zeroed: the logits are the kept dims' share of the
    original ones. Without it the scale follows the pruned head dim and that no longer holds."""
    assert make_pruner("magnitude").keep_scale and make_pruner("depgraph_sls").keep_scale
    ctx = _context(tmp_path)
    unpruned = copy.deepcopy(ctx.model.blocks[0].block.attn)
    result = make_pruner("magnitude", {"keep_scale": keep_scale}).prune(ctx)
    attn = result.model.blocks[0].block.attn
    x = torch.randn(2, 17, 32) * 20  # logits large enough for the scale to matter
    with torch.no_grad():
        expected = _zeroed_attention(unpruned, result.state["blocks"][0]["attn"])(x)
        if keep_scale:
            assert attn.scale == 16**-0.5
            assert torch.allclose(attn(x), expected, atol=1e-5)
        else:
            assert attn.scale == pytest.approx(attn.head_dim**-0.5) != 16**-0.5
            assert not torch.allclose(attn(x), expected, atol=1e-3)


@pytest.mark.parametrize("importance", ["l1", "l2", "taylor", "hessian", "random"])
def test_the_sls_scripts_importances_meet_the_budget(tmp_path, importance):
    options = {"importance": importance, "batches": 1, "batch_size": 8}
    result = make_pruner("magnitude", options).prune(_context(tmp_path, "params:0.3"))
    assert result.metrics["params_removed_fraction"] == pytest.approx(0.3, abs=0.02)


def test_hessian_reads_the_mean_squared_per_sample_gradient():
    """OBD's diagonal estimate: (g1^2 + g2^2) / 2 of the two samples' gradients, not the square
    of their mean."""
    model = attach_petl(tiny_vit(), resolve_settings("convpass", "digits")).eval()
    images, labels = next(iter(calibration_loader()))
    images, labels = images[:2], labels[:2]
    hessian = hessian_gradients(model, images, labels)
    one, two = (taylor_gradients(model, images[i : i + 1], labels[i : i + 1], 1)
                for i in (0, 1))  # fmt: skip
    name = "blocks.1.block.mlp.fc1.weight"
    assert torch.allclose(hessian[name], (one[name] ** 2 + two[name] ** 2) / 2)
    assert not torch.allclose(hessian[name], ((one[name] + two[name]) / 2) ** 2)


def test_global_pruning_ranks_channels_across_layers(tmp_path):
    uniform = _widths(make_pruner("magnitude").prune(_context(tmp_path, "params:0.3")).model)
    assert len(set(uniform)) == 1
    result = make_pruner("magnitude", {"global_pruning": True}).prune(
        _context(tmp_path, "params:0.3")
    )
    assert len(set(_widths(result.model))) > 1
    assert result.metrics["params_removed_fraction"] == pytest.approx(0.3, abs=0.02)


def test_depgraph_sls_is_the_sls_scripts_committed_defaults(tmp_path):
    """Uniform, Taylor, channel ratio 0.3333 with round_to=2, not retrained; the softmax scale by
    the width pruners' one rule (unpruned by default, the pruned head's with keep_scale=false).
    torch-pruning keeps int(16 x 0.6667) = 10 of the tiny ViT's 16 head dims
    (26 of 32 channels: even) and int(128 x 0.6667) = 85 -> 84 (round_to=2) of 128 hidden
    units: a third of the prunable channels, as rounded."""
    pruner = make_pruner("depgraph_sls", {"batches": 2, "batch_size": 16})
    assert (pruner.fixed_budget, pruner.importance, pruner.global_pruning) == ("auto", "taylor",
                                                                              False)  # fmt: skip
    ctx = _context(tmp_path)
    ctx.budget = Budget.parse("auto")
    result = pruner.prune(ctx)
    assert result.retrain is False and result.epochs_trained == 0
    assert _widths(result.model) == [(10, 84)] * 4
    assert result.model.blocks[0].block.attn.scale == 16**-0.5
    ctx = _context(tmp_path)
    ctx.budget = Budget.parse("auto")
    pruned_head = make_pruner("depgraph_sls", {"batches": 2, "batch_size": 16, "keep_scale": False})
    assert pruned_head.prune(ctx).model.blocks[0].block.attn.scale == pytest.approx(10**-0.5)
