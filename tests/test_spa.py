"""Structured Pruning Adapters: SPLoRA only on qkv/proj/fc1/fc2, masks on the adapted weight,
the sliced model merged for deployment, and the stored state read through the library."""

import pytest
import torch
from sp_adapters import SPLoRALinear
from sp_adapters import splora as splora_lib

from baselines.spa import SPLoRAProjection, attach_splora, magnitude_scores
from bench.budget import backbone_block_params
from bench.errors import UserError
from bench.models.petl import is_task_parameter, merged_copy
from bench.pruning import Budget, PruneContext, make_pruner
from bench.state import task_tensors
from bench.tasks import get_task
from tests.test_pruner_contract import _loader, _petl_model


def _context(tmp_path, budget="keep:2", petl="convpass"):
    return PruneContext(_petl_model(petl), _loader(), get_task("digits"), Budget.parse(budget), 0,
                        torch.device("cpu"), tmp_path)  # fmt: skip


def _train_adapters(model):
    """Non-zero adapter updates, as after retraining."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SPLoRAProjection):
                m.adapter.cols.add_(torch.randn(m.adapter.cols.shape, generator=generator) * 0.1)


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_merged_model_equals_the_unmerged_one(tmp_path, importance):
    options = {"importance": importance, "batches": 2, "batch_size": 16}
    result = make_pruner("spa", options).prune(_context(tmp_path, "params:0.4"))
    model = result.model.eval()
    _train_adapters(model)
    merged = merged_copy(model).eval()
    assert not any(isinstance(m, SPLoRALinear) for m in merged.modules())
    assert sum(isinstance(m, SPLoRALinear) for m in model.modules()) == 4 * 4
    x = torch.randn(3, 3, 16, 16)
    with torch.inference_mode():
        out = model(x)  # the cached merged weights
        assert torch.allclose(merged(x), out, atol=1e-5)
    with torch.enable_grad():  # the library's (unmerged, low-rank) path
        assert torch.allclose(model(x), out, atol=1e-5)
    _train_adapters(model)  # changed tensors: the cache must not serve the old weights
    with torch.no_grad():
        assert not torch.allclose(model(x), out, atol=1e-5)
        assert torch.allclose(model(x), merged_copy(model).eval()(x), atol=1e-5)
    assert result.metrics["params_removed_fraction"] == pytest.approx(0.4, abs=0.02)


def test_only_block_linears_are_adapted_and_the_base_weight_stays_frozen(tmp_path):
    model = make_pruner("spa").prune(_context(tmp_path)).model
    assert type(model.head) is torch.nn.Linear
    adapted = {n for n, m in model.named_modules() if isinstance(m, SPLoRALinear)}
    assert adapted == {f"blocks.{i}.block.{p}" for i in range(4)
                       for p in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}  # fmt: skip
    for name, param in model.named_parameters():
        assert param.requires_grad == is_task_parameter(model, name), name
        if name.endswith(("qkv.weight", "proj.weight", "fc1.weight", "fc2.weight")):
            assert not param.requires_grad
        if ".adapter." in name or name.endswith(("fc1.bias", "qkv.bias")):
            assert param.requires_grad
    attn = model.blocks[0].block.attn
    assert attn.head_dim * attn.num_heads == attn.proj.in_features < 32


def test_stored_tensors_are_the_librarys_masked_parameters(tmp_path):
    """What is stored equals sp_adapters' masked named_parameters of the unpruned adapted model."""
    ctx = _context(tmp_path)
    reference = _petl_model("convpass")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        attach_splora(reference, rank=8)
    result = make_pruner("spa").prune(ctx)
    stored = task_tensors(result.model)
    kept = result.state["blocks"][1]["mlp"]
    mask = torch.zeros(128, dtype=torch.bool)
    mask[kept] = True
    layer = reference.blocks[1].block.mlp.fc1
    for name, value in splora_lib.named_parameters(layer, out_features_mask=mask):
        assert torch.equal(stored[f"blocks.1.block.mlp.fc1.{name}"], value.detach()), name


def test_magnitude_ranks_channels_of_the_adapted_weight():
    model = _petl_model("convpass")
    attach_splora(model, rank=2)
    fc1 = model.blocks[0].block.mlp.fc1
    with torch.no_grad():  # make neuron 5 dominant through the adapter alone
        fc1.adapter.rows.fill_(1.0)
        fc1.adapter.cols.zero_()
        fc1.adapter.cols[0, 5, :] = 100.0
    scores = magnitude_scores(model)[0]["mlp"]
    assert int(scores.argmax()) == 5


@pytest.mark.parametrize("petl", ["convpass", "adapter"])
def test_budget_counts_backbone_block_parameters(tmp_path, petl):
    unpruned = backbone_block_params(_petl_model(petl))
    model = make_pruner("spa").prune(_context(tmp_path, petl=petl)).model
    assert 1 - backbone_block_params(model) / unpruned == pytest.approx(0.5, abs=0.02)


def test_lora_is_refused_clearly(tmp_path):
    with pytest.raises(UserError, match="LoRA"):
        make_pruner("spa").prune(_context(tmp_path, petl="lora"))
