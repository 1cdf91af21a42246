"""Speed and size by value: a model against itself measures about 1x, a truncated model is faster
by about what its MACs say, and the MACs and parameter counts are the model's."""

import copy
from dataclasses import replace

import pytest
import torch

from bench.config import MeasureConfig
from bench.measure import compare_throughput, count_macs, parameter_counts
from bench.models.petl import attach_petl, resolve_settings
from bench.models.surgery import keep_first
from tests.conftest import tiny_vit

CPU = torch.device("cpu")
TIMING = MeasureConfig(batch_sizes=[8], warmup_iters=2, timed_iters=6, rounds=3, ratio_target=None)


@pytest.fixture(scope="module")
def deep_model():
    """12 blocks, so keeping 2 cuts most of the compute (patch embedding and head stay)."""
    return attach_petl(tiny_vit(depth=12), resolve_settings("convpass", "digits")).eval()


@pytest.mark.timing
def test_a_model_against_itself_measures_about_one(deep_model):
    out = compare_throughput(deep_model, deep_model, 16, CPU, TIMING)
    assert set(out) == {"throughput/bs8", "throughput_unpruned/bs8", "speedup/bs8",
                        "speedup_low/bs8", "speedup_high/bs8", "speedup_rounds/bs8"}  # fmt: skip
    assert 0.6 < out["speedup/bs8"] < 1.6
    assert out["speedup_rounds/bs8"] == 3


@pytest.mark.slow  # timing: out of the inner loop, where other jobs share the cores
def test_a_model_against_itself_has_an_interval_that_contains_one(deep_model):
    """The A/A measurement, adaptive: a 95 % interval misses 1 one time in 20 by design, so of
    three independent measurements at least two must contain it (fails ~0.7 % of the time)."""
    cfg = replace(TIMING, ratio_target=0.03, max_seconds=5)
    measured = [compare_throughput(deep_model, deep_model, 16, CPU, cfg) for _ in range(3)]
    contain = [m["speedup_low/bs8"] <= 1 <= m["speedup_high/bs8"] for m in measured]
    assert sum(contain) >= 2, measured
    for m in measured:
        assert m["speedup_rounds/bs8"] >= 3
        assert m["speedup_high/bs8"] / m["speedup_low/bs8"] < 1.3


@pytest.mark.timing
def test_a_truncated_model_is_faster_by_about_its_macs_ratio(deep_model):
    truncated = keep_first(copy.deepcopy(deep_model), 2)
    macs, macs_unpruned = count_macs(truncated, 16, CPU), count_macs(deep_model, 16, CPU)
    ratio = macs / macs_unpruned
    assert ratio < 0.35
    out = compare_throughput(deep_model, truncated, 16, CPU, TIMING)
    assert out["throughput/bs8"] > out["throughput_unpruned/bs8"]
    # speedup = candidate / reference: above 1, and not above what the MACs allow (with margin)
    assert 1.5 < out["speedup/bs8"] < 1.5 / ratio


def test_macs_and_parameters_are_the_models():
    model = tiny_vit(depth=1)
    d, hidden, tokens = 32, 128, 17  # 4x4 patches of 4 px + CLS
    block_linear = tokens * (d * 3 * d + d * d + 2 * d * hidden)
    attention = 2 * tokens * tokens * d  # q @ k^T and attn @ v
    patch_embed = 16 * (3 * 4 * 4) * d
    head = d * 10
    assert count_macs(model, 16, CPU) == block_linear + attention + patch_embed + head
    counts = parameter_counts(attach_petl(model, resolve_settings("lora", "digits")))
    lora = 4 * d * 8  # q and v, down and up, rank 8
    assert counts["params/stored"] == counts["params/trainable"] == lora + d * 10 + 10
    assert counts["params/stored_no_head"] == lora


def test_how_long_the_timer_works_is_not_part_of_a_sweep_cell_but_what_it_times_is():
    from bench.run import cell_key
    from tests.conftest import tiny_config

    def key(**measure):
        config = tiny_config()
        config.measure = replace(config.measure, **measure)
        return cell_key(config, "none", 0, "weights")

    assert key(ratio_target=0.01, max_seconds=5) == key(ratio_target=None) == key()
    assert key(rounds=5) != key() and key(timed_iters=7) != key() and key(dtype="bfloat16") != key()
