"""Per-block features of a backbone over a loader, read by forward hooks on its blocks (the
family's flat list, `bench.models.family`), so a PETL block counts with its adapter branches.

- `block_io`: every block's input and output (block_influence: 1 - cos of the two; angular: the
  angle across a run of blocks within a stage);
- `block_states`: the residual stream at every block boundary of a one-stage backbone (a ViT);
- `block_feature_batches`: the feature of every block, read where the truncated model's head
  would read it (SLS): a ViT's block output, a Swin's through the patch merging that ends its
  stage.

Tokens (`TOKENS`): `cls` the first token, `mean` the mean of the patch tokens (after the CLS token
and any registers; a Swin's every token), `all` every token (B, T, D), `head` what the
classifier head reads (`cls` or `mean`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from bench.models.calibration import calibration_batches
from bench.models.family import TOKENS, family_of

__all__ = ["TOKENS", "BlockIO", "block_io", "block_states", "block_feature_batches"]


@dataclass
class BlockIO:
    inputs: list[torch.Tensor]  # block l's input, l = 1..N (index l - 1)
    outputs: list[torch.Tensor]  # block l's output


def block_io(
    model: nn.Module,
    loader,
    tokens: str = "all",
    max_images: int | None = None,
    images_per_forward: int | None = None,
) -> Iterator[tuple[BlockIO, torch.Tensor]]:
    """Per forward pass, every block's input and output as `tokens` reads them, and the labels.

    The loader's first `max_images` images (None: all), each batch split into passes of
    `images_per_forward` (None: one pass a batch); each pass in eval mode without gradients,
    the model's mode restored before the states are yielded.
    """
    family_of(model).check_tokens(model, tokens)
    for images, labels in _passes(loader, max_images, images_per_forward):
        yield _io_of(model, images, tokens), labels


def _io_of(model: nn.Module, images: torch.Tensor, tokens: str) -> BlockIO:
    family, io = family_of(model), BlockIO([], [])
    last: list = [None, None]  # the tensor read last and its reading: a ViT block's input is
    #                            the previous block's output, read once

    def keep(into: list, x: torch.Tensor) -> None:
        if x is not last[0]:
            last[:] = [x, family.tokens(model, x, tokens)]
        into.append(last[1])

    _forward(model, images, lambda i, x: keep(io.inputs, x), lambda i, x: keep(io.outputs, x))
    return io


def block_states(
    model: nn.Module,
    loader,
    tokens: str = "cls",
    max_images: int | None = None,
    images_per_forward: int | None = None,
) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
    """Per forward pass, [x^0, x^1, ..., x^N] and the labels: x^0 the first block's input, x^l
    block l's output (before the final norm). For a one-stage backbone (a ViT), where x^l is
    also block l+1's input."""
    for io, labels in block_io(model, loader, tokens, max_images, images_per_forward):
        yield [io.inputs[0], *io.outputs], labels


def block_feature_batches(
    model: nn.Module, loader, tokens: str = "head", max_images: int | None = None
) -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
    """Per batch, the feature of every block (index l - 1 for block l) and the labels: block
    l's output as the head of the model truncated after it would read it, before the final norm
    (`Family.leave_block`: a Swin's output through its stage's patch merging)."""
    family_of(model).check_tokens(model, tokens)
    for images, labels in _passes(loader, max_images, None):
        yield _features_of(model, images, tokens), labels


def _features_of(model: nn.Module, images: torch.Tensor, tokens: str) -> list[torch.Tensor]:
    family, features = family_of(model), []

    def keep(i: int, x: torch.Tensor) -> None:
        features.append(family.tokens(model, family.leave_block(model, i, x), tokens))

    _forward(model, images, None, keep)
    return features


def _passes(loader, max_images, images_per_forward):
    for images, labels in calibration_batches(loader, max_images):
        step = images_per_forward or len(images)
        yield from zip(images.split(step), labels.split(step), strict=True)


Hook = Callable[[int, torch.Tensor], None]


def _forward(model: nn.Module, images: torch.Tensor, on_input: Hook | None,
             on_output: Hook | None) -> None:  # fmt: skip
    """One forward pass in eval mode without gradients, `on_input(i, x)` called with block i's
    input and `on_output(i, y)` with its output as they happen."""
    handles = []
    for i, block in enumerate(family_of(model).blocks(model)):
        if on_input is not None:
            handles.append(block.register_forward_pre_hook(
                lambda module, args, i=i: on_input(i, args[0])))  # fmt: skip
        if on_output is not None:
            handles.append(block.register_forward_hook(
                lambda module, args, output, i=i: on_output(i, output)))  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
