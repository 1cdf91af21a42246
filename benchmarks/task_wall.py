"""One VTAB task end to end at the paper preset's sizes: where the wall time goes, part by part.

Run on a GPU at full size:   python benchmarks/task_wall.py
On a CPU at a reduced size:  python benchmarks/task_wall.py --epochs 1 --test 256

What runs is the product's code as `make bench PRESET=paper` runs it: the paper preset (ViT-B/16,
Convpass, AdamW, batch 64, a test evaluation every 10 epochs, its dtype and TF32 setting), with a
random-initialised backbone (nothing to download) on a generated vtab-1k folder (`--train` images
in train800val200, `--test` test images, class-coloured noise) read by the folder source, methods
`none` and `sls` (add `retrained` or others with --methods), logged to a throw-away MLflow store
and cache. Timing is what the product logs (`transfer/seconds`, `transfer/eval_seconds`,
`prune/seconds`, `retrain/seconds`, `retrain/eval_seconds`, `measure/seconds`) plus the data step
and each run's wall time; what is left of a run's wall time is storing and logging.

FLOP/s: a forward costs 2 FLOPs per multiply-accumulate of torch's flop counter (`macs`); a
training image costs two forwards (forward and activation gradients through the frozen backbone;
the PETL modules' weight gradients are negligible). The peak is a large matmul in the training
precision measured here (`--peak-tflops` replaces it by a datasheet figure). Parts that are not
matmul-bound (t-SNE on the CPU, decoding, logging) show seconds only.

On CPU the measurement is shortened (`--measure-iters`, `--measure-batches`), and everything is
slow: ViT-B/16 at 224 px is ~35 GFLOP per image, so even the reduced run is minutes to an hour
depending on the CPU (README: "Where the time goes").
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import torch

MATMUL_N = {True: 8192, False: 4096}  # on GPU, on CPU
CPU_MEASURE = {"measure.warmup_iters": 2, "measure.timed_iters": 5, "measure.rounds": 1,
               "measure.batch_sizes": "1,8", "measure.ratio_target": "none"}  # fmt: skip


@dataclass
class Part:
    name: str
    seconds: float
    flop: float | None = None  # None: not a matmul workload


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100, help="transfer and retrain epochs")
    parser.add_argument("--train", type=int, default=1000, help="train800val200 images (1000)")
    parser.add_argument("--test", type=int, default=10_000, help="test images (10000)")
    parser.add_argument("--methods", default="none,sls", help="methods after the transfer")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: the preset's")
    parser.add_argument("--compile", action="store_true", help="train.compile=true")
    parser.add_argument("--eval-batch", type=int, help="train.eval_batch_size (preset's)")
    parser.add_argument("--measure-iters", help="warm-up,timed (preset's; CPU: 2,5)")
    parser.add_argument("--measure-batches", help="e.g. 1,64 (preset's; CPU: 1,8)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, from its datasheet")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other setting, as for `bench`")  # fmt: skip
    return parser.parse_args(argv)


def benchmark_config(args: argparse.Namespace, data_dir: Path, device: torch.device):
    from bench.cli import config_from, parse_sets

    overrides = {
        "suite": "task-wall", "methods": args.methods.split(","), "device": str(device),
        "data.task": "eurosat", "data.source": "folder", "data.data_dir": str(data_dir),
        "model.pretrained": False, "train.epochs": args.epochs,
        "train.warmup_epochs": round(args.epochs / 10), "train.compile": args.compile,
    }  # fmt: skip
    if args.dtype:
        overrides["train.dtype"] = args.dtype
    if args.eval_batch:
        overrides["train.eval_batch_size"] = args.eval_batch
    overrides.update(measure_overrides(args, device))
    overrides.update(parse_sets(args.set))
    return config_from("paper", overrides)


def measure_overrides(args: argparse.Namespace, device: torch.device) -> dict:
    """The preset's measurement on GPU; a short one on CPU; either as asked."""
    out = dict(CPU_MEASURE) if device.type != "cuda" else {}
    if args.measure_iters:
        out["measure.warmup_iters"], out["measure.timed_iters"] = args.measure_iters.split(",")
    if args.measure_batches:
        out["measure.batch_sizes"] = args.measure_batches
    return out


