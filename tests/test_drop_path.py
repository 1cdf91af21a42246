"""Drop-path on parallel PETL branches, as the methods' own code does it: Convpass drops its
branch with a mask of its own (independent of the attention's), AdaptFormer never drops its
adapter."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from bench.models.petl import ParallelBranchBlock

MAIN, BRANCH = 1.0, 100.0  # what the attention and the branch add, told apart by size


class Constant(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, h, **kwargs):
        return torch.full_like(h, self.value)


def _kept(branch_drop_path: str) -> set[tuple[bool, bool]]:
    """Per sample of a training batch: (attention kept, branch kept)."""
    torch.manual_seed(0)
    block = Block(dim=4, num_heads=1, drop_path=0.5)
    block.attn = Constant(MAIN)
    wrapped = ParallelBranchBlock(block, Constant(BRANCH), None, normed_input=True,
                                  branch_drop_path=branch_drop_path).train()  # fmt: skip
    out = wrapped.attn_residual(torch.zeros(400, 3, 4))[:, 0, 0]  # survivors are scaled by 2
    branch_kept = out >= BRANCH
    main_kept = (
        (out - branch_kept * 2 * BRANCH) > 0
        if branch_drop_path == "separate"
        else ((out - branch_kept * BRANCH) > 0)
    )
    return set(zip(main_kept.tolist(), branch_kept.tolist(), strict=True))


def test_convpass_drops_the_attention_and_its_branch_independently():
    assert _kept("separate") == {(True, True), (True, False), (False, True), (False, False)}


def test_the_adaptformer_adapter_is_never_dropped():
    assert _kept("none") == {(True, True), (False, True)}


def test_in_eval_mode_nothing_is_dropped():
    block = Block(dim=4, num_heads=1, drop_path=0.5)
    block.attn = Constant(MAIN)
    wrapped = ParallelBranchBlock(block, Constant(BRANCH), None, normed_input=True).eval()
    out = wrapped.attn_residual(torch.zeros(8, 3, 4))
    assert torch.equal(out, torch.full_like(out, MAIN + BRANCH))
