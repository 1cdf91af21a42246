"""The PETL model of a run: the backbone (with its weights' identity) and the PETL modules."""

from __future__ import annotations

import torch
from torch import nn

from bench.config import DataConfig, ModelConfig
from bench.models.backbone import create_backbone, weights_sha256
from bench.models.petl import PetlSettings, attach_petl


def weights_id(model: ModelConfig) -> str:
    """What the backbone's weights are: a checkpoint's hash, a hub name, or random-init."""
    if model.checkpoint:
        return f"sha256:{weights_sha256(model.checkpoint)}"
    return f"hub:{model.backbone}" if model.pretrained else "random-init"


def build_backbone(model: ModelConfig, num_classes: int, image_size: int,
                   drop_path: float | None = None) -> nn.Module:  # fmt: skip
    """The timm backbone with its weights; a clear error for an unknown name or unfitting file."""
    drop_path = model.drop_path if drop_path is None else drop_path
    return create_backbone(model.backbone, num_classes, image_size, drop_path, model.checkpoint,
                           model.pretrained, model.kwargs)  # fmt: skip


def build_petl_model(model: ModelConfig, data: DataConfig, num_classes: int,
                     settings: PetlSettings, seed: int, device: torch.device) -> nn.Module:  # fmt: skip
    """Backbone + PETL modules, seeded so a random-init backbone and the PETL init reproduce."""
    torch.manual_seed(seed)
    backbone = build_backbone(model, num_classes, data.image_size)
    return attach_petl(backbone, settings).to(device)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two models hold the same tensors under the same names."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
