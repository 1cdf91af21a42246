"""PETL modules by value where mutation testing found no test: LoRA's scale multiplies its
update, merged or not, and a merged qkv keeps (or lacks) the bias of the original; Swin's blocks
and Convpass_swin by value; the down-projections' init; each method's branch drop-path; masks
passed through; merging a RepAdapter block copies it."""

import math

import pytest
import torch
from torch import nn

from bench.errors import UserError
from bench.models.petl import (
    BottleneckAdapter,
    ConvpassBranch,
    LoRAQKV,
    ParallelBranchBlock,
    SwinConvpassBranch,
    SwinParallelBranchBlock,
    _check_foldable,
    attach_petl,
    resolve_settings,
)
from tests.conftest import petl_model, tiny_swin, tiny_vit


def _lora(bias: bool = True, scale: float = 2.0) -> LoRAQKV:
    torch.manual_seed(0)
    lora = LoRAQKV(
        nn.Linear(8, 24, bias=bias), resolve_settings("lora", "digits", dim=2, scale=scale)
    )
    with torch.no_grad():
        lora.q_up.weight.normal_()
        lora.v_up.weight.normal_()
    return lora


def test_lora_adds_scale_times_its_update_to_q_and_v():
    lora, x = _lora(scale=2.0), torch.randn(3, 8)
    dq = 2.0 * lora.q_up(lora.q_down(x))
    dv = 2.0 * lora.v_up(lora.v_down(x))
    expected = lora.qkv(x) + torch.cat([dq, torch.zeros_like(dq), dv], dim=-1)
    torch.testing.assert_close(lora(x), expected)
    torch.testing.assert_close(lora.merged()(x), expected)


def test_a_merged_qkv_has_a_bias_only_where_the_original_had_one():
    assert _lora(bias=True).merged().bias is not None
    merged = _lora(bias=False).merged()
    assert merged.bias is None
    x = torch.randn(3, 8)
    torch.testing.assert_close(merged(x), _lora(bias=False)(x))


# --- found by `make mutate` on bench/models/petl.py --------------------------------------------


@pytest.mark.parametrize("petl", ["convpass", "adapter"])
def test_a_swin_block_adds_its_branches_to_the_blocks_own_residuals(petl):
    """`x1 = x + W-MSA(LN1 x) + a(in)`, `x2 = x1 + mlp(LN2 x1) + m(in)`: Convpass reads the
    normed input on both residuals, AdaptFormer's adapter the stream itself on the MLP's only."""
    wrapped = petl_model(petl, backbone=tiny_swin).layers[0].blocks[1]  # shifted windows
    assert isinstance(wrapped, SwinParallelBranchBlock)
    b, x = wrapped.block, torch.randn(2, 8, 8, 16)
    normed = petl == "convpass"
    h1 = b.norm1(x)
    x1 = x + b._attn(h1) + (wrapped.attn_branch(h1) if normed else 0.0)
    h2 = b.norm2(x1)
    x2 = x1 + b.mlp(h2) + wrapped.mlp_branch(h2 if normed else x1)
    assert (wrapped.attn_branch is None) == (petl == "adapter")
    torch.testing.assert_close(wrapped(x), x2)


def test_swin_convpass_gates_the_conv_input_and_scales_its_output():
    """The authors' Convpass_swin: up(act(conv(h * sigmoid(gate(mean h))))) * scale."""
    torch.manual_seed(0)
    branch = SwinConvpassBranch(16, resolve_settings("convpass", "digits", dim=8, scale=2.0))
    with torch.no_grad():
        for p in branch.parameters():
            p.normal_(0.0, 0.3)
    branch.eval()
    x = torch.randn(2, 4, 4, 16)
    h = branch.act(branch.down(x)).permute(0, 3, 1, 2)
    gate = branch.excite(branch.act(branch.squeeze(h.mean(dim=(2, 3), keepdim=True))))
    conv = branch.conv(h * torch.sigmoid(gate)).permute(0, 2, 3, 1)
    torch.testing.assert_close(branch(x), branch.up(branch.act(conv)) * 2.0)


@pytest.mark.parametrize(("r", "squeezed"), [(8, 2), (4, 1), (2, 1)])
def test_swin_convpass_gate_squeezes_to_a_quarter_at_least_one(r, squeezed):
    branch = SwinConvpassBranch(16, resolve_settings("convpass", "digits", dim=r))
    assert (branch.squeeze.in_channels, branch.squeeze.out_channels) == (r, squeezed)
    assert (branch.excite.in_channels, branch.excite.out_channels) == (squeezed, r)


def test_down_projections_start_as_a_linear_layers_default_uniform():
    """AdaptFormer's and LoRA's down-projections: kaiming-uniform with a = sqrt(5), i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as nn.Linear and the reference implementations."""
    torch.manual_seed(0)
    settings = resolve_settings("adapter", "digits", dim=8)
    lora = LoRAQKV(nn.Linear(64, 192), resolve_settings("lora", "digits", dim=8))
    for weight in (BottleneckAdapter(64, settings).down.weight, lora.q_down.weight,
                   lora.v_down.weight):  # fmt: skip
        bound = 1 / math.sqrt(weight.shape[1])
        assert 0.95 * bound < weight.abs().max() <= bound


def test_each_method_drops_its_branch_as_its_paper_does():
    """Convpass draws the branch's own drop-path mask; AdaptFormer's adapter is never dropped."""
    for petl, expected in (("convpass", "separate"), ("adapter", "none")):
        for family in (tiny_vit, tiny_swin):
            blocks = [m for m in petl_model(petl, backbone=family).modules()
                      if isinstance(m, ParallelBranchBlock)]  # fmt: skip
            assert blocks and {b.branch_drop_path for b in blocks} == {expected}


