"""The demo backbone pretrained on generated fractals: the generator, the pretraining, the
committed weights and their hash check."""

import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from bench.config import load_config
from bench.errors import UserError
from bench.models import shipped
from bench.models.backbone import HEAD_PREFIX, weights_sha256
from bench.models.build import build_backbone, weights_id
from bench.models.shipped import SHIPPED, resolve_checkpoint
from bench.pretrain.fractals import class_images, fractal_dataset
from bench.pretrain.pretrain import PretrainConfig, demo_backbone, pretrain, save

DEMO = SHIPPED["demo-fractal"]


def test_fractals_are_deterministic_from_the_seed_and_independent_of_the_class_count():
    images, labels = fractal_dataset(seed=3, classes=3, per_class=5, points=300)
    again, _ = fractal_dataset(seed=3, classes=2, per_class=5, points=300)
    other, _ = fractal_dataset(seed=4, classes=3, per_class=5, points=300)
    assert images.shape == (15, 16, 16, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert np.array_equal(images[:10], again)
    assert not np.array_equal(images, other)
    assert 0 < images.mean() < 128 and images.max() > 200  # drawn, neither blank nor saturated


def test_classes_differ_more_than_images_of_one_class():
    """Each class is its own fractal: an image's foreground mask is nearer its own class's
    average mask than another class's."""
    masks = [(class_images(0, label, 40, points=800).max(-1) > 0).astype(float)
             for label in range(4)]  # fmt: skip
    # halves: the profile of one half of a class against the other half and other classes
    first = [m[:20].mean(0) for m in masks]
    second = [m[20:].mean(0) for m in masks]
    within = np.mean([np.abs(first[c] - second[c]).mean() for c in range(4)])
    between = np.mean([np.abs(first[c] - second[d]).mean()
                       for c in range(4) for d in range(4) if c != d])  # fmt: skip
    assert between > 1.5 * within


# the smallest of the configs tried whose loss falls by 30 % (12 s on 2 cores)
TINY = dict(classes=4, per_class=32, val_per_class=4, points=300, epochs=30, batch_size=8,
            lr=1e-3, warmup_epochs=1, label_smoothing=0.0)  # fmt: skip


def _tiny_config(**changes):
    return PretrainConfig(**{**TINY, **changes})


@pytest.mark.slow
def test_a_tiny_pretraining_lowers_its_loss_and_saves_the_backbone_with_its_record(tmp_path):
    model, result = pretrain(_tiny_config(), log=lambda _: None)
    assert len(result.losses) == TINY["epochs"]
    assert result.losses[0] > 0.9 * np.log(TINY["classes"])  # chance at the start
    assert result.losses[-1] < 0.7 * result.losses[0]
    out = tmp_path / "w.safetensors"
    record = save(model, result, _tiny_config(), out, ["python", "-m", "bench.pretrain"])
    assert record == json.loads(out.with_suffix(".json").read_text())
    assert record["sha256"] == weights_sha256(out)
    assert record["config"] == asdict(_tiny_config())
    assert record["command"] == "python -m bench.pretrain"
    assert set(record["versions"]) >= {"torch", "timm", "numpy"}
    tensors = load_file(str(out))
    assert not any(k.startswith(HEAD_PREFIX) for k in tensors)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith(HEAD_PREFIX)}
    assert tensors.keys() == expected.keys()
    assert all(torch.equal(tensors[k], expected[k]) for k in tensors)


def test_the_committed_weights_have_the_recorded_hash_and_record():
    assert weights_sha256(DEMO.path) == DEMO.sha256
    record = json.loads(DEMO.path.with_suffix(".json").read_text())
    assert record["sha256"] == DEMO.sha256
    assert record["file"] == DEMO.path.name
    assert record["config"] == asdict(PretrainConfig())  # the committed recipe is the default
    assert DEMO.path.stat().st_size < 8 * 2**20


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """The shipped weights looked for in an empty folder."""
    monkeypatch.setattr(shipped, "WEIGHTS_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def shipped_file(weights_dir, monkeypatch):
    """A backbone saved as `demo-fractal` (random weights of seed 1) with its hash recorded."""
    torch.manual_seed(1)
    path = weights_dir / DEMO.file
    save(demo_backbone(3), _tiny_result(), _tiny_config(), path, [])
    monkeypatch.setitem(SHIPPED, "demo-fractal", replace(DEMO, sha256=weights_sha256(path)))
    return path


@pytest.mark.parametrize("source", ["committed", "shipped_file"])
def test_the_demo_preset_loads_the_pretrained_file_and_demo_random_none(source, request):
    path = DEMO.path if source == "committed" else request.getfixturevalue(source)
    config = load_config("demo")  # the offline default: pretrained since the measurement
    demo = load_config("demo-random")
    assert config.model.checkpoint == "demo-fractal" and config.suite == "demo"
    assert demo.model.checkpoint is None and demo.suite == "demo-random"
    assert weights_id(config.model) == f"sha256:{weights_sha256(path)}"
    assert weights_id(demo.model) == "random-init"
    torch.manual_seed(0)
    pretrained = build_backbone(config.model, 10, config.data.image_size)
    torch.manual_seed(0)
    random = build_backbone(demo.model, 10, demo.data.image_size)
    tensors = load_file(str(path))
    state, fresh = pretrained.state_dict(), random.state_dict()
    assert all(torch.equal(state[k], tensors[k]) for k in tensors)
    assert len(tensors) == sum(not k.startswith(HEAD_PREFIX) for k in state)
    assert not torch.equal(state["blocks.11.mlp.fc2.weight"], fresh["blocks.11.mlp.fc2.weight"])
    assert torch.equal(state["head.weight"], fresh["head.weight"])  # the head stays task-specific


def test_a_changed_file_is_refused_unless_its_hash_is_passed(weights_dir):
    path = weights_dir / DEMO.file
    save(demo_backbone(3), _tiny_result(), _tiny_config(), path, [])
    actual = weights_sha256(path)
    with pytest.raises(UserError) as refused:
        resolve_checkpoint("demo-fractal")
    message = str(refused.value)
    assert f"has sha256 {actual}, not the expected {DEMO.sha256}" in message
    assert "make pretrain-demo" in message and f"CHECKPOINT=demo-fractal@{actual}" in message
    assert resolve_checkpoint(f"demo-fractal@{actual}") == str(path)
    with pytest.raises(UserError, match="has sha256"):
        resolve_checkpoint(f"demo-fractal@{'0' * 64}")
    assert resolve_checkpoint("some/file.safetensors") == "some/file.safetensors"
    assert resolve_checkpoint(None) is None


def test_a_corrupted_file_is_refused(shipped_file):
    data = bytearray(shipped_file.read_bytes())
    data[-1] ^= 0xFF
    shipped_file.write_bytes(bytes(data))
    with pytest.raises(UserError, match="Restore the committed file"):
        build_backbone(load_config("demo").model, 10, 16)


def test_a_missing_file_says_how_to_make_it(weights_dir):
    with pytest.raises(UserError, match="does not exist; make it with `make pretrain-demo`"):
        weights_id(load_config("demo").model)


def _tiny_result():
    from bench.pretrain.pretrain import PretrainResult

    return PretrainResult([1.0], 0.5, 0.5, 1.0, 0.1)
