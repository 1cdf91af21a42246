"""Model surgery every pruner shares: keep a subset of blocks (SLS and the layer-wise pruners),
keep a subset of channels inside a block (width pruning, block_benefit, spa), and the attention
that keeps the softmax scale of the unpruned head.

Channels: a head dim is cut in q, k and v alike and in proj's input, the same dims in every head
(heads are kept); an MLP hidden unit in fc1's output and fc2's input. The residual width stays,
so the PETL modules that read and write the residual stream and the head are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import Attention
from torch import nn

from bench.errors import UserError
from bench.models.family import family_of

KeptIndices = list[dict[str, list[int]]]  # per block: {"attn": head-dim channels, "mlp": hidden}

# ---------------------------------------------------------------------------------------------
# blocks


def keep_blocks(model: nn.Module, indices: Sequence[int]) -> nn.Module:
    """Physically drop every block not in `indices` (flat, 0-based, in order); final norm and
    head stay, and so does every patch merging of a Swin (`bench.models.family`).

    The dropped blocks leave the module, so they are neither timed nor stored.
    """
    family = family_of(model)
    total = family.num_blocks(model)
    indices = sorted(set(int(i) for i in indices))
    if not indices or indices[0] < 0 or indices[-1] >= total:
        raise ValueError(f"block indices {indices} out of range for {total} blocks")
    return family.keep_blocks(model, indices)


def keep_first(model: nn.Module, k: int) -> nn.Module:
    """The first k blocks: on a Swin, those of the stage k ends in are followed by that stage's
    patch merging and every later one (stages left empty still merge), then the norm and head."""
    return keep_blocks(model, range(k))


# ---------------------------------------------------------------------------------------------
# channels


def timm_block(block: nn.Module) -> nn.Module:
    """The timm Block inside a PETL wrapper (Convpass/adapter), or the block itself."""
    return getattr(block, "block", block)


def check_plain_attention(attn: nn.Module) -> None:
    plain = isinstance(attn, Attention) and attn.gate is None
    if not plain or not all(isinstance(m, nn.Identity) for m in (attn.q_norm, attn.norm)):
        raise UserError(f"width pruning supports timm's plain Attention, not {attn}")


def keep_channels(linear: nn.Module, index: torch.Tensor, dim: int) -> None:
    """Keep the output (dim 0) or input (dim 1) channels `index` of a frozen Linear. A layer that
    slices itself with `keep(in_mask, out_mask)` (SPLoRA's, adapter included) gets the mask of
    `index` instead (the same channels when `index` is ascending)."""
    keep = getattr(linear, "keep", None)
    if callable(keep):
        mask = torch.zeros(linear.weight.shape[dim], dtype=torch.bool)
        mask[index] = True
        keep(*((None, mask) if dim == 0 else (mask, None)))
        return
    index = index.to(linear.weight.device)
    weight = linear.weight
    linear.weight = nn.Parameter(weight.data.index_select(dim, index).clone(), weight.requires_grad)
    if dim == 0:
        if linear.bias is not None:
            bias = linear.bias
            linear.bias = nn.Parameter(bias.data.index_select(0, index).clone(), bias.requires_grad)
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def slice_block(block: nn.Module, kept: dict[str, list[int]], keep_scale: bool) -> None:
    """Re-apply a block's kept indices to a fresh (unpruned) timm Block."""
    if "attn" in kept:
        slice_head_dims(block.attn, kept["attn"])
        fix_attention(block.attn, keep_scale)
    if "mlp" in kept:
        slice_mlp_hidden(block.mlp, kept["mlp"])


def slice_head_dims(attn: Attention, kept: list[int]) -> None:
    """Keep channels `kept` of the attention width in q, k and v alike, and in proj's input.
    The caller sets the attention's cached sizes (`fix_attention`)."""
    index = torch.tensor(kept, dtype=torch.long)
    width = attn.proj.in_features
    keep_channels(attn.qkv, torch.cat([index + part * width for part in range(3)]), 0)
    keep_channels(attn.proj, index, 1)


def slice_mlp_hidden(mlp: nn.Module, kept: list[int]) -> None:
    index = torch.tensor(kept, dtype=torch.long)
    keep_channels(mlp.fc1, index, 0)
    keep_channels(mlp.fc2, index, 1)


# ---------------------------------------------------------------------------------------------
# the softmax scale of a pruned head


class ScaledAttention(Attention):
    """timm Attention whose softmax uses `self.scale` on every path (timm's fused path uses
    head_dim ** -0.5 of the current q whatever `scale` says), so a pruned attention can keep the
    unpruned scale; `attn_dim` 0 (a skipped branch) leaves only the projection's bias."""

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        b, n, _ = x.shape
        if self.attn_dim == 0:
            return self.proj_drop(self.proj(x.new_zeros(b, n, 0)))
        qkv = self.project_qkv(x)
        qkv = qkv.reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_drop.p if self.training else 0.0,
            is_causal=is_causal, scale=self.scale,
        )  # fmt: skip
        x = self.norm(x.transpose(1, 2).reshape(b, n, self.attn_dim))
        return self.proj_drop(self.proj(x))

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        return self.qkv(x)


def fix_attention(attn: Attention, keep_scale: bool) -> None:
    """Set timm Attention's cached sizes from the pruned projections (heads kept, head dim cut).

    `keep_scale`: the softmax scale stays the unpruned one (a ScaledAttention, or a subclass,
    uses it); else it follows the pruned head dim, as fused attention (SDPA's default) does.
    """
    attn.attn_dim = attn.proj.in_features
    if attn.attn_dim % attn.num_heads or attn.qkv.out_features != 3 * attn.attn_dim:
        raise RuntimeError(f"pruned attention does not split into {attn.num_heads} heads: {attn}")
    attn.head_dim = attn.attn_dim // attn.num_heads
    if keep_scale:
        attn.__class__ = ScaledAttention if type(attn) is Attention else type(attn)
    else:
        attn.scale = attn.head_dim**-0.5
