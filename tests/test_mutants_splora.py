"""SPLoRA layers by value where mutation testing found no test: what `from_module` copies (bias,
dtype, the default rank), that the merged weight is computed once per change in inference, and
that a merged or sliced layer keeps the pretrained weight frozen."""

import torch
from torch import nn

from bench.models.splora import SPLoRAProjection


def _linear(bias: bool = True, dtype=torch.float32) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(6, 4, bias=bias, dtype=dtype)


def _projection(**kwargs) -> SPLoRAProjection:
    layer = SPLoRAProjection.from_module(_linear(**kwargs), rank=2)
    with torch.no_grad():
        layer.adapter.cols.normal_()  # an update large enough to see
    return layer


def test_from_module_copies_the_linear_with_its_bias_and_dtype():
    linear = _linear(bias=True, dtype=torch.float64)
    layer = SPLoRAProjection.from_module(linear, rank=2)
    assert layer.weight.dtype == torch.float64 and layer.bias.dtype == torch.float64
    torch.testing.assert_close(layer.weight, linear.weight)
    torch.testing.assert_close(layer.bias, linear.bias)
    assert SPLoRAProjection.from_module(_linear(bias=False), rank=2).bias is None


def test_from_module_is_of_rank_8_by_default():
    assert SPLoRAProjection.from_module(_linear()).adapter.rows.shape[-2] == 8


def test_inference_reuses_the_merged_weight_until_a_tensor_changes():
    layer, x = _projection().eval(), torch.randn(3, 6)
    with torch.no_grad():
        first = layer(x)
        cached = layer._merged
        torch.testing.assert_close(layer(x), first)
        assert layer._merged is cached
        layer.adapter.cols.mul_(2.0)
        changed = layer(x)
    assert layer._merged is not cached
    torch.testing.assert_close(changed, nn.functional.linear(x, layer.adapted_weight, layer.bias))


def test_merged_is_a_frozen_linear_with_the_adapted_weight():
    layer = _projection()
    merged = layer.merged()
    assert not merged.weight.requires_grad and not merged.bias.requires_grad
    torch.testing.assert_close(merged.weight, layer.adapted_weight.detach())
    torch.testing.assert_close(merged.bias, layer.bias.detach())


def test_keep_slices_the_weight_and_keeps_it_frozen():
    layer = _projection()
    weight = layer.weight.detach().clone()
    keep_in = torch.tensor([True, False, True, True, False, True])
    keep_out = torch.tensor([True, True, False, True])
    layer.keep(keep_in, keep_out)
    assert not layer.weight.requires_grad
    assert layer.bias.requires_grad and layer.adapter.cols.requires_grad
    torch.testing.assert_close(layer.weight, weight[keep_out][:, keep_in])
    assert (layer.in_features, layer.out_features) == (4, 3)