def device_peak(args: argparse.Namespace, device: torch.device, recipe) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from): the datasheet's if given, else a matmul's."""
    if args.peak_tflops:
        return args.peak_tflops * 1e12, "datasheet, --peak-tflops"
    tf32 = recipe.tf32 and device.type == "cuda"
    n = MATMUL_N[device.type == "cuda"]
    how = f"measured: {n}x{n} matmul in {recipe.dtype}{', TF32' if tf32 else ''}"
    return matmul_peak(device, recipe.dtype, tf32), how


def matmul_peak(device: torch.device, dtype: str, tf32: bool) -> float:
    """FLOP/s of a large square matmul in the training precision: the practical peak."""
    from bench.train import tf32 as allow_tf32

    n = MATMUL_N[device.type == "cuda"]
    repeats = 20 if device.type == "cuda" else 2
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=torch_dtype) for _ in range(2))
    with allow_tf32(device, tf32):
        a @ b
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_task(config, device: torch.device) -> tuple[list[Part], dict]:
    """The product's steps for one task, timed; returns the parts and facts for the header."""
    from bench import record as R
    from bench.data.task_data import load_data
    from bench.measure import count_macs
    from bench.models.build import weights_id
    from bench.preflight import preflight
    from bench.pruning import MethodSpec
    from bench.run import RunContext, run_method
    from bench.train import training_metrics
    from bench.transfer import transfer

    checked = preflight(config)
    start = time.perf_counter()
    data = load_data(config.data, checked.task, progress=False)
    parts = [Part(f"data: decode {len(data.train)} + {len(data.eval)} JPEGs into the cache",
                  time.perf_counter() - start)]  # fmt: skip
    seed, weights = config.seeds[0], weights_id(config.model)
    start = time.perf_counter()
    tr = transfer(config, data, checked.settings, seed, device, weights, progress=False)
    transfer_wall = time.perf_counter() - start
    full = 2.0 * count_macs(tr.model, config.data.image_size, device)
    parts += training_parts("transfer", "transfer", training_metrics("transfer", tr.result),
                            config.train.batch_size, full, len(data.train), len(data.eval))  # fmt: skip
    parts.append(Part("transfer: build model, store", transfer_wall - tr.result.seconds))
    ctx = RunContext(config, data, checked.settings, device, weights, False, seed, tr)
    facts = {"forward GFLOP/image": full / 1e9, "k": None}
    for spec in map(MethodSpec.parse, config.methods):
        start = time.perf_counter()
        outcome = run_method(ctx, spec)
        if outcome.status != "FINISHED":
            raise SystemExit(f"{spec} {outcome.status}: {outcome.error}")
        parts += method_parts(str(spec), config, outcome.metrics, time.perf_counter() - start,
                              full, len(data.train), len(data.eval))  # fmt: skip
        facts["k"] = outcome.metrics.get(R.SLS_K, facts["k"])
        facts["peak GPU memory (GB)"] = outcome.metrics.get(R.PEAK_GPU)
    return parts, facts


