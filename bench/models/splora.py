"""SPLoRA, the PETL method `splora`: Structured Pruning Low-rank Adapters (Hedegaard et al.,
"Structured Pruning Adapters", library `structured-pruning-adapters`, import `sp_adapters`).

Each block's qkv, proj, fc1 and fc2 become `SPLoRAProjection`s (the library's `SPLoRALinear`):
the frozen pretrained weight W, a trainable bias and a trainable low-rank update cols @ rows of
rank `petl.dim`, initialised as the library does (rows Kaiming-uniform, cols uniform in
±1e-4, so the model starts next to the backbone). Never the whole model: the head would freeze.
It is trained in the transfer like every PETL method; `spa` then prunes its channels by the
trained adapted weight W + cols @ rows, as in the paper, where SPLoRA *is* the adapter.

The biases and adapters are task parameters (stored per task); W is the shared backbone.
In inference (eval, no grad) a layer runs one Linear with its merged weight, computed once and
reused while its tensors are unchanged; `merged()` gives that as a plain Linear (deployment).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sp_adapters import SPLoRA, SPLoRALinear
from sp_adapters import splora as splora_lib
from sp_adapters.utils import copy_linear_params_
from torch import nn

from bench.models.petl_base import PetlModule, PetlSettings

LAYERS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")  # the adapted Linears of a block
INIT_RANGE = 1e-4  # the library's default init of the adapter columns


class SPLoRAProjection(SPLoRALinear, PetlModule):
    """The library's SPLoRALinear, marked so its weight is frozen backbone and its bias and
    adapter are task parameters (bench.models.petl.is_task_parameter), and mergeable."""

    frozen_children = ("weight",)
    _merged: tuple[tuple, torch.Tensor] | None = None  # inference cache: (tensor versions, W')

    @classmethod
    def from_module(
        cls, module: nn.Linear, rank: int | float = 8, init_range: float = INIT_RANGE
    ) -> SPLoRAProjection:
        layer = cls(module.in_features, module.out_features, module.bias is not None, rank,
                    init_range, device=module.weight.device, dtype=module.weight.dtype)  # fmt: skip
        copy_linear_params_(module, layer)
        return layer.to(module.weight.device)  # the library makes the adapter on the CPU

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """Training and gradient passes: the library's forward. Inference (eval, no grad): one
        Linear with the merged weight W + cols @ rows, computed once and reused while the
        tensors are unchanged; the same numbers as the library's eval forward."""
        if self.training or torch.is_grad_enabled():
            return super().forward(input)
        tensors = (self.weight, self.adapter.rows, self.adapter.cols)
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        if self._merged is None or self._merged[0] != key:
            self._merged = (key, self.adapted_weight)
        return F.linear(input, self._merged[1], self.bias)

    def merged(self) -> nn.Linear:
        """W + cols @ rows as one plain Linear (the library's `to_module`), frozen."""
        linear = self.to_module()
        linear.weight = nn.Parameter(linear.weight.detach().clone(), requires_grad=False)
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return linear

    def keep(self, in_mask: torch.Tensor | None, out_mask: torch.Tensor | None) -> None:
        """Slice in place to the kept input/output features: weight from the frozen weight, the
        adapter and bias through the library's masked `named_parameters`."""
        device = self.weight.device
        in_mask = None if in_mask is None else in_mask.to(device)
        out_mask = None if out_mask is None else out_mask.to(device)
        masked = dict(
            splora_lib.named_parameters(
                self, adapter_weights_only=True, in_features_mask=in_mask,
                out_features_mask=out_mask,
            )
        )  # fmt: skip
        weight = self.weight.data
        if out_mask is not None:
            weight = weight[out_mask]
        if in_mask is not None:
            weight = weight[:, in_mask]
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        for name, value in masked.items():
            owner, _, leaf = name.rpartition(".")
            module = self.get_submodule(owner) if owner else self
            setattr(module, leaf, nn.Parameter(value.detach().clone()))
        self.out_features, self.in_features = self.weight.shape
        self.adapter.out_features, self.adapter.in_features = self.weight.shape


def attach_splora(model: nn.Module, settings: PetlSettings) -> None:
    """SPLoRA (through `sp_adapters.SPLoRA`) on each block's qkv, proj, fc1 and fc2 only, of
    rank `settings.dim`."""
    for block in model.blocks:
        for path in LAYERS:
            parent, _, leaf = path.rpartition(".")
            owner = block.get_submodule(parent)
            layer = SPLoRA(
                getattr(owner, leaf), rank=settings.dim, init_range=INIT_RANGE, inplace=True,
                replacements=[(nn.Linear, SPLoRAProjection)],
            )  # fmt: skip
            if not isinstance(layer, SPLoRAProjection):
                raise RuntimeError(f"sp_adapters did not adapt {path}: {type(layer).__name__}")
            setattr(owner, leaf, layer)


def splora_layers(block: nn.Module) -> dict[str, SPLoRAProjection] | None:
    """A timm block's SPLoRA layers by path, or None when the block is not SPLoRA-adapted."""
    layers = {path: block.get_submodule(path) for path in LAYERS}
    if not all(isinstance(layer, SPLoRAProjection) for layer in layers.values()):
        return None
    return layers
