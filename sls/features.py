"""Step 1 of SLS: the CLS token of every block's output, for all blocks in one forward pass."""

from __future__ import annotations

import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

FEATURES = ("cls", "mean")


@torch.inference_mode()
def block_features(
    model: VisionTransformer, loader, feature: str = "cls"
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per block l (index l-1), an (N, D) array of block-output features, and the N labels.

    Eval mode, before the final norm (`norm=False`), adapter branches included. timm's
    `forward_intermediates` drops prefix tokens unless `return_prefix_tokens=True`: taking
    `[:, 0]` of its default output would silently score the first patch token instead of CLS.
    """
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; expected one of {FEATURES}")
    model.eval()
    per_block: list[list[torch.Tensor]] = [[] for _ in model.blocks]
    labels = []
    for images, targets in loader:
        outputs = model.forward_intermediates(
            images, return_prefix_tokens=True, norm=False, output_fmt="NLC", intermediates_only=True
        )
        for i, (patches, prefix) in enumerate(outputs):
            token = prefix[:, 0] if feature == "cls" else patches.mean(dim=1)
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
