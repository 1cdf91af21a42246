"""Per-block features of a ViT over a loader: the residual stream at every block boundary, read
by forward hooks on `model.blocks`, so a PETL block counts with its adapter branches and any
model with a `blocks` sequence works.

Read by SLS (each block's CLS token or patch mean, sls/features.py), block_influence (1 - cos of
a block's input and output) and angular (the angle between any two boundaries).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from bench.models.calibration import calibration_batches

TOKENS = ("cls", "mean", "all")


def block_states(
    model: nn.Module,
    loader,
    tokens: str = "cls",
    max_images: int | None = None,
    images_per_forward: int | None = None,
) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
    """Per forward pass, [x^0, x^1, ..., x^N] and the labels of its images: x^0 the first block's
    input, x^l block l's output (before the final norm), each as `tokens` picks it: `cls` the
    first token (B, D), `mean` the mean of the patch tokens (those after the model's prefix
    tokens) (B, D), `all` every token (B, T, D).

    The loader's first `max_images` images (None: all), each batch split into passes of
    `images_per_forward` (None: one pass a batch); each pass in eval mode without gradients,
    the model's mode restored before the states are yielded.
    """
    if tokens not in TOKENS:
        raise ValueError(f"unknown tokens {tokens!r}; expected one of {TOKENS}")
    for images, labels in calibration_batches(loader, max_images):
        step = images_per_forward or len(images)
        for part, part_labels in zip(images.split(step), labels.split(step), strict=True):
            yield _states(model, part, tokens), part_labels


def _states(model: nn.Module, images: torch.Tensor, tokens: str) -> list[torch.Tensor]:
    states: list[torch.Tensor] = []

    def keep(x: torch.Tensor) -> None:
        if tokens == "cls":
            x = x[:, 0]
        elif tokens == "mean":
            x = x[:, model.num_prefix_tokens :].mean(dim=1)
        states.append(x)

    handles = [model.blocks[0].register_forward_pre_hook(lambda module, args: keep(args[0]))]
    handles += [
        block.register_forward_hook(lambda module, args, output: keep(output))
        for block in model.blocks
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return states
