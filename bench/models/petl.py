"""PETL modules on a frozen timm ViT or Swin: Convpass (on a Swin, the SLS authors'
`Convpass_swin`), an AdaptFormer-style adapter, LoRA on q and v, RepAdapter (re-parameterised
into qkv and fc1 for inference; ViT), SPLoRA on every block Linear (ViT; its own module,
bench/models/splora.py). A method declares the backbone families it is built for (`backbones`);
the blocks it wraps are the family's (`bench.models.family`).

A method is a small settings record plus a function that attaches its modules; it registers
under its name in `PETL_METHODS`. Every PETL module subclasses `PetlModule`
(bench/models/petl_base.py): its parameters, with the classifier head's, are what trains and what
is stored per task.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from bench.errors import UserError
from bench.models.family import NAMES as FAMILIES
from bench.models.family import family_of
from bench.models.petl_base import PetlModule, PetlSettings
from bench.registry import Registry

# ---------------------------------------------------------------------------------------------
# modules


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ConvpassLayers(PetlModule):
    """Convpass's layers, Linear(D->r), 3x3 conv (r->r), Linear(r->D), QuickGELU, Dropout and
    the scale, initialised as Convpass: up-projection zero, so a branch starts at zero."""

    def __init__(self, dim: int, settings: PetlSettings):
        super().__init__()
        r = settings.dim
        self.scale = settings.scale
        self.down, self.conv, self.up = (
            nn.Linear(dim, r),
            nn.Conv2d(r, r, 3, padding=1),
            nn.Linear(r, dim),
        )
        self.act, self.dropout = QuickGELU(), nn.Dropout(settings.dropout)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        if settings.xavier_init:
            nn.init.xavier_uniform_(self.conv.weight)
        else:  # identity at the centre tap
            nn.init.zeros_(self.conv.weight)
            with torch.no_grad():
                self.conv.weight[:, :, 1, 1] = torch.eye(r)
        nn.init.zeros_(self.conv.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)


class ConvpassBranch(ConvpassLayers):
    """Linear(D->r) -> QuickGELU -> 3x3 conv over the patch grid (CLS as a 1x1 image) ->
    QuickGELU -> Dropout -> Linear(r->D)."""

    def __init__(self, dim: int, settings: PetlSettings, grid: tuple[int, int], prefix_tokens: int):
        super().__init__(dim, settings)
        self.grid, self.prefix_tokens = grid, prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _ = x.shape
        h = self.act(self.down(x))
        p, (gh, gw) = self.prefix_tokens, self.grid
        patches = h[:, p:].reshape(b, gh, gw, -1).permute(0, 3, 1, 2)
        patches = self.conv(patches).permute(0, 2, 3, 1).reshape(b, gh * gw, -1)
        prefix = self.conv(h[:, :p].reshape(b * p, -1, 1, 1)).reshape(b, p, -1)
        h = self.dropout(self.act(torch.cat([prefix, patches], dim=1)))
        return self.up(h) * self.scale


class SwinConvpassBranch(ConvpassLayers):
    """The SLS authors' `Convpass_swin`: Convpass on a Swin block's (B, H, W, C) token grid,
    with a squeeze-excitation gate between the down-projection and the 3x3 conv:
    Linear(C->r) -> QuickGELU -> times sigmoid(1x1 conv(r/4->r)(QuickGELU(1x1 conv(r->r/4)(grid
    mean)))) -> 3x3 conv -> QuickGELU -> Dropout -> Linear(r->C). Initialised as Convpass (the
    gate's convs as PyTorch initialises them, as the authors' code leaves them); their gate is
    8 -> 2 -> 8 at r = 8, r/4 here."""

    def __init__(self, dim: int, settings: PetlSettings):
        super().__init__(dim, settings)
        r = settings.dim
        self.squeeze, self.excite = nn.Conv2d(r, max(1, r // 4), 1), nn.Conv2d(max(1, r // 4), r, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.down(x)).permute(0, 3, 1, 2)  # (B, r, H, W)
        gate = self.excite(self.act(self.squeeze(h.mean(dim=(2, 3), keepdim=True))))
        h = self.conv(h * torch.sigmoid(gate)).permute(0, 2, 3, 1)
        return self.up(self.dropout(self.act(h))) * self.scale


class BottleneckAdapter(PetlModule):
    """AdaptFormer's parallel adapter: Linear(D->r) -> ReLU -> Dropout -> Linear(r->D), up zero."""

    def __init__(self, dim: int, settings: PetlSettings):
        super().__init__()
        self.down, self.up = nn.Linear(dim, settings.dim), nn.Linear(settings.dim, dim)
        self.act, self.dropout, self.scale = nn.ReLU(), nn.Dropout(settings.dropout), settings.scale
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(self.act(self.down(x)))) * self.scale


