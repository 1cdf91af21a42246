"""Backbone families: what the harness and the pruners know of a backbone's structure, in one place.

A family says, for the timm models it covers: the blocks in order as one flat list (a Swin's
stages flattened: Swin-B has 24 blocks), which stage each block is in, how to swap a block for a
PETL-wrapped one, how to keep a subset of blocks, what a block's output becomes before the next
stage reads it (a Swin's patch merging), the tokens a feature is read from (the CLS token, the
mean of the patch tokens, every token, or what the classifier head reads), and how its
checkpoints are converted to timm's names. Everything else reaches a backbone through
`family_of(model)`, so no other module asks which class a model is.

- `vit`: timm's `VisionTransformer` (supervised, AugReg, CLIP, DINOv2 with or without registers,
  MAE): one stage; prefix tokens (CLS and registers) come first, patch tokens after them.
- `swin`: timm's `SwinTransformer` (timm >= 0.9 layout: stage s > 0 starts with its patch merging,
  `layers[s].downsample`, which ends stage s - 1 in Microsoft's layout): tokens on an NHWC grid.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from timm.models import swin_transformer, vision_transformer
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from bench.errors import UserError

TOKENS = ("cls", "mean", "all", "head")  # what a block feature reads; `head`: what the head reads


class Family(ABC):
    """A family's blocks live in one `nn.Sequential` per stage (`block_lists`); the flat block
    list, stages, swapping a block and keeping a subset are built on those."""

    name: ClassVar[str]
    model_class: ClassVar[type[nn.Module]]
    checkpoint_filter: ClassVar[Callable[[dict, nn.Module], dict]]

    @abstractmethod
    def block_lists(self, model: nn.Module) -> list[nn.Sequential]:
        """The blocks of each stage, in the order the forward runs them."""

    @abstractmethod
    def set_block_lists(self, model: nn.Module, lists: list[nn.Sequential]) -> None:
        """Put these block lists where `block_lists` found them."""

    @abstractmethod
    def list_prefix(self, stage: int) -> str:
        """The parameter-name prefix of a stage's block list, e.g. `blocks.`."""

    @abstractmethod
    def head_tokens(self, model: nn.Module) -> str:
        """What the head reads of the last block's output: `cls` or `mean` (of patch tokens)."""

    @abstractmethod
    def tokens(self, model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
        """A block input or output as `mode` reads it: (B, D) for `cls`, `mean` and `head`,
        (B, T, D) for `all`."""

    @abstractmethod
    def block_width(self, model: nn.Module, block: nn.Module) -> int:
        """The residual width of a (timm) block: what its PETL modules read and write."""

    def leave_block(self, model: nn.Module, index: int, x: torch.Tensor) -> torch.Tensor:
        """Block `index`'s output as the feature of that block reads it (see `SwinFamily`)."""
        return x

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """Every block (flat, 0-based), in the order the forward runs them."""
        return [block for blocks in self.block_lists(model) for block in blocks]

    def num_blocks(self, model: nn.Module) -> int:
        return sum(len(blocks) for blocks in self.block_lists(model))

    def stages(self, model: nn.Module) -> list[int]:
        """The stage (0-based) of each block of `blocks`."""
        return [s for s, blocks in enumerate(self.block_lists(model)) for _ in blocks]

    def set_block(self, model: nn.Module, index: int, block: nn.Module) -> None:
        """Put `block` where block `index` (flat) is: how PETL wrappers go in."""
        for blocks in self.block_lists(model):
            if index < len(blocks):
                blocks[index] = block
                return
            index -= len(blocks)
        raise IndexError("block index out of range")

    def keep_blocks(self, model: nn.Module, indices: Sequence[int]) -> nn.Module:
        """Drop every block not in `indices` (flat); each stage gets a new block list, so the
        old lists (`block_lists` before the call) stay as they were."""
        keep, start, lists = set(indices), 0, []
        for blocks in self.block_lists(model):
            lists.append(nn.Sequential(*[b for j, b in enumerate(blocks) if start + j in keep]))
            start += len(blocks)
        self.set_block_lists(model, lists)
        return model

    def block_prefixes(self, model: nn.Module) -> list[str]:
        """Each block's parameter-name prefix, e.g. `blocks.3.` or `layers.2.blocks.0.`."""
        return [f"{self.list_prefix(s)}{j}." for s, blocks in enumerate(self.block_lists(model))
                for j in range(len(blocks))]  # fmt: skip

    def check_tokens(self, model: nn.Module, mode: str) -> None:
        if mode not in TOKENS:
            raise ValueError(f"unknown tokens {mode!r}; expected one of {TOKENS}")


class VitFamily(Family):
    """timm's VisionTransformer, and any one-stage model with a `blocks` sequence shaped like
    it (prefix tokens first)."""

    name = "vit"
    model_class = VisionTransformer
    checkpoint_filter = staticmethod(vision_transformer.checkpoint_filter_fn)

    def block_lists(self, model):
        return [model.blocks]

    def set_block_lists(self, model, lists):
        (model.blocks,) = lists

    def list_prefix(self, stage):
        return "blocks."

    def block_width(self, model, block):
        return model.embed_dim

    def head_tokens(self, model):
        pool = getattr(model, "global_pool", "token")
        if getattr(model, "attn_pool", None) is not None or getattr(model, "pool_include_prefix",
                                                                    False):  # fmt: skip
            pool = f"{pool} (attention pool or prefix tokens included)"
        if pool == "token":
            return "cls"
        if pool == "avg":
            return "mean"
        raise UserError(
            f"this ViT's head pools its tokens with {pool!r}; the suite reads features where the "
            "head does for global_pool 'token' (the CLS token) or 'avg' (the patch-token mean): "
            "set model.kwargs.global_pool to one of those"
        )

    def tokens(self, model, x, mode):
        self.check_tokens(model, mode)
        if mode == "head":
            mode = self.head_tokens(model)
        if mode == "cls":
            if not getattr(model, "has_class_token", True):
                raise UserError("this ViT has no CLS token; read its features with mean or head")
            return x[:, 0]
        if mode == "mean":  # patch tokens only: the CLS token and any registers come first
            return x[:, getattr(model, "num_prefix_tokens", 1) :].mean(dim=1)
        return x


class SwinFamily(Family):
    """A Swin's blocks flattened over its stages. Keeping a subset of blocks keeps every patch
    merging (a stage left without blocks still merges), so the final norm and the head get the
    width they were built for. The feature of block l is its output passed through the patch
    merging that ends its stage (stages before the last), as the SLS authors read it."""

    name = "swin"
    model_class = SwinTransformer
    checkpoint_filter = staticmethod(swin_transformer.checkpoint_filter_fn)

    def block_lists(self, model):
        return [stage.blocks for stage in model.layers]

    def set_block_lists(self, model, lists):
        for stage, blocks in zip(model.layers, lists, strict=True):
            stage.blocks, stage.depth = blocks, len(blocks)

    def list_prefix(self, stage):
        return f"layers.{stage}.blocks."

    def block_width(self, model, block):
        return block.dim

    def head_tokens(self, model):
        if model.global_pool != "avg":
            raise UserError(
                f"this Swin's head pools with {model.global_pool!r}; the suite reads the mean of "
                "the tokens, as global_pool 'avg' (timm's default) does"
            )
        return "mean"

    def tokens(self, model, x, mode):
        self.check_tokens(model, mode)
        if mode == "cls":
            raise UserError("a Swin has no CLS token; its head reads the mean of the tokens: "
                            "use head (or mean)")  # fmt: skip
        if mode == "all":
            return x.flatten(1, 2)  # (B, H, W, C) -> (B, H*W, C)
        return x.mean(dim=(1, 2))

    def leave_block(self, model, index, x):
        """Through the patch merging that ends the block's stage (the next stage's `downsample`
        in timm >= 0.9); a block of the last stage is left as it is."""
        s = self.stages(model)[index]
        return model.layers[s + 1].downsample(x) if s + 1 < len(model.layers) else x


VIT, SWIN = VitFamily(), SwinFamily()
FAMILIES: tuple[Family, ...] = (VIT, SWIN)
NAMES = frozenset(f.name for f in FAMILIES)


def family_of(model: nn.Module) -> Family:
    """The family of a timm backbone (PETL modules attached or not); a model of another class
    with a `blocks` sequence counts as a ViT."""
    for family in FAMILIES:
        if isinstance(model, family.model_class):
            return family
    if isinstance(getattr(model, "blocks", None), nn.Sequential | nn.ModuleList):
        return VIT
    raise UserError(
        f"backbone {type(model).__name__} is neither a timm VisionTransformer nor a "
        "SwinTransformer; the suite prunes those (BACKBONE=vit_... or swin_...)"
    )


def blocks(model: nn.Module) -> list[nn.Module]:
    return family_of(model).blocks(model)


def num_blocks(model: nn.Module) -> int:
    return family_of(model).num_blocks(model)
