import pytest
import torch

from bench.models.petl import LoRAQKV, attach_petl, resolve_settings, task_parameter_names
from tests.conftest import tiny_vit

METHODS = ["convpass", "adapter", "lora", "repadapter", "splora"]


@pytest.mark.parametrize("method", METHODS[:3])
def test_petl_starts_as_identity(method):
    model = tiny_vit().eval()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    attach_petl(model, resolve_settings(method, "digits")).eval()
    assert torch.allclose(model(x), before, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_only_petl_and_head_train_and_backbone_stays_frozen(method):
    model = attach_petl(tiny_vit(), resolve_settings(method, "digits"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(task_parameter_names(model))
    assert {"head.weight", "head.bias"} <= trainable
    assert not any(
        n.startswith(("patch_embed", "pos_embed", "cls_token", "norm.")) for n in trainable
    )
    assert not any(".block.attn.qkv.weight" in n or n.endswith("qkv.qkv.weight") for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    loss = model(torch.randn(4, 3, 16, 16)).logsumexp(-1).mean()
    loss.backward()
    optimizer.step()
    for name, value in model.named_parameters():
        if name in frozen:
            assert torch.equal(value, frozen[name]), name


def test_convpass_uses_per_task_scale_and_init():
    svhn = resolve_settings("convpass", "svhn")
    assert (svhn.scale, svhn.xavier_init, svhn.dim) == (100.0, True, 8)
    cifar = resolve_settings("convpass", "cifar")
    assert (cifar.scale, cifar.xavier_init) == (0.1, False)
    assert resolve_settings("convpass", "cifar", scale=3.0).scale == 3.0


def test_convpass_conv_starts_as_identity_at_the_centre_tap():
    model = attach_petl(tiny_vit(), resolve_settings("convpass", "cifar"))
    conv = model.blocks[0].attn_branch.conv.weight
    assert torch.equal(conv[:, :, 1, 1], torch.eye(8))
    assert conv.abs().sum() == 8


def test_lora_merged_equals_unmerged():
    model = attach_petl(tiny_vit(), resolve_settings("lora", "digits")).eval()
    lora = model.blocks[0].attn.qkv
    assert isinstance(lora, LoRAQKV)
    with torch.no_grad():
        lora.q_up.weight.normal_()
        lora.v_up.weight.normal_()
    x = torch.randn(2, 17, 32)
    assert torch.allclose(lora.merged()(x), lora(x), atol=1e-5)


def test_merged_copy_folds_lora_and_keeps_outputs():
    from bench.models.petl import merged_copy

    model = attach_petl(tiny_vit(), resolve_settings("lora", "digits")).eval()
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.q_up.weight.normal_()
    merged = merged_copy(model).eval()
    assert not any(isinstance(m, LoRAQKV) for m in merged.modules())
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(merged(x), model(x), atol=1e-4)
    assert merged_copy(attach_petl(tiny_vit(), resolve_settings("adapter", "digits"))) is None


def test_splora_adapts_every_block_linear_and_starts_next_to_the_backbone():
    """SPLoRA (the library's init: adapter columns within ±1e-4) on qkv, proj, fc1 and fc2 of
    every block, rank petl.dim; its biases and adapters train, its weights stay the backbone's."""
    from bench.models.splora import SPLoRAProjection

    model = tiny_vit().eval()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    attach_petl(model, resolve_settings("splora", "digits", dim=4)).eval()
    assert torch.allclose(model(x), before, atol=1e-3)
    adapted = {n for n, m in model.named_modules() if isinstance(m, SPLoRAProjection)}
    assert adapted == {f"blocks.{i}.{p}" for i in range(4)
                       for p in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")}  # fmt: skip
    assert model.blocks[0].mlp.fc1.adapter.rows.shape == (1, 4, 32)
    names = set(task_parameter_names(model))
    assert {"blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc1.adapter.cols"} <= names
    assert "blocks.0.mlp.fc1.weight" not in names