class LoRAQKV(PetlModule):
    """Low-rank updates of the q and v parts of a fused qkv projection (B zero at the start)."""

    frozen_children = ("qkv",)

    def __init__(self, qkv: nn.Linear, settings: PetlSettings):
        super().__init__()
        self.qkv, dim, r = qkv, qkv.in_features, settings.dim
        self.q_down, self.q_up = nn.Linear(dim, r, bias=False), nn.Linear(r, dim, bias=False)
        self.v_down, self.v_up = nn.Linear(dim, r, bias=False), nn.Linear(r, dim, bias=False)
        self.scale = settings.scale
        for down, up in ((self.q_down, self.q_up), (self.v_down, self.v_up)):
            nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
            nn.init.zeros_(up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.qkv(x)
        dq = self.q_up(self.q_down(x)) * self.scale
        dv = self.v_up(self.v_down(x)) * self.scale
        zeros = torch.zeros_like(dq)
        return out + torch.cat([dq, zeros, dv], dim=-1)

    def merged(self) -> nn.Linear:
        """The equivalent single Linear, for deployment (LoRA adds no inference cost merged)."""
        dim = self.qkv.in_features
        linear = nn.Linear(dim, self.qkv.out_features, bias=self.qkv.bias is not None)
        with torch.no_grad():
            weight = self.qkv.weight.clone()
            weight[:dim] += self.scale * self.q_up.weight @ self.q_down.weight
            weight[2 * dim :] += self.scale * self.v_up.weight @ self.v_down.weight
            linear.weight.copy_(weight)
            if self.qkv.bias is not None:
                linear.bias.copy_(self.qkv.bias)
        return linear.to(self.qkv.weight.device)


REPADAPTER_GROUPS = 2  # groups of the up-projection in every official VTAB config


class RepAdapter(PetlModule):
    """RepAdapter (Luo et al. 2023; official code luogen1996/RepAdapter): a linear bottleneck in
    sequence with the layer after it, `x + s * B(dropout(A x))`, where A is a 1x1 Conv1d D -> r
    and B a grouped 1x1 Conv1d r -> D (`groups` groups), over the channels of (B, N, D) tokens.

    Initialised as the official code: A xavier-uniform, B and both biases zero, so it starts as
    the identity. Being linear, it folds into the Linear that reads its output (`fold_into`).
    The dropout between A and B has no linear equivalent: the fold equals the adapter in eval
    mode only, which is the only mode a merged (deployed) model runs in.
    """

    def __init__(self, dim: int, settings: PetlSettings, groups: int = REPADAPTER_GROUPS):
        super().__init__()
        if settings.dim % groups or dim % groups:
            raise UserError(
                f"repadapter: hidden dim {settings.dim} and width {dim} must both split into "
                f"{groups} groups; use an even --set petl.dim"
            )
        self.groups, self.scale = groups, settings.scale
        self.down = nn.Conv1d(dim, settings.dim, 1)  # official conv_A
        self.up = nn.Conv1d(settings.dim, dim, 1, groups=groups)  # official conv_B
        self.dropout = nn.Dropout(settings.dropout)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(self.dropout(self.down(x.transpose(1, 2)))) * self.scale
        return x + h.transpose(1, 2)

    @torch.no_grad()
    def fold_into(self, linear: nn.Linear) -> nn.Linear:
        """`linear(adapter(x))` as one new frozen Linear of `linear`'s shape (eval mode).

        With U the dense (block-diagonal) form of B: W' = W + s (W U) A and
        b' = b + s W (U a + b_B). Only `linear`'s input must be the adapter's width, so a
        width-pruned qkv or fc1 (fewer outputs) folds as it is. Computed in float64. A layer
        without a bias gets one (the official code assumes qkv and fc1 have biases).
        """
        if not isinstance(linear, nn.Linear) or isinstance(linear, PetlModule):
            raise TypeError(
                f"repadapter folds into a plain nn.Linear, not {type(linear).__name__}; merge "
                "that layer first (RepAdapterBlock.merged does)"
            )
        w = linear.weight.double()
        down = self.down.weight.squeeze(-1).double()  # (r, D)
        up = torch.block_diag(*self.up.weight.squeeze(-1).double().chunk(self.groups))  # (D, r)
        shift = self.scale * (up @ self.down.bias.double() + self.up.bias.double())
        weight = w + self.scale * (w @ up) @ down
        bias = w @ shift
        if linear.bias is not None:
            bias = bias + linear.bias.double()
        folded = nn.Linear(linear.in_features, linear.out_features, device=linear.weight.device)
        folded.weight = nn.Parameter(weight.to(linear.weight.dtype), requires_grad=False)
        folded.bias = nn.Parameter(bias.to(linear.weight.dtype), requires_grad=False)
        return folded


# ---------------------------------------------------------------------------------------------
# blocks with per-block adapters


class AdapterBlock(nn.Module):
    """A timm Block (`self.block`) with per-block PETL modules, held in the attributes named by
    `adapter_roles` (one per residual branch, None where a branch has none). The forward is split
    at the branch boundary (`attn_residual`, `mlp_residual`) for pruners that read it there."""

    adapter_roles: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        return self.mlp_residual(self.attn_residual(x, attn_mask, is_causal))

    def attn_residual(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False):
        raise NotImplementedError

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ParallelBranchBlock(AdapterBlock):
    """A timm Block plus optional parallel branches on its attention and MLP residuals.

    `x = x + DP(attn(LN1 x)) + DP'(a(in_a))`, `x = x + DP(mlp(LN2 x)) + DP'(m(in_m))`, where the
    branch input is the normed input (Convpass) or the residual stream itself (AdaptFormer).
    `branch_drop_path`: "separate" draws the branch's own drop-path mask, independent of the main
    path's (Convpass's `forward_block`, which the SLS authors copy, calls `drop_path` on each);
    "none" leaves the branch undropped (AdaptFormer's parallel adapter is added after the MLP's
    drop-path).
    """

    adapter_roles = ("attn_branch", "mlp_branch")
    BRANCH_DROP_PATHS = ("separate", "none")

    def __init__(self, block: nn.Module, attn_branch, mlp_branch, *, normed_input: bool,
                 branch_drop_path: str = "separate"):  # fmt: skip
        super().__init__()
        if branch_drop_path not in self.BRANCH_DROP_PATHS:
            raise ValueError(f"branch_drop_path {branch_drop_path!r}: {self.BRANCH_DROP_PATHS}")
        self.block, self.attn_branch, self.mlp_branch = block, attn_branch, mlp_branch
        self.normed_input, self.branch_drop_path = normed_input, branch_drop_path

    def _branch(
        self, branch: nn.Module, h: torch.Tensor, x: torch.Tensor, drop_path
    ) -> torch.Tensor:
        out = branch(h if self.normed_input else x)
        return drop_path(out) if self.branch_drop_path == "separate" else out

    def attn_residual(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False):
        """The residual stream after the attention branch (and its parallel PETL branch)."""
        b = self.block
        h = b.norm1(x)
        out = b.drop_path1(b.ls1(b.attn(h, attn_mask=attn_mask, is_causal=is_causal)))
        if self.attn_branch is not None:
            out = out + self._branch(self.attn_branch, h, x, b.drop_path1)
        return x + out

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream after the MLP branch (and its parallel PETL branch)."""
        b = self.block
        h = b.norm2(x)
        out = b.drop_path2(b.ls2(b.mlp(h)))
        if self.mlp_branch is not None:
            out = out + self._branch(self.mlp_branch, h, x, b.drop_path2)
        return x + out


class SwinParallelBranchBlock(ParallelBranchBlock):
    """`ParallelBranchBlock` on a timm Swin block, whose tokens are a (B, H, W, C) grid and whose
    attention is shifted-window (`_attn`): the authors' `forward_swin_block`,
    `x = x + DP(W-MSA(LN1 x)) + DP'(a(LN1 x))`, `x = x + DP(mlp(LN2 x)) + DP'(m(LN2 x))`."""

    def attn_residual(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False):
        b = self.block
        h = b.norm1(x)
        x_out = x + b.drop_path1(b._attn(h))
        if self.attn_branch is not None:
            x_out = x_out + self._branch(self.attn_branch, h, x, b.drop_path1)
        return x_out

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        h = b.norm2(x)
        x_out = x + b.drop_path2(b.mlp(h))
        if self.mlp_branch is not None:
            x_out = x_out + self._branch(self.mlp_branch, h, x, b.drop_path2)
        return x_out


PARALLEL_BLOCKS = {"vit": ParallelBranchBlock, "swin": SwinParallelBranchBlock}


class RepAdapterBlock(AdapterBlock):
    """A timm Block with a RepAdapter in front of attention and one in front of the MLP, on the
    normed input (the official "repblock"): `x = x + attn(R_a(LN1 x))`, `x = x + mlp(R_m(LN2 x))`.

    Departure from the official forward: it drops timm's layer scale and uses drop_path1 on both
    branches; this keeps the Block's own ls1/ls2 and drop_path1/2 (identical for ViT-B, whose
    layer scales are identities and whose two drop-paths have the same rate).
    """

    adapter_roles = ("attn_adapter", "mlp_adapter")

    def __init__(self, block: nn.Module, attn_adapter: RepAdapter, mlp_adapter: RepAdapter):
        super().__init__()
        self.block, self.attn_adapter, self.mlp_adapter = block, attn_adapter, mlp_adapter

    def attn_residual(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False):
        """The residual stream after the adapted attention branch."""
        b = self.block
        h = self.attn_adapter(b.norm1(x))
        return x + b.drop_path1(b.ls1(b.attn(h, attn_mask=attn_mask, is_causal=is_causal)))

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream after the adapted MLP branch."""
        b = self.block
        return x + b.drop_path2(b.ls2(b.mlp(self.mlp_adapter(b.norm2(x)))))

    def merged(self) -> nn.Module:
        """The re-parameterised block, as deployed: a copy of the timm Block with each adapter
        folded into the layer after it (attn.qkv, mlp.fc1), so the backbone's structure and no
        adapter. Equal to this block in eval mode (see RepAdapter); any mergeable layer inside
        the block (e.g. SPLoRA) is merged first."""
        block = merged_copy(self.block) or copy.deepcopy(self.block)
        block.attn.qkv = self.attn_adapter.fold_into(block.attn.qkv)
        block.mlp.fc1 = self.mlp_adapter.fold_into(block.mlp.fc1)
        return block


