"""bench.measure by value where mutation testing found no test: what `efficiency` logs (with the
timer stood in for), the device and thread tags, and the CPU's name."""

import copy
import warnings
from types import SimpleNamespace

import pytest
import torch

import bench.measure
from bench import record as R
from bench.config import MeasureConfig
from bench.measure import (
    backbone_bytes,
    compute_tags,
    count_macs,
    cpu_model,
    device_name,
    efficiency,
    measure_settings,
    parameter_counts,
)
from bench.models.petl import LoRAQKV, attach_petl, resolve_settings
from bench.models.surgery import keep_first
from tests.conftest import tiny_vit

CPU = torch.device("cpu")
CFG = MeasureConfig(batch_sizes=[1], warmup_iters=0, timed_iters=1, rounds=1, ratio_target=None)


def test_efficiency_times_pruned_against_unpruned_merged_too_and_counts_both(monkeypatch):
    timed = []

    def compare(reference, candidate, image_size, device, cfg):
        timed.append((reference, candidate, image_size, device, cfg))
        return {"speedup/bs1": 2.0 + len(timed)}

    monkeypatch.setattr(bench.measure, "compare_throughput", compare)
    unpruned = attach_petl(tiny_vit(), resolve_settings("lora", "digits")).eval()
    pruned = keep_first(copy.deepcopy(unpruned), 2)
    metrics = efficiency(unpruned, pruned, 16, CPU, CFG)

    assert [(t[0], t[1], t[2], t[3], t[4]) for t in timed[:1]] == [(unpruned, pruned, 16, CPU, CFG)]
    merged_unpruned, merged_pruned = timed[1][:2]
    assert len(merged_unpruned.blocks) == 4 and len(merged_pruned.blocks) == 2
    assert not any(
        isinstance(m, LoRAQKV) for m in [*merged_unpruned.modules(), *merged_pruned.modules()]
    )
    assert timed[1][2:] == (16, CPU, CFG)

    counts, unpruned_counts = parameter_counts(pruned), parameter_counts(unpruned)
    expected = {
        "speedup/bs1": 3.0,
        R.merged("speedup/bs1"): 4.0,
        R.BYTES_MERGED_BACKBONE: backbone_bytes(merged_pruned),
        R.MACS: count_macs(pruned, 16, CPU),
        R.MACS_UNPRUNED: count_macs(unpruned, 16, CPU),
        **counts,
        R.PARAMS_TOTAL_UNPRUNED: unpruned_counts[R.PARAMS_TOTAL],
        R.BLOCKS_KEPT: 2,
    }
    seconds = metrics.pop(R.MEASURE_SECONDS)
    assert metrics == expected
    assert metrics[R.MACS] < metrics[R.MACS_UNPRUNED]
    assert counts[R.PARAMS_TOTAL] < unpruned_counts[R.PARAMS_TOTAL]
    assert 0 < seconds < 60


def test_a_model_that_does_not_merge_is_timed_once(monkeypatch):
    timed = []
    monkeypatch.setattr(bench.measure, "compare_throughput", lambda *a: timed.append(a) or {})
    unpruned = attach_petl(tiny_vit(), resolve_settings("convpass", "digits")).eval()
    metrics = efficiency(unpruned, keep_first(copy.deepcopy(unpruned), 3), 16, CPU, CFG)
    assert len(timed) == 1 and R.BYTES_MERGED_BACKBONE not in metrics
    assert metrics[R.BLOCKS_KEPT] == 3


def test_the_compute_tags_name_device_threads_and_visible_gpus(monkeypatch):
    pools = [
        {"user_api": "blas", "num_threads": 8},
        {"user_api": "openmp", "num_threads": 3},
        {"user_api": "openmp", "num_threads": 2},
    ]
    monkeypatch.setattr("threadpoolctl.threadpool_info", lambda: pools)
    monkeypatch.setattr(bench.measure, "cpu_model", lambda: "Test CPU")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 5)
    monkeypatch.setattr(torch, "get_num_interop_threads", lambda: 6)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert compute_tags(CPU) == {
        "device": "Test CPU",
        "device.type": "cpu",
        "cpu.model": "Test CPU",
        "threads.torch": "5",
        "threads.torch_interop": "6",
        "threads.openmp": "3",
        R.CUDA_VISIBLE_DEVICES: "1,3",
    }
    monkeypatch.setattr("threadpoolctl.threadpool_info", lambda: pools[:1])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    tags = compute_tags(CPU)
    assert (tags["threads.openmp"], tags[R.CUDA_VISIBLE_DEVICES]) == ("none loaded", "unset")


def test_the_measure_settings_are_what_changes_a_throughput(monkeypatch):
    monkeypatch.setattr(bench.measure, "cpu_model", lambda: "Test CPU")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 5)
    cfg = MeasureConfig(dtype="bfloat16", compile=True)
    assert measure_settings(CPU, cfg) == {
        "measure.device_name": "Test CPU",
        "measure.device": "cpu",
        "measure.dtype": "bfloat16",
        "measure.threads": "5",
        "measure.compile": "True",
        "measure.torch": torch.__version__,
    }


