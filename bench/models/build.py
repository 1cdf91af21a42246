"""The PETL model of a run: the backbone (with its weights' identity) and the PETL modules."""

from __future__ import annotations

import torch
from torch import nn

from bench.config import DataConfig, ModelConfig, RunConfig
from bench.data.loader import NORMALIZATIONS
from bench.errors import UserError
from bench.models.backbone import create_backbone, pretrained_input, weights_sha256
from bench.models.petl import PetlSettings, attach_petl
from bench.models.shipped import resolve_checkpoint

FROM_WEIGHTS = "weights"  # data.normalization: the backbone weights' own mean and std


def weights_id(model: ModelConfig) -> str:
    """What the backbone's weights are: a checkpoint's hash, a hub name, or random-init."""
    if model.checkpoint:
        return f"sha256:{weights_sha256(resolve_checkpoint(model.checkpoint))}"
    return f"hub:{model.backbone}" if model.pretrained else "random-init"


def resolve_input(config: RunConfig) -> None:
    """The input the backbone's weights were trained with, where the config asks for it:
    `data.image_size` None -> the weights' input size, `data.normalization` "weights" -> the
    named normalization (`NORMALIZATIONS`) equal to the weights' mean and std. In place; a
    resolved config is left as it is."""
    data = config.data
    if data.image_size is not None and data.normalization != FROM_WEIGHTS:
        return
    size, mean, std = pretrained_input(config.model.backbone, config.model.kwargs)
    if data.image_size is None:
        data.image_size = size
    if data.normalization == FROM_WEIGHTS:
        data.normalization = _named(mean, std, config.model.backbone)


def _named(mean, std, backbone: str) -> str:
    for name, (m, s) in NORMALIZATIONS.items():
        if all(abs(a - b) < 1e-4 for a, b in zip((*m, *s), (*mean, *std), strict=True)):
            return name
    raise UserError(
        f"the weights of {backbone} normalise with mean {tuple(mean)} and std {tuple(std)}, "
        f"none of {', '.join(NORMALIZATIONS)}: add them to bench.data.loader.NORMALIZATIONS"
    )


def build_backbone(model: ModelConfig, num_classes: int, image_size: int,
                   drop_path: float | None = None) -> nn.Module:  # fmt: skip
    """The timm backbone with its weights; a clear error for an unknown name or unfitting file."""
    drop_path = model.drop_path if drop_path is None else drop_path
    checkpoint = resolve_checkpoint(model.checkpoint)
    return create_backbone(model.backbone, num_classes, image_size, drop_path, checkpoint,
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