# ---------------------------------------------------------------------------------------------
# methods


@dataclass(frozen=True)
class PetlMethod:
    attach: Callable[[nn.Module, PetlSettings], None]
    default_scale: float
    task_scale: dict[str, float]  # per-task scale from the method's paper/code
    task_xavier: dict[str, bool]
    default_dim: int = 8
    backbones: frozenset[str] = FAMILIES  # the backbone families it is built for


CONVPASS_BRANCHES: dict[str, Callable[[nn.Module, nn.Module, PetlSettings], PetlModule]] = {
    "vit": lambda model, block, settings: ConvpassBranch(
        model.embed_dim, settings, model.patch_embed.grid_size, model.num_prefix_tokens),
    "swin": lambda model, block, settings: SwinConvpassBranch(block.dim, settings),
}  # fmt: skip


def _convpass_branch(model: nn.Module, block: nn.Module, settings: PetlSettings) -> PetlModule:
    return CONVPASS_BRANCHES[family_of(model).name](model, block, settings)


def _attach_convpass(model: nn.Module, settings: PetlSettings) -> None:
    family = family_of(model)
    for i, block in enumerate(family.blocks(model)):
        family.set_block(model, i, PARALLEL_BLOCKS[family.name](
            block,
            _convpass_branch(model, block, settings),
            _convpass_branch(model, block, settings),
            normed_input=True,
        ))  # fmt: skip