def test_a_gpu_is_named_by_torch_a_cpu_by_its_model(monkeypatch):
    gpu = SimpleNamespace(type="cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "Test GPU" if d is gpu else None)
    monkeypatch.setattr(bench.measure, "cpu_model", lambda: "Test CPU")
    assert (device_name(gpu), device_name(CPU)) == ("Test GPU", "Test CPU")


class _CpuInfo:
    text: str | None = None

    def __init__(self, path):
        self.path = path

    def read_text(self):
        if self.text is None or self.path != "/proc/cpuinfo":
            raise OSError("no such file")
        return self.text


def test_the_cpu_model_is_the_model_name_line_of_cpuinfo(monkeypatch):
    monkeypatch.setattr(bench.measure, "Path", _CpuInfo)
    monkeypatch.setattr(
        _CpuInfo, "text", "processor\t: 0\nmodel name\t: AMD EPYC: 7B13 \nflags\t: x"
    )
    assert cpu_model() == "AMD EPYC: 7B13"


@pytest.mark.parametrize(("processor", "expected"), [("", "x86_64"), ("i386", "i386")])
def test_without_cpuinfo_the_cpu_model_is_what_platform_knows(monkeypatch, processor, expected):
    monkeypatch.setattr(bench.measure, "Path", _CpuInfo)
    monkeypatch.setattr("platform.processor", lambda: processor)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    assert cpu_model() == expected


def test_each_round_times_the_reference_then_the_candidate_with_the_settings(monkeypatch):
    reference, candidate, calls = object(), object(), []
    candidate_rates = iter([200.0, 300.0])

    def throughput(model, *args):
        calls.append((model, args))
        return 100.0 if model is reference else next(candidate_rates)

    monkeypatch.setattr(bench.measure, "throughput", throughput)
    cfg = MeasureConfig(batch_sizes=[4], warmup_iters=3, timed_iters=5, rounds=2,
                        ratio_target=1e-9, max_seconds=0, dtype="bfloat16")  # fmt: skip
    out = bench.measure.compare_throughput(reference, candidate, 16, CPU, cfg)
    settings = (4, 16, CPU, 3, 5, "bfloat16")
    assert calls == [(reference, settings), (candidate, settings)] * 2
    assert out[R.speedup(4)] == 2.5 and out[R.speedup_target_met(4)] == 0.0


@pytest.mark.parametrize("compile_", [True, False])
def test_both_models_are_compiled_when_asked(monkeypatch, compile_):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model: compiled.append(model) or model)
    rates = iter([100.0, 100.0])  # one round; a third call ends the test, whatever the clock
    monkeypatch.setattr(bench.measure, "throughput", lambda model, *a: next(rates))
    reference, candidate = object(), object()
    cfg = MeasureConfig(batch_sizes=[1], rounds=1, ratio_target=None, compile=compile_)
    bench.measure.compare_throughput(reference, candidate, 16, CPU, cfg)
    assert compiled == ([reference, candidate] if compile_ else [])


def test_the_macs_are_counted_on_the_measured_device(monkeypatch):
    counted = []
    monkeypatch.setattr(bench.measure, "compare_throughput", lambda *a: {})
    monkeypatch.setattr(
        bench.measure, "count_macs", lambda m, size, d: counted.append((size, d)) or 1
    )
    model = tiny_vit()
    efficiency(model, model, 16, CPU, CFG)
    assert counted == [(16, CPU), (16, CPU)]


def test_throughput_runs_warmup_and_timed_iterations_synchronised(monkeypatch):
    synced, shapes = [], []
    monkeypatch.setattr(bench.measure, "_sync", synced.append)

    class Model(torch.nn.Module):
        def forward(self, x):
            shapes.append(tuple(x.shape))
            return x

    images_per_second = bench.measure.throughput(Model(), 2, 8, CPU, warmup=1, iters=3)
    assert shapes == [(2, 3, 8, 8)] * 4 and synced == [CPU, CPU]
    assert images_per_second > 0


def test_the_gpu_is_synchronised_only_on_a_gpu(monkeypatch):
    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", synced.append)
    gpu = SimpleNamespace(type="cuda")
    bench.measure._sync(CPU)
    bench.measure._sync(gpu)
    assert synced == [gpu]


def test_the_measure_dtype_sets_autocast_even_inside_another():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with bench.measure._dtype_context(CPU, "bfloat16"):
        assert layer(x).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16), bench.measure._dtype_context(CPU, "float32"):
        assert layer(x).dtype == torch.float32
    with pytest.raises(ValueError, match="float16"):
        bench.measure._dtype_context(CPU, "float16")


def test_bfloat16_measurement_asks_autocast_for_bfloat16_on_every_device():
    """torch.autocast's own default would be float16 on CUDA."""
    for device in ("cpu", "cuda"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no CUDA here: autocast warns and disables itself
            assert bench.measure._dtype_context(torch.device(device), "bfloat16").fast_dtype == (
                torch.bfloat16
            )
