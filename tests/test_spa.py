"""Structured Pruning Adapters on a SPLoRA transfer (PETL=splora): masks from the trained adapted
weight (so they follow the task), the sliced model merged for deployment, the stored state read
through the library, the budget on frozen backbone parameters, and other PETL bases refused."""

import pytest
import torch
import torch.nn.functional as F
from sp_adapters import SPLoRALinear
from sp_adapters import splora as splora_lib

from baselines.spa import adapted_weight_gradients, channel_scores, magnitude
from bench.budget import backbone_block_params
from bench.errors import UserError
from bench.models.petl import is_task_parameter, merged_copy
from bench.models.splora import SPLoRAProjection
from bench.pruning import Budget, PruneContext, make_pruner
from bench.state import task_tensors
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model, tiny_vit

FAST = {"batches": 2, "batch_size": 16}


def _context(tmp_path, budget="keep:2", petl="splora", model=None):
    model = petl_model(petl) if model is None else model
    return PruneContext(model, calibration_loader(), get_task("digits"), Budget.parse(budget), 0,
                        torch.device("cpu"), tmp_path)  # fmt: skip


def _train_adapters(model):
    """Non-zero adapter updates, as after retraining."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SPLoRAProjection):
                m.adapter.cols.add_(torch.randn(m.adapter.cols.shape, generator=generator) * 0.1)


def _transfer(shift: int) -> torch.nn.Module:
    """A SPLoRA transfer of the same backbone and init, trained on the loader's images with the
    labels shifted by `shift` classes (two different tasks on the same images)."""
    model = petl_model("splora")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    model.train()
    for _ in range(4):
        for x, y in calibration_loader():
            loss = F.cross_entropy(model(x), (y + shift) % 10)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_masks_follow_the_trained_adapters_of_each_task(tmp_path, importance):
    """Two transfers on different labels give different masks: the masks come from the trained
    adapted weights, not from the pretrained weight alone (identical for every task)."""
    pruner = make_pruner("spa", {"importance": importance, **FAST})
    a = pruner.prune(_context(tmp_path / "a", model=_transfer(0))).state["blocks"]
    b = pruner.prune(_context(tmp_path / "b", model=_transfer(3))).state["blocks"]
    assert [len(k["attn"]) for k in a] == [len(k["attn"]) for k in b]  # same budget
    assert a != b


def test_magnitude_ranks_channels_of_the_adapted_weight():
    model = petl_model("splora")
    fc1 = model.blocks[0].mlp.fc1
    with torch.no_grad():  # make neuron 5 dominant through the adapter alone
        fc1.adapter.rows.fill_(1.0)
        fc1.adapter.cols.zero_()
        fc1.adapter.cols[0, 5, :] = 100.0
    scores = channel_scores(model, magnitude)[0]["mlp"]
    assert int(scores.argmax()) == 5
    expected = fc1.adapted_weight.pow(2).sum(1) + model.blocks[0].mlp.fc2.adapted_weight.pow(2).sum(
        0
    )
    assert torch.allclose(scores, expected.detach())


def test_taylor_reads_the_gradient_of_the_adapted_weight():
    """dL/dW' (W' = W + cols @ rows) from inputs and output gradients: by the chain rule,
    dL/dcols = dL/dW' @ rows^T, which autograd gives for the trainable cols."""
    model = petl_model("splora")
    _train_adapters(model)
    images, labels = next(iter(calibration_loader()))
    grads = adapted_weight_gradients(model, images, labels, 16)
    model.eval()
    for x, y in zip(images.split(16), labels.split(16), strict=True):
        F.cross_entropy(model(x), y).backward()
    for layer, grad in grads.items():
        expected = layer.adapter.cols.grad.squeeze(0)
        assert torch.allclose(grad @ layer.adapter.rows.squeeze(0).T, expected, atol=1e-6)


@pytest.mark.parametrize("petl", ["convpass", "adapter", "lora"])
def test_other_petl_bases_are_refused_with_a_pointer_to_splora(tmp_path, petl):
    with pytest.raises(UserError, match="spa needs PETL=splora"):
        make_pruner("spa").prune(_context(tmp_path, petl=petl))


@pytest.mark.parametrize("importance", ["magnitude", "taylor"])
def test_merged_model_equals_the_unmerged_one(tmp_path, importance):
    result = make_pruner("spa", {"importance": importance, **FAST}).prune(
        _context(tmp_path, "params:0.4")
    )
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
    assert adapted == {f"blocks.{i}.{p}" for i in range(4)
                       for p in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}  # fmt: skip
    for name, param in model.named_parameters():
        assert param.requires_grad == is_task_parameter(model, name), name
        if name.endswith(("qkv.weight", "proj.weight", "fc1.weight", "fc2.weight")):
            assert not param.requires_grad
        if ".adapter." in name or name.endswith(("fc1.bias", "qkv.bias")):
            assert param.requires_grad
    attn = model.blocks[0].attn
    assert attn.head_dim * attn.num_heads == attn.proj.in_features < 32


def test_stored_tensors_are_the_librarys_masked_parameters(tmp_path):
    """What is stored equals sp_adapters' masked named_parameters of the transferred layer."""
    reference = petl_model("splora")
    result = make_pruner("spa").prune(_context(tmp_path))
    stored = task_tensors(result.model)
    kept = result.state["blocks"][1]["mlp"]
    mask = torch.zeros(128, dtype=torch.bool)
    mask[kept] = True
    layer = reference.blocks[1].mlp.fc1
    for name, value in splora_lib.named_parameters(layer, out_features_mask=mask):
        assert torch.equal(stored[f"blocks.1.mlp.fc1.{name}"], value.detach()), name


def test_budget_counts_frozen_backbone_block_parameters_only(tmp_path):
    """The SPLoRA biases are task parameters (trained in the transfer), never removed backbone:
    the unpruned count is the plain ViT's block parameters minus the adapted layers' biases."""
    plain = tiny_vit()
    biases = sum(
        block.get_submodule(path).bias.numel()
        for block in plain.blocks
        for path in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    )
    unpruned = backbone_block_params(petl_model("splora"))
    assert unpruned == sum(p.numel() for p in plain.blocks.parameters()) - biases
    result = make_pruner("spa").prune(_context(tmp_path))
    removed = 1 - backbone_block_params(result.model) / unpruned
    assert removed == pytest.approx(0.5, abs=0.02)
    assert result.metrics["params_removed_fraction"] == pytest.approx(removed)