def _attach_adapter(model: nn.Module, settings: PetlSettings) -> None:
    family = family_of(model)
    for i, block in enumerate(family.blocks(model)):
        adapter = BottleneckAdapter(family.block_width(model, block), settings)
        family.set_block(model, i, PARALLEL_BLOCKS[family.name](
            block, None, adapter, normed_input=False, branch_drop_path="none"))  # fmt: skip


def _attach_lora(model: nn.Module, settings: PetlSettings) -> None:
    for block in family_of(model).blocks(model):
        block.attn.qkv = LoRAQKV(block.attn.qkv, settings)


def _attach_repadapter(model: nn.Module, settings: PetlSettings) -> None:
    dim = model.embed_dim
    for i, block in enumerate(model.blocks):
        _check_foldable(block, dim)
        model.blocks[i] = RepAdapterBlock(
            block, RepAdapter(dim, settings), RepAdapter(dim, settings)
        )


def _check_foldable(block: nn.Module, dim: int) -> None:
    """RepAdapter must be followed by a Linear reading the residual width: attn.qkv, mlp.fc1."""
    for path in ("attn.qkv", "mlp.fc1"):
        try:
            layer = block.get_submodule(path)
        except AttributeError:
            layer = None
        if not isinstance(layer, nn.Linear) or layer.in_features != dim:
            found = "has no such layer" if layer is None else f"has a {type(layer).__name__}"
            raise UserError(
                f"repadapter folds into each block's {path}, which must be an nn.Linear of input "
                f"width {dim}; this backbone {found}: use convpass or adapter"
            )