@pytest.mark.parametrize("petl", ["repadapter", "convpass", "adapter"])
def test_a_wrapped_vit_block_passes_the_attention_mask_and_causality_on(petl):
    """With its PETL modules at their zero start, a wrapped block is the timm Block, masks
    included: attention sees the same attn_mask and is_causal."""
    model = attach_petl(tiny_vit(), resolve_settings(petl, "digits")).eval()
    wrapped, x = model.blocks[0], torch.randn(2, 17, 32)
    mask = torch.zeros(17, 17).masked_fill(torch.rand(17, 17) < 0.3, float("-inf"))
    mask.fill_diagonal_(0.0)
    for kwargs in ({"attn_mask": mask}, {"is_causal": True}):
        expected = wrapped.block(x, **kwargs)
        assert not torch.allclose(expected, wrapped.block(x))
        torch.testing.assert_close(wrapped(x, **kwargs), expected)


def test_merging_a_repadapter_block_leaves_the_block_it_came_from_as_it_was():
    block = petl_model("repadapter").blocks[0]
    qkv, fc1, x = block.block.attn.qkv, block.block.mlp.fc1, torch.randn(2, 17, 32)
    before = block(x)
    merged = block.merged()
    assert block.block.attn.qkv is qkv and block.block.mlp.fc1 is fc1
    torch.testing.assert_close(block(x), before)
    torch.testing.assert_close(merged(x), before)


def test_repadapter_names_a_missing_layer_it_cannot_fold_into():
    block = tiny_vit().blocks[0]
    block.mlp = nn.Identity()
    with pytest.raises(UserError, match=r"mlp\.fc1, .* this backbone has no such layer"):
        _check_foldable(block, 32)


def test_vit_convpass_convolves_the_patch_grid_and_the_cls_alone_and_scales_its_output():
    """up(drop(act(conv(act(down x))))) * scale, the patches as a (gh, gw) image and each
    prefix token as a 1x1 image."""
    torch.manual_seed(0)
    settings = resolve_settings("convpass", "digits", dim=4, scale=2.0, dropout=0.0)
    branch = ConvpassBranch(8, settings, grid=(2, 3), prefix_tokens=1)
    with torch.no_grad():
        for p in branch.parameters():
            p.normal_(0.0, 0.3)
    x = torch.randn(2, 7, 8)
    h = branch.act(branch.down(x))
    grid = branch.conv(h[:, 1:].reshape(2, 2, 3, 4).permute(0, 3, 1, 2))
    patches = grid.permute(0, 2, 3, 1).reshape(2, 6, 4)
    cls = nn.functional.conv2d(h[:, :1].reshape(2, 4, 1, 1), branch.conv.weight[:, :, 1:2, 1:2],
                               branch.conv.bias).reshape(2, 1, 4)  # fmt: skip
    expected = branch.up(branch.act(torch.cat([cls, patches], dim=1))) * 2.0
    torch.testing.assert_close(branch(x), expected)


def test_convpass_conv_starts_xavier_uniform_or_as_the_identity_at_its_centre_tap():
    torch.manual_seed(0)
    xavier = ConvpassBranch(8, resolve_settings("convpass", "digits", dim=4, xavier_init=True),
                            grid=(2, 2), prefix_tokens=1).conv.weight  # fmt: skip
    bound = math.sqrt(6 / (4 * 9 + 4 * 9))
    assert 0.9 * bound < xavier.abs().max() <= bound
    identity = ConvpassBranch(8, resolve_settings("convpass", "digits", dim=4, xavier_init=False),
                              grid=(2, 2), prefix_tokens=1).conv.weight  # fmt: skip
    expected = torch.zeros(4, 4, 3, 3)
    expected[:, :, 1, 1] = torch.eye(4)
    assert torch.equal(identity, expected)


def test_settings_given_override_the_tasks_table_and_unlisted_tasks_take_the_defaults():
    listed = resolve_settings("convpass", "dtd")  # the table: scale 0.01, xavier
    assert (listed.scale, listed.xavier_init, listed.dropout) == (0.01, True, 0.1)
    given = resolve_settings("convpass", "dtd", scale=3.0, xavier_init=False, dropout=0.3)
    assert (given.scale, given.xavier_init, given.dropout) == (3.0, False, 0.3)
    unlisted = resolve_settings("convpass", "digits")
    assert unlisted.scale == 1.0 and unlisted.xavier_init is False
    assert resolve_settings("convpass", "digits", xavier_init=True).xavier_init is True


def test_repadapter_names_the_layer_it_found_instead_of_a_linear():
    block = tiny_vit().blocks[0]
    block.attn.qkv = nn.Identity()
    with pytest.raises(UserError, match=r"attn\.qkv, .* this backbone has a Identity: use"):
        _check_foldable(block, 32)


@pytest.mark.parametrize("normed_input", [True, False])
def test_a_vit_attention_branch_reads_the_normed_input_or_the_stream(normed_input):
    """`attn_residual(x)` on its own (as block_benefit calls it): not causal, and the branch
    reads LN1 x (Convpass) or x itself."""
    block = tiny_vit().blocks[0].eval()
    branch = nn.Linear(32, 32)
    wrapped = ParallelBranchBlock(block, branch, None, normed_input=normed_input).eval()
    x = torch.randn(2, 17, 32)
    h = block.norm1(x)
    expected = x + block.attn(h) + branch(h if normed_input else x)
    torch.testing.assert_close(wrapped.attn_residual(x), expected)
