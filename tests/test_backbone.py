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