# Convpass per-task (scale s, xavier_init), from the SLS/Convpass code (spec SLS.md).
_CONVPASS = {
    "cifar": (0.1, False), "caltech101": (1, False), "dtd": (0.01, True),
    "oxford_flowers102": (0.1, True), "oxford_iiit_pet": (1, True), "svhn": (100, True),
    "sun397": (0.1, False), "patch_camelyon": (10, False), "eurosat": (10, False),
    "resisc45": (10, False), "diabetic_retinopathy": (1, False), "clevr_count": (1, False),
    "clevr_dist": (0.1, True), "dmlab": (10, False), "kitti": (10, True),
    "dsprites_loc": (100, True), "dsprites_ori": (0.1, True), "smallnorb_azi": (100, True),
    "smallnorb_ele": (1, True),
}  # fmt: skip

# RepAdapter per-task scale s, from the official VTAB configs (hidden dim 8, groups 2; spec SLS.md).
_REPADAPTER_SCALE = {
    "caltech101": 5, "cifar": 0.1, "clevr_count": 0.5, "clevr_dist": 0.1,
    "diabetic_retinopathy": 0.1, "dmlab": 5, "dsprites_loc": 5, "dsprites_ori": 0.1, "dtd": 1,
    "eurosat": 1, "kitti": 5, "oxford_flowers102": 0.5, "oxford_iiit_pet": 0.1,
    "patch_camelyon": 1, "resisc45": 5, "smallnorb_azi": 10, "smallnorb_ele": 1, "sun397": 0.1,
    "svhn": 10,
}  # fmt: skip

