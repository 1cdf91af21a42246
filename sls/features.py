"""Step 1 of SLS: the feature of every block, for all blocks in one forward pass per batch
(bench.models.features): by default what the classifier head reads (a ViT's CLS token, or the
mean of its patch tokens when its head pools them; a Swin's token mean, after the patch merging
that ends the block's stage)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bench.models.family import family_of
from bench.models.features import block_feature_batches

FEATURES = ("head", "cls", "mean")


def resolve_feature(model: nn.Module, feature: str) -> str:
    """`head` as what this model's head reads (`cls` or `mean`); the others as they are."""
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; expected one of {FEATURES}")
    return family_of(model).head_tokens(model) if feature == "head" else feature


@torch.inference_mode()
def block_features(
    model: nn.Module, loader, feature: str = "head"
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per block l (index l-1), an (N, D) array of block-output features, and the N labels.

    Eval mode (the model is left in it), before the final norm, adapter branches included.
    """
    feature = resolve_feature(model, feature)
    model.eval()
    per_block: list[list[torch.Tensor]] = [[] for _ in range(family_of(model).num_blocks(model))]
    labels = []
    for features, targets in block_feature_batches(model, loader, feature):
        for i, token in enumerate(features):
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
