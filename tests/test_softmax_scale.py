"""One softmax-scale rule for every width pruner: the same default (the unpruned scale), the
same setting to take the pruned head's, a tag naming it, and a stored state that rebuilds it."""

import copy

import pytest
import torch

from baselines.softmax_scale import KEEP_SCALE
from bench import record as R
from bench.config import Recipe
from bench.models.surgery import ScaledAttention, timm_block
from bench.pruning import PRUNERS, Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model

WIDTH_PRUNERS = {
    "magnitude": ("convpass", {}),
    "taylor": ("convpass", {"batches": 1, "batch_size": 16}),
    "depgraph_sls": ("convpass", {"batches": 1, "batch_size": 16}),
    "block_benefit": ("convpass", {"epochs": 2, "batch_size": 32, "update_every": 2}),
    "spa": ("splora", {"batches": 1, "batch_size": 16}),
}
UNPRUNED_SCALE = 16**-0.5  # the tiny ViT: width 32, 2 heads


def _prune(tmp_path, name, **settings):
    petl, options = WIDTH_PRUNERS[name]
    model = petl_model(petl)
    ctx = PruneContext(copy.deepcopy(model), calibration_loader(), get_task("digits"),
                       Budget.parse("keep:2"), 0, torch.device("cpu"), tmp_path,
                       Recipe(epochs=4, batch_size=32))  # fmt: skip
    return model, make_pruner(name, {**options, **settings}).prune(ctx)


def _attentions(model):
    return [timm_block(b).attn for b in model.blocks if timm_block(b).attn.attn_dim > 0]


def test_every_width_pruner_has_the_same_default():
    assert KEEP_SCALE is True
    assert {name: make_pruner(name).keep_scale for name in WIDTH_PRUNERS} == {
        name: KEEP_SCALE for name in WIDTH_PRUNERS
    }


@pytest.mark.parametrize("name", sorted(WIDTH_PRUNERS))
@pytest.mark.parametrize("keep_scale", [True, False])
def test_the_setting_decides_the_scale_the_tag_and_the_rebuilt_model(tmp_path, name, keep_scale):
    unpruned, result = _prune(tmp_path, name, keep_scale=keep_scale)
    attentions = _attentions(result.model)
    assert attentions and all(a.head_dim < 16 for a in attentions)  # head dims were cut
    for attn in attentions:
        expected = UNPRUNED_SCALE if keep_scale else attn.head_dim**-0.5
        assert attn.scale == pytest.approx(expected)
        # timm's fused path would use head_dim' ** -0.5 whatever `scale` says
        assert isinstance(attn, ScaledAttention) or not keep_scale
    label = R.SCALE_UNPRUNED if keep_scale else R.SCALE_PRUNED_HEAD
    assert result.tags[R.SOFTMAX_SCALE] == label
    rebuilt = PRUNERS.get(name).restore(copy.deepcopy(unpruned), result.state)
    assert [a.scale for a in _attentions(rebuilt)] == [a.scale for a in attentions]