PETL_METHODS: Registry[PetlMethod] = Registry("PETL method")
PETL_METHODS.register(
    "convpass",
    PetlMethod(
        _attach_convpass,
        default_scale=1.0,
        task_scale={t: float(s) for t, (s, _) in _CONVPASS.items()},
        task_xavier={t: x for t, (_, x) in _CONVPASS.items()},
    ),
)
PETL_METHODS.register("adapter", PetlMethod(_attach_adapter, 0.1, {}, {}), aliases=("adaptformer",))
PETL_METHODS.register("lora", PetlMethod(_attach_lora, 1.0, {}, {}))
PETL_METHODS.register(
    "repadapter",
    PetlMethod(
        _attach_repadapter,
        default_scale=1.0,  # the official module's default
        task_scale={t: float(s) for t, s in _REPADAPTER_SCALE.items()},
        task_xavier={},  # A is always xavier-uniform; xavier_init is Convpass's conv init
        backbones=frozenset({"vit"}),
    ),
)


# ---------------------------------------------------------------------------------------------
# SPLoRA (bench/models/splora.py): low-rank adapters on each block's Linears, pruned by `spa`


def _attach_splora(model: nn.Module, settings: PetlSettings) -> None:
    from bench.models.splora import attach_splora  # imports sp_adapters only when used

    attach_splora(model, settings)


PETL_METHODS.register(
    "splora", PetlMethod(_attach_splora, 1.0, {}, {}, backbones=frozenset({"vit"}))
)


def resolve_settings(
    method: str,
    task: str,
    dim: int | None = None,
    scale: float | None = None,
    xavier_init: bool | None = None,
    dropout: float = 0.1,
) -> PetlSettings:
    """Fill unset options from the method's per-task table (None means: the method's default)."""
    name = PETL_METHODS.canonical(method)
    spec = PETL_METHODS.get(name)
    return PetlSettings(
        method=name,
        dim=dim if dim is not None else spec.default_dim,
        scale=scale if scale is not None else spec.task_scale.get(task, spec.default_scale),
        xavier_init=xavier_init if xavier_init is not None else spec.task_xavier.get(task, False),
        dropout=dropout,
    )


def check_petl_backbone(method: str, family: str) -> None:
    """A one-line UserError where the PETL method is not built for the backbone family."""
    name = PETL_METHODS.canonical(method)
    supported = PETL_METHODS.get(name).backbones
    if family not in supported:
        instead = [m for m in PETL_METHODS.names() if family in PETL_METHODS.get(m).backbones]
        raise UserError(
            f"PETL {name} is not built for {family} backbones (it supports "
            f"{', '.join(sorted(supported))}); use PETL={' or '.join(instead)}"
        )


def attach_petl(model: nn.Module, settings: PetlSettings) -> nn.Module:
    """Attach the method's modules and freeze everything but PETL modules and the head."""
    check_petl_backbone(settings.method, family_of(model).name)
    PETL_METHODS.get(settings.method).attach(model, settings)
    freeze_backbone(model)
    return model


def is_task_parameter(model: nn.Module, name: str) -> bool:
    """True for parameters stored per task: inside a PetlModule or the classifier head."""
    if name.startswith("head."):
        return True
    module, inside_petl = model, False
    for part in name.split("."):
        if isinstance(module, PetlModule):
            if part in module.frozen_children:
                return False
            inside_petl = True
        module = getattr(module, part)
    return inside_petl


def freeze_backbone(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(is_task_parameter(model, name))


def task_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_parameters() if is_task_parameter(model, name)]


def merged_copy(model: nn.Module) -> nn.Module | None:
    """A copy with every mergeable module (a PETL module or adapter block with a `merged()`
    method: LoRA, SPLoRA, a RepAdapter block) replaced by its merged layer (as deployed), or None
    if the model has none. Merging changes speed, not eval-mode outputs."""
    if not any(_mergeable(m) for m in model.modules()):
        return None
    merged = copy.deepcopy(model)
    for module in list(merged.modules()):
        for name, child in module.named_children():
            if _mergeable(child):
                setattr(module, name, child.merged())
    return merged


def _mergeable(module: nn.Module) -> bool:
    return isinstance(module, (PetlModule, AdapterBlock)) and callable(
        getattr(module, "merged", None)
    )
