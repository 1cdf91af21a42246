"""PETL modules on a frozen timm ViT: Convpass, an AdaptFormer-style adapter, LoRA on q and v,
SPLoRA on every block Linear (its own module, bench/models/splora.py).

A method is a small settings record plus a function that attaches its modules; it registers
under its name in `PETL_METHODS`. Every PETL module subclasses `PetlModule`: its parameters, with
the classifier head's, are what trains and what is stored per task.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from bench.registry import Registry


class PetlModule(nn.Module):
    """Base class: parameters inside PetlModules train and are stored per task, except those of
    the frozen backbone layers (or its own frozen backbone parameters) it names in
    `frozen_children`."""

    frozen_children: tuple[str, ...] = ()


@dataclass(frozen=True)
class PetlSettings:
    """A PETL method's settings after per-task defaults are filled in (logged with every run)."""

    method: str
    dim: int = 8  # bottleneck width / LoRA rank
    scale: float = 1.0
    xavier_init: bool = False
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# modules


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ConvpassBranch(PetlModule):
    """Linear(D->r) -> QuickGELU -> 3x3 conv over the patch grid (CLS as a 1x1 image) ->
    QuickGELU -> Dropout -> Linear(r->D). Up-projection zero, so the branch starts at zero."""

    def __init__(self, dim: int, settings: PetlSettings, grid: tuple[int, int], prefix_tokens: int):
        super().__init__()
        r = settings.dim
        self.grid, self.prefix_tokens, self.scale = grid, prefix_tokens, settings.scale
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
                self.conv.weight[:, :, 1, 1] += torch.eye(r)
        nn.init.zeros_(self.conv.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _ = x.shape
        h = self.act(self.down(x))
        p, (gh, gw) = self.prefix_tokens, self.grid
        patches = h[:, p:].reshape(b, gh, gw, -1).permute(0, 3, 1, 2)
        patches = self.conv(patches).permute(0, 2, 3, 1).reshape(b, gh * gw, -1)
        prefix = self.conv(h[:, :p].reshape(b * p, -1, 1, 1)).reshape(b, p, -1)
        h = self.dropout(self.act(torch.cat([prefix, patches], dim=1)))
        return self.up(h) * self.scale


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


# ---------------------------------------------------------------------------------------------
# blocks with parallel branches


class ParallelBranchBlock(nn.Module):
    """A timm Block plus optional parallel branches on its attention and MLP residuals.

    `x = x + attn(LN1 x) + a(in_a)`, `x = x + mlp(LN2 x) + m(in_m)`, where the branch input is the
    normed input (Convpass) or the residual stream itself (AdaptFormer). Drop-path covers both.
    """

    def __init__(self, block: nn.Module, attn_branch=None, mlp_branch=None, normed_input=True):
        super().__init__()
        self.block, self.attn_branch, self.mlp_branch = block, attn_branch, mlp_branch
        self.normed_input = normed_input

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        return self.mlp_residual(self.attn_residual(x, attn_mask, is_causal))

    def attn_residual(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False):
        """The residual stream after the attention branch (and its parallel PETL branch)."""
        b = self.block
        h = b.norm1(x)
        out = b.ls1(b.attn(h, attn_mask=attn_mask, is_causal=is_causal))
        if self.attn_branch is not None:
            out = out + self.attn_branch(h if self.normed_input else x)
        return x + b.drop_path1(out)

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual stream after the MLP branch (and its parallel PETL branch)."""
        b = self.block
        h = b.norm2(x)
        out = b.ls2(b.mlp(h))
        if self.mlp_branch is not None:
            out = out + self.mlp_branch(h if self.normed_input else x)
        return x + b.drop_path2(out)


# ---------------------------------------------------------------------------------------------
# methods


@dataclass(frozen=True)
class PetlMethod:
    attach: Callable[[VisionTransformer, PetlSettings], None]
    default_scale: float
    task_scale: dict[str, float]  # per-task scale from the method's paper/code
    task_xavier: dict[str, bool]
    default_dim: int = 8


def _attach_convpass(model: VisionTransformer, settings: PetlSettings) -> None:
    dim, grid, prefix = model.embed_dim, model.patch_embed.grid_size, model.num_prefix_tokens
    for i, block in enumerate(model.blocks):
        model.blocks[i] = ParallelBranchBlock(
            block,
            ConvpassBranch(dim, settings, grid, prefix),
            ConvpassBranch(dim, settings, grid, prefix),
            normed_input=True,
        )


def _attach_adapter(model: VisionTransformer, settings: PetlSettings) -> None:
    for i, block in enumerate(model.blocks):
        model.blocks[i] = ParallelBranchBlock(
            block, None, BottleneckAdapter(model.embed_dim, settings), normed_input=False
        )


def _attach_lora(model: VisionTransformer, settings: PetlSettings) -> None:
    for block in model.blocks:
        block.attn.qkv = LoRAQKV(block.attn.qkv, settings)


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


# ---------------------------------------------------------------------------------------------
# SPLoRA (bench/models/splora.py): low-rank adapters on each block's Linears, pruned by `spa`


def _attach_splora(model: VisionTransformer, settings: PetlSettings) -> None:
    from bench.models.splora import attach_splora  # imports sp_adapters only when used

    attach_splora(model, settings)


PETL_METHODS.register("splora", PetlMethod(_attach_splora, 1.0, {}, {}))


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


def attach_petl(model: VisionTransformer, settings: PetlSettings) -> VisionTransformer:
    """Attach the method's modules and freeze everything but PETL modules and the head."""
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
    """A copy with every mergeable PETL module (one with a `merged()` method: LoRA, SPLoRA)
    replaced by its merged layer (as deployed), or None if the model has none. Merging changes
    speed, not outputs."""
    if not any(_mergeable(m) for m in model.modules()):
        return None
    merged = copy.deepcopy(model)
    for module in list(merged.modules()):
        for name, child in module.named_children():
            if _mergeable(child):
                setattr(module, name, child.merged())
    return merged


def _mergeable(module: nn.Module) -> bool:
    return isinstance(module, PetlModule) and callable(getattr(module, "merged", None))
