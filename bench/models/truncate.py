"""Keep a subset of blocks: the one function every layer-wise pruner (SLS included) uses."""

from __future__ import annotations

from collections.abc import Sequence

from timm.models.vision_transformer import VisionTransformer
from torch import nn


def keep_blocks(model: VisionTransformer, indices: Sequence[int]) -> VisionTransformer:
    """Physically drop every block not in `indices` (in order); final norm and head stay.

    The dropped blocks leave the module, so they are neither timed nor stored.
    """
    indices = sorted(set(int(i) for i in indices))
    if not indices or indices[0] < 0 or indices[-1] >= len(model.blocks):
        raise ValueError(f"block indices {indices} out of range for {len(model.blocks)} blocks")
    model.blocks = nn.Sequential(*[model.blocks[i] for i in indices])
    return model


def keep_first(model: VisionTransformer, k: int) -> VisionTransformer:
    return keep_blocks(model, range(k))
