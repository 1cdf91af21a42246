"""PETL modules by value where mutation testing found no test: LoRA's scale multiplies its
update, merged or not, and a merged qkv keeps (or lacks) the bias of the original."""

import torch
from torch import nn

from bench.models.petl import LoRAQKV, resolve_settings


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