def training_parts(label, phase, metrics, batch, forward_flop, train_images, test_images):
    """A training's epochs and its test evaluations, as `bench.train.training_metrics` logs them
    for `phase` (transfer, retrain), with their FLOPs."""
    epochs, evaluations = int(metrics[f"{phase}/epochs"]), int(metrics[f"{phase}/evaluations"])
    seconds, eval_seconds = metrics[f"{phase}/seconds"], metrics[f"{phase}/eval_seconds"]
    images = epochs * (train_images // batch * batch)  # drop_last
    return [
        Part(f"{label}: {epochs} training epochs", seconds - eval_seconds,
             images * 2 * forward_flop),
        Part(f"{label}: {evaluations} test evaluations", eval_seconds,
             evaluations * test_images * forward_flop),
    ]  # fmt: skip


def prune_parts(name: str, metrics: dict, feature_flop: float) -> list[Part]:
    """The pruning step; SLS's split into its block features (a forward pass over the
    calibration images) and its scan (t-SNE and scores, in `sls/scan_workers` processes)."""
    if "sls/feature_seconds" not in metrics:
        return [Part(f"{name}: prune", metrics["prune/seconds"])]
    features, scan = metrics["sls/feature_seconds"], metrics["sls/scan_seconds"]
    workers, embedded = int(metrics["sls/scan_workers"]), int(metrics["sls/blocks_embedded"])
    return [
        Part(f"{name}: block features", features, feature_flop),
        Part(f"{name}: scan, {embedded} blocks in {workers} processes", scan),
        Part(f"{name}: prune, other", metrics["prune/seconds"] - features - scan),
    ]


def method_parts(name, config, metrics, wall, full_flop, train_images, test_images) -> list[Part]:
    """A method's run: pruning (SLS: features + t-SNE scan), retraining, measurement, the rest."""
    pruned_flop = 2.0 * metrics["macs"]
    parts = prune_parts(name, metrics, train_images * full_flop)
    if "retrain/seconds" in metrics:
        parts += training_parts(f"{name} retrain", "retrain", metrics, config.train.batch_size,
                                pruned_flop, train_images, test_images)  # fmt: skip
    from bench import record

    measure = config.measure  # rounds as many as the run logged (adaptive), at least measure.rounds
    rounds = {b: metrics.get(record.speedup_rounds(b), measure.rounds) for b in measure.batch_sizes}
    images = sum(rounds[b] * (measure.warmup_iters + measure.timed_iters) * b for b in rounds)
    parts.append(Part(f"{name}: measure throughput vs unpruned", metrics["measure/seconds"],
                      images * (full_flop + pruned_flop)))  # fmt: skip
    counted = sum(p.seconds for p in parts)
    parts.append(Part(f"{name}: store, log, other", wall - counted))
    return parts


def print_breakdown(parts: list[Part], peak: float, peak_source: str, header: str) -> None:
    total = sum(p.seconds for p in parts)
    print(header)
    print(f"peak: {peak / 1e12:.2f} TFLOP/s ({peak_source})\n")
    print(f"{'part':<48} {'seconds':>9} {'share':>6} {'TFLOP':>9} {'TFLOP/s':>8} {'of peak':>8}")
    for p in parts:
        flop = rate = share_peak = ""
        if p.flop is not None and p.seconds > 0:
            flop, rate = f"{p.flop / 1e12:.2f}", f"{p.flop / p.seconds / 1e12:.3f}"
            share_peak = f"{100 * p.flop / p.seconds / peak:.0f} %"
        print(f"{p.name:<48} {p.seconds:>9.1f} {100 * p.seconds / total:>5.1f}% "
              f"{flop:>9} {rate:>8} {share_peak:>8}")  # fmt: skip
    print(f"{'total':<48} {total:>9.1f} ({total / 60:.1f} min)")


def header(config, args: argparse.Namespace, device: torch.device, facts: dict) -> str:
    from bench.measure import device_name

    r, m = config.train, config.measure
    shown = [f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
             for k, v in facts.items() if v is not None]  # fmt: skip
    return (
        f"task_wall {date.today()}: {device_name(device)} ({device.type}), torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads\n"
        f"{config.model.backbone} (random init), {config.data.image_size} px, "
        f"{args.train} train / {args.test} test images, {r.epochs} epochs, batch {r.batch_size}, "
        f"eval batch {r.eval_batch_size}, eval every {r.eval_every}, dtype {r.dtype}, "
        f"tf32 {r.tf32}, compile {r.compile}; methods {args.methods}; measure bs "
        f"{m.batch_sizes} x ({m.warmup_iters} + {m.timed_iters}) x {m.rounds} rounds\n"
        + ", ".join(shown)
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="task_wall_") as tmp:
        os.environ["SLSBENCH_RESULTS"] = str(Path(tmp) / "results")  # nothing reused, nothing left
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        from bench.data.synthetic import make_vtab_folder
        from bench.gpus import resolve_device

        device = resolve_device(args.device)
        val = args.train // 5
        data_dir = make_vtab_folder(Path(tmp) / "data", "eurosat", n_train=args.train - val,
                                    n_val=val, n_test=args.test, size=224)  # fmt: skip
        config = benchmark_config(args, data_dir, device)
        peak, source = device_peak(args, device, config.train)
        parts, facts = run_task(config, device)
    print_breakdown(parts, peak, source, header(config, args, device, facts))


if __name__ == "__main__":
    from bench.errors import UserError

    try:
        main()
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
