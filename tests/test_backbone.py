import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from bench.errors import UserError
from bench.models.backbone import create_backbone, weights_sha256
from tests.conftest import TINY_VIT, tiny_vit


def _create(checkpoint=None, **kwargs):
    return create_backbone("vit_tiny_patch16_224", 5, 16, 0.0, str(checkpoint) if checkpoint else None,
                           kwargs={**TINY_VIT, **kwargs})  # fmt: skip


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_loads_backbone_and_keeps_a_fresh_head(tmp_path, suffix):
    source = tiny_vit(num_classes=1000, seed=1)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if suffix == ".pth":
        torch.save({"state_dict": state}, path)
    else:
        save_file(state, str(path))
    model = _create(path)
    assert torch.equal(model.blocks[2].mlp.fc1.weight, source.blocks[2].mlp.fc1.weight)
    assert model.head.weight.shape == (5, 32)
    assert len(weights_sha256(path)) == 64


def _original_vit_npz(model, path):
    """`model`'s weights in the layout of the original ViT-B_16.npz (google-research/
    vision_transformer, Flax): kernels as (in, out), attention per head, names as that file has
    them, pre-logits included (the ImageNet-21k checkpoints carry one)."""

    def t(tensor):
        return tensor.detach().numpy()

    d, heads = model.embed_dim, model.blocks[0].attn.num_heads
    w = {
        "embedding/kernel": t(model.patch_embed.proj.weight.permute(2, 3, 1, 0)),  # HWIO
        "embedding/bias": t(model.patch_embed.proj.bias),
        "cls": t(model.cls_token),
        "Transformer/posembed_input/pos_embedding": t(model.pos_embed),
        "Transformer/encoder_norm/scale": t(model.norm.weight),
        "Transformer/encoder_norm/bias": t(model.norm.bias),
        "pre_logits/kernel": np.zeros((d, d), np.float32),
        "pre_logits/bias": np.zeros(d, np.float32),
        "head/kernel": t(model.head.weight.T),
        "head/bias": t(model.head.bias),
    }
    for i, block in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        qkv_w, qkv_b = block.attn.qkv.weight.chunk(3), block.attn.qkv.bias.chunk(3)
        for name, weight, bias in zip(("query", "key", "value"), qkv_w, qkv_b, strict=True):
            w[f"{p}MultiHeadDotProductAttention_1/{name}/kernel"] = t(
                weight.T.reshape(d, heads, -1)
            )
            w[f"{p}MultiHeadDotProductAttention_1/{name}/bias"] = t(bias.reshape(heads, -1))
        w[f"{p}MultiHeadDotProductAttention_1/out/kernel"] = t(
            block.attn.proj.weight.T.reshape(heads, -1, d)
        )
        w[f"{p}MultiHeadDotProductAttention_1/out/bias"] = t(block.attn.proj.bias)
        for norm, index in ((block.norm1, 0), (block.norm2, 2)):
            w[f"{p}LayerNorm_{index}/scale"], w[f"{p}LayerNorm_{index}/bias"] = (
                t(norm.weight),
                t(norm.bias),
            )
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            w[f"{p}MlpBlock_3/Dense_{r}/kernel"] = t(fc.weight.T)
            w[f"{p}MlpBlock_3/Dense_{r}/bias"] = t(fc.bias)
    np.savez(path, **w)


def test_an_original_vit_npz_loads_to_identical_weights_and_a_fresh_head(tmp_path):
    """The paper path (CHECKPOINT=ViT-B_16.npz): through timm's npz loader, every backbone
    tensor comes back exactly; the checkpoint's 1000-class head does not replace the task's."""
    source = tiny_vit(num_classes=1000, seed=1)
    _original_vit_npz(source, tmp_path / "ViT-tiny.npz")
    model = _create(tmp_path / "ViT-tiny.npz")
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("head.")}
    loaded = model.state_dict()
    assert set(loaded) - set(expected) == {"head.weight", "head.bias"}
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name
    assert model.head.weight.shape == (5, 32)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x), source.forward_features(x), atol=1e-6)


def test_missing_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        _create(tmp_path / "nope.pth")


def test_checkpoint_of_another_model_does_not_fit(tmp_path):
    other = create_backbone("vit_tiny_patch16_224", 10, 16, kwargs={**TINY_VIT, "embed_dim": 48})
    torch.save(other.state_dict(), tmp_path / "other.pth")
    with pytest.raises(UserError, match="does not fit the model"):
        _create(tmp_path / "other.pth")


@pytest.mark.parametrize("name", ["corrupt.pth", "corrupt.safetensors", "corrupt.npz"])
def test_corrupt_checkpoint_is_a_user_error(tmp_path, name):
    (tmp_path / name).write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        _create(tmp_path / name)


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(UserError, match="Unknown model"):
        create_backbone("vit_nonexistent_model", 10, 16)
