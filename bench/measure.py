"""Throughput (timm benchmark.py's way), speedup against the unpruned model, MACs, parameters.

On CPU the absolute images/s mean little; the ratio to the unpruned PETL model, measured in the
same process with the two models interleaved, does. Every setting that changes the number is
returned with it so it can be logged.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bench import record as R
from bench.config import MeasureConfig
from bench.interleaved import Rounds, interleave
from bench.models.family import num_blocks
from bench.models.petl import is_task_parameter, merged_copy, task_parameter_names


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def compute_tags(device: torch.device) -> dict[str, str]:
    """What a run's numbers depend on beyond its config: the device, the CPU, the thread counts
    of torch (training, features) and of OpenMP (t-SNE, scikit-learn), and the GPUs the process
    sees (a sweep worker's own GPU, `bench.gpus`)."""
    from threadpoolctl import threadpool_info

    openmp = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "openmp"]
    return {
        "device": device_name(device),
        "device.type": device.type,
        "cpu.model": cpu_model(),
        "threads.torch": str(torch.get_num_threads()),
        "threads.torch_interop": str(torch.get_num_interop_threads()),
        "threads.openmp": str(max(openmp)) if openmp else "none loaded",
        R.CUDA_VISIBLE_DEVICES: os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _dtype_context(device: torch.device, dtype: str):
    if dtype == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if dtype != "float32":
        raise ValueError(f"unknown measure dtype {dtype!r}; expected float32 or bfloat16")
    return torch.autocast(device.type, enabled=False)


@torch.inference_mode()
def throughput(
    model: nn.Module,
    batch: int,
    image_size: int,
    device: torch.device,
    warmup: int,
    iters: int,
    dtype: str = "float32",
) -> float:
    """Images per second of `model` in eval mode on random input."""
    model.eval()
    x = torch.randn(batch, 3, image_size, image_size, device=device)
    with _dtype_context(device, dtype):
        for _ in range(warmup):
            model(x)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        _sync(device)
    return batch * iters / (time.perf_counter() - start)


def compare_throughput(
    reference: nn.Module,
    candidate: nn.Module,
    image_size: int,
    device: torch.device,
    cfg: MeasureConfig,
) -> dict[str, float]:
    """Throughput of both models and the candidate's speedup, interleaved round by round, for
    each batch size: at least `cfg.rounds` rounds, more until the speedup's 95 % interval is
    within `cfg.ratio_target` or `cfg.max_seconds` have passed (`bench.interleaved`).

    Returns `throughput/bs{B}`, `throughput_unpruned/bs{B}` (medians over rounds),
    `speedup/bs{B}` (median of the per-round ratios), its interval `speedup_low/bs{B}` and
    `speedup_high/bs{B}` (none below 2 rounds), `speedup_rounds/bs{B}` and, where a target was
    set, `speedup_target_met/bs{B}` (1 or 0).
    """
    reference, candidate = _maybe_compile(reference, cfg), _maybe_compile(candidate, cfg)
    out: dict[str, float] = {}
    for batch in cfg.batch_sizes:
        args = (batch, image_size, device, cfg.warmup_iters, cfg.timed_iters, cfg.dtype)
        time_round = _round_timer(reference, candidate, args)
        rounds = interleave(time_round, cfg.rounds, cfg.ratio_target, cfg.max_seconds)
        out.update(rounds_metrics(batch, rounds, cfg.ratio_target is not None))
    return out


def _round_timer(reference: nn.Module, candidate: nn.Module, args: tuple):
    """One interleaved round: the reference's throughput, then the candidate's."""

    def time_round() -> tuple[float, float]:
        return throughput(reference, *args), throughput(candidate, *args)

    return time_round


def rounds_metrics(batch: int, rounds: Rounds, targeted: bool) -> dict[str, float]:
    out = {
        R.throughput(batch): statistics.median(rounds.candidate),
        R.throughput_unpruned(batch): statistics.median(rounds.reference),
        R.speedup(batch): statistics.median(rounds.ratios),
        R.speedup_rounds(batch): len(rounds.ratios),
    }
    if rounds.interval is not None:
        out[R.speedup_low(batch)] = rounds.interval.low
        out[R.speedup_high(batch)] = rounds.interval.high
    if targeted:
        out[R.speedup_target_met(batch)] = float(rounds.target_met)
    return out


def _maybe_compile(model: nn.Module, cfg: MeasureConfig) -> nn.Module:
    return torch.compile(model) if cfg.compile else model


def measure_settings(device: torch.device, cfg: MeasureConfig) -> dict[str, str]:
    """Everything that changes a throughput number, for the run's params/tags."""
    return {
        "measure.device_name": device_name(device),
        "measure.device": device.type,
        "measure.dtype": cfg.dtype,
        "measure.threads": str(torch.get_num_threads()),
        "measure.compile": str(cfg.compile),
        "measure.torch": torch.__version__,
    }


@torch.inference_mode()
def count_macs(model: nn.Module, image_size: int, device: torch.device) -> int:
    """Multiply-accumulates of one 1-image forward (FLOPs / 2 by torch's flop counter).

    Attention runs on the math backend here: the flop counter does not see the fused CPU
    attention kernel, so the attention matmuls would be counted on GPU and missed on CPU."""
    model.eval()
    x = torch.randn(1, 3, image_size, image_size, device=device)
    counter = FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        model(x)
    return counter.get_total_flops() // 2


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """params/total of the deployed model, params/trainable, and what is stored per task."""
    names = task_parameter_names(model)
    stored = sum(model.get_parameter(n).numel() for n in names)
    head = sum(model.get_parameter(n).numel() for n in names if n.startswith("head."))
    return {
        R.PARAMS_TOTAL: sum(p.numel() for p in model.parameters()),
        R.PARAMS_TRAINABLE: sum(p.numel() for p in model.parameters() if p.requires_grad),
        R.PARAMS_STORED: stored,
        R.PARAMS_STORED_NO_HEAD: stored - head,
    }


def backbone_bytes(model: nn.Module) -> int:
    """Size in bytes of `model`'s backbone tensors (every parameter but the task ones) as one
    safetensors file. Of a merged model (adapters folded into its qkv/fc1, `merged_copy`) this is
    what each task would store if it kept its merged backbone rather than rebuilding it from its
    adapters on the shared one: the `bytes/merged_backbone` beside `bytes/stored`."""
    tensors = {
        name: p.detach().cpu().contiguous()
        for name, p in model.named_parameters()
        if not is_task_parameter(model, name)
    }
    return len(save(tensors))


def efficiency(unpruned: nn.Module, pruned: nn.Module, image_size: int, device: torch.device,
               cfg: MeasureConfig) -> dict[str, float]:  # fmt: skip
    """A pruned model against its unpruned PETL model: throughput (interleaved; merged too where
    adapters merge), MACs, parameter counts, blocks kept, and how long measuring took."""
    start = time.perf_counter()
    metrics: dict[str, float] = compare_throughput(unpruned, pruned, image_size, device, cfg)
    merged_pruned, merged_unpruned = merged_copy(pruned), merged_copy(unpruned)
    if merged_pruned is not None:
        merged = compare_throughput(
            merged_unpruned or unpruned, merged_pruned, image_size, device, cfg
        )
        metrics.update({R.merged(k): v for k, v in merged.items()})
        metrics[R.BYTES_MERGED_BACKBONE] = backbone_bytes(merged_pruned)
    metrics[R.MACS] = count_macs(pruned, image_size, device)
    metrics[R.MACS_UNPRUNED] = count_macs(unpruned, image_size, device)
    metrics.update(parameter_counts(pruned))
    metrics[R.PARAMS_TOTAL_UNPRUNED] = parameter_counts(unpruned)[R.PARAMS_TOTAL]
    metrics[R.BLOCKS_KEPT] = num_blocks(pruned)
    metrics[R.MEASURE_SECONDS] = time.perf_counter() - start
    return metrics
