"""Width pruning specifics: the frozen-backbone trap, re-freezing, and attention sizes."""

import pytest
import torch

import baselines.width as width
from bench.models.petl import attach_petl, is_task_parameter, resolve_settings
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import tiny_vit
from tests.test_pruner_contract import _loader


def _context(tmp_path, budget="keep:2"):
    model = attach_petl(tiny_vit(), resolve_settings("convpass", "digits"))
    return PruneContext(model.eval(), _loader(), get_task("digits"), Budget.parse(budget), 0,
                        torch.device("cpu"), tmp_path)  # fmt: skip


def test_a_frozen_backbone_is_pruned_and_frozen_again(tmp_path):
    result = make_pruner("magnitude").prune(_context(tmp_path))
    model = result.model
    for name, param in model.named_parameters():
        assert param.requires_grad == is_task_parameter(model, name), name
    attn = model.blocks[0].block.attn
    assert attn.head_dim * attn.num_heads == attn.proj.in_features < 32
    assert attn.scale == pytest.approx(attn.head_dim**-0.5)


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
