"""Step 1 of SLS: the CLS token (or patch mean) of every block's output, for all blocks in one
forward pass per batch (bench.models.features)."""

from __future__ import annotations

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

from bench.models.features import block_states

FEATURES = ("cls", "mean")


@torch.inference_mode()
def block_features(
    model: VisionTransformer, loader, feature: str = "cls"
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per block l (index l-1), an (N, D) array of block-output features, and the N labels.

    Eval mode (the model is left in it), before the final norm, adapter branches included.
    """
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; expected one of {FEATURES}")
    model.eval()
    per_block: list[list[torch.Tensor]] = [[] for _ in model.blocks]
    labels = []
    for states, targets in block_states(model, loader, feature):
        for i, token in enumerate(states[1:]):
            per_block[i].append(token.float().cpu())
        labels.append(targets.cpu())
    features = [torch.cat(b).numpy() for b in per_block]
    for block, values in enumerate(features, start=1):
        if not np.isfinite(values).all():
            raise ValueError(
                f"block {block}'s features hold NaN or infinite values: the model's weights are "
                "not finite (a diverged transfer or a corrupt checkpoint)"
            )
    return features, torch.cat(labels).numpy()
