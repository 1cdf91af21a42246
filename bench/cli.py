"""The commands behind the Makefile: bench, sweep, tables, tasks, prepare, ui. Bad input: one
line, exit 2."""

from __future__ import annotations

import argparse
import os
import sys

from bench.errors import UserError

# command-line flag -> config key; a flag left unset keeps the preset's value
FLAGS = {
    "task": "data.task",
    "source": "data.source",
    "data": "data.data_dir",
    "petl": "petl.method",
    "methods": "methods",
    "seeds": "seeds",
    "backbone": "model.backbone",
    "checkpoint": "model.checkpoint",
    "pretrained": "model.pretrained",
    "device": "device",
    "suite": "suite",
    "budget": "budget",
    "epochs": "train.epochs",
    "tasks": "sweep.tasks",
    "launcher": "sweep.launcher",
    "workers": "sweep.workers",
}


def add_run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--preset", default="demo", help="demo (offline CPU default) or paper")
    run.add_argument("--source", help="auto | folder | tfds | digits | generated")
    run.add_argument("--data", help="vtab-1k folder root or tfds data_dir")
    run.add_argument("--petl", help="convpass | repadapter | adapter | lora | splora")
    run.add_argument("--methods", help="comma-separated pruners, e.g. none,sls")
    run.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1")
    run.add_argument("--backbone", help="timm model name")
    run.add_argument(
        "--checkpoint",
        help="local backbone weights: .npz, .pth or .safetensors; "
        "or demo-fractal, the demo ViT pretrained here (make pretrain-demo)",
    )
    run.add_argument("--pretrained", help="true: download the backbone's weights from the hub")
    run.add_argument("--device", help="auto | cpu | cuda")
    run.add_argument("--suite", help="MLflow experiment name")
    run.add_argument("--budget", help="match-sls | keep:<k> | params:<fraction>")
    run.add_argument("--epochs", help="shortcut for --set train.epochs=N")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any setting, e.g. --set train.lr=1e-3 --set pruners.sls.alpha=0.5")  # fmt: skip
    run.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    """How the cells of a sweep (or of a depth curve) are launched and planned."""
    parser.add_argument("--launcher", help="local (default) | slurm (submitit)")
    parser.add_argument("--workers", help="local launcher: runs in parallel on this machine")
    parser.add_argument("--dry-run", action="store_true", help="show the plan, run nothing")
    parser.add_argument("--reclaim", action="store_true",
                        help="mark RUNNING runs of other hosts KILLED and run their cells again")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slsbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("bench", help="train, prune, retrain, measure and log one task")
    add_run_options(run)
    run.add_argument("--task", help="VTAB-1k task or alias (e.g. cifar100), digits, or gen_*")

    sweep = commands.add_parser(
        "sweep", help="every task x method x seed not yet finished in the store (resumable)"
    )
    add_run_options(sweep)
    sweep.add_argument("--tasks", help="all | natural | specialized | structured | a,b,c")
    add_sweep_options(sweep)

    curve = commands.add_parser(
        "curve", help="the accuracy-depth curve: retrain the first k blocks at every k (resumable)"
    )
    add_run_options(curve)
    curve.add_argument("--task", help="the task (default: the preset's)")
    curve.add_argument("--tasks", help="several tasks instead: all | a group | a,b,c")
    curve.add_argument("--keep", help="depths, e.g. 1-12 or 2,4,6 (default: 1..N)")
    curve.add_argument("--tune", action="store_true",
                       help="tuning mode: transfer on train800, every point evaluated on val200")  # fmt: skip
    add_sweep_options(curve)

    tables = commands.add_parser("tables", help="the paper's tables and plots from the store")
    tables.add_argument("--suite", default="demo", help="MLflow experiment to tabulate")
    tables.add_argument("--out", help="output folder (default results/tables/<suite>)")
    tables.add_argument("--no-log", action="store_true", help="do not log them to MLflow")

    tasks = commands.add_parser("tasks", help="the 19 VTAB-1k tasks and whether their data is here")
    tasks.add_argument("--data", help="vtab-1k folder root or tfds data_dir to look in")

    prepare = commands.add_parser("prepare", help="download and prepare tfds data (array_record)")
    prepare.add_argument(
        "--task", required=True, help="a task, a comma-separated list, a group, or all"
    )
    prepare.add_argument("--data", required=True, help="tfds data_dir to prepare into")
    prepare.add_argument(
        "--export", help="also write the task(s) in the vtab-1k folder layout here"
    )

    ui = commands.add_parser(
        "ui", help="the MLflow UI over the project's tracking store (127.0.0.1)"
    )
    ui.add_argument("--suite", default="demo", help="the suite whose runs table to link first")
    presets = commands.add_parser("presets", help="list the presets, or show what one resolves to")
    presets.add_argument("--show", metavar="PRESET", help="every run and pruner setting of PRESET")

    export = commands.add_parser("export", help="write the deployed model of a finished run")
    export.add_argument("--run", required=True, help="the run id (MLflow UI, or make tables)")
    export.add_argument("--out", required=True, help="folder to write model.pt2 and friends to")
    export.add_argument("--checkpoint", help="the backbone checkpoint, if not where the run had it")
    export.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    export.add_argument("--no-verify", action="store_true",
                        help="do not evaluate the exported model on the run's evaluation split")  # fmt: skip
    return parser


def overrides(args: argparse.Namespace) -> dict[str, str]:
    values = {
        key: getattr(args, flag)
        for flag, key in FLAGS.items()
        if getattr(args, flag, None) is not None
    }
    values.update(parse_sets(args.set))
    return values


def parse_sets(items: list[str]) -> dict[str, str]:
    """`--set KEY=VALUE` arguments as {KEY: VALUE}."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        values[key.strip()] = value.strip()
    return values


def _split_pruner_options(
    values: dict[str, str],
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    plain, pruners = {}, {}
    for key, value in values.items():
        if key.startswith("pruners."):
            _, name, option = key.split(".", 2)
            pruners.setdefault(name, {})[option] = value
        else:
            plain[key] = value
    return plain, pruners


def resolved_config(args: argparse.Namespace):
    return config_from(args.preset, overrides(args))


def config_from(preset: str, values: dict):
    """The preset with `values` (dotted keys; `pruners.<name>.<option>` included) applied."""
    from bench.config import load_config
    from bench.models.build import resolve_input

    plain, pruner_options = _split_pruner_options(values)
    config = load_config(preset, plain)
    for name, options in pruner_options.items():  # typed by the pruner when it is built
        config.pruners.setdefault(name, {}).update(options)
    resolve_input(config)  # before any cell key is computed from it
    return config


def cmd_bench(args: argparse.Namespace) -> int:
    from bench.run import run_benchmark

    outcomes = run_benchmark(resolved_config(args), progress=not args.no_progress)
    print(summary(outcomes))
    return 0 if all(o.status == "FINISHED" for o in outcomes) else 1


def summary(outcomes) -> str:
    from bench import record as R
    from bench.tracking import tracking_uri

    lines = [
        f"{'method':<16} {'seed':>4} {'status':<9} {'test acc':>8} {'speedup bs1':>11} {'blocks':>6}"
    ]
    for o in outcomes:
        m = o.metrics
        acc = f"{m[R.ACC]:.4f}" if R.ACC in m else "-"
        speed = f"{m[R.speedup(1)]:.2f}x" if R.speedup(1) in m else "-"
        blocks = f"{int(m[R.BLOCKS_KEPT])}" if R.BLOCKS_KEPT in m else "-"
        lines.append(f"{o.method:<16} {o.seed:>4} {o.status:<9} {acc:>8} {speed:>11} {blocks:>6}")
        if o.error:
            lines.append(f"  error: {o.error}")
    lines.append(f"runs logged to {tracking_uri()} (open with: make ui)")
    return "\n".join(lines)


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench import sweep

    config = resolved_config(args)
    plan = sweep.plan_sweep(config, reclaim=args.reclaim)
    print(plan.describe(), flush=True)
    if args.dry_run:
        return 0
    outcomes = sweep.execute(config, plan, progress=not args.no_progress)
    print(sweep.summary(plan, outcomes))
    return 0 if sweep.succeeded(outcomes) else 1


def cmd_curve(args: argparse.Namespace) -> int:
    from bench import curve, sweep
    from bench.preflight import preflight
    from bench.tables.write import write_tables

    config = resolved_config(args)
    if not args.tasks:
        config.sweep.tasks = config.data.task
    depths = curve.parse_keep(args.keep, preflight(config).num_blocks)
    config = curve.curve_config(config, depths, args.tune)
    plan = sweep.plan_sweep(config, reclaim=args.reclaim)
    print(plan.describe(), flush=True)
    if args.dry_run:
        return 0
    outcomes = sweep.execute(config, plan, progress=not args.no_progress)
    print(sweep.summary(plan, outcomes))
    written = write_tables(config.suite)
    print("\n".join(str(path) for path in written if "curve" in path.name or "regret" in path.name))
    return 0 if sweep.succeeded(outcomes) else 1


def cmd_tables(args: argparse.Namespace) -> int:
    from bench.tables.write import write_tables

    written = write_tables(args.suite, args.out, log=not args.no_log)
    print("\n".join(str(path) for path in written))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from bench.tracking import client, runs_table_links, tracking_uri

    store = client()  # creates the store folder
    port = os.environ.get("PORT", "5000")
    print(runs_table_links(store, f"http://127.0.0.1:{port}", args.suite), flush=True)
    argv = [
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        port,
    ]
    os.execv(sys.executable, [sys.executable, *argv])
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from bench.data.prepare import format_task_table, offline_task_lines, task_table

    print(format_task_table(task_table(args.data)))
    print("\n" + "\n".join(offline_task_lines()))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from bench.data.prepare import prepare
    from bench.tasks import tasks_in

    prepare(tasks_in(args.task), args.data, args.export)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from bench.config import preset_names

    if args.show:
        from bench.show_config import config_lines

        print("\n".join(config_lines(args.show)))
        return 0
    print("\n".join(preset_names()))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from bench.export import export_run

    out = Path(args.out)
    summary = export_run(args.run, out, args.checkpoint, torch.device(args.device),
                         verify=not args.no_verify)  # fmt: skip
    print(f"wrote {out}/model.pt2 (torch.export), model.safetensors, config.json, export.json")
    if "exported_test_acc" in summary:
        print(f"exported model: test acc {summary['exported_test_acc']:.4f} "
              f"(the run logged {summary['run_test_acc']:.4f})")  # fmt: skip
    return 0


COMMANDS = {
    "bench": cmd_bench,
    "sweep": cmd_sweep,
    "curve": cmd_curve,
    "tables": cmd_tables,
    "tasks": cmd_tasks,
    "prepare": cmd_prepare,
    "ui": cmd_ui,
    "presets": cmd_presets,
    "export": cmd_export,
}


def main(argv: list[str] | None = None) -> None:
    from bench.tracking import Terminated, raise_on_sigterm

    args = build_parser().parse_args(argv)
    raise_on_sigterm()
    try:
        code = COMMANDS[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Terminated:
        print("terminated", file=sys.stderr)
        code = 143
    except Exception as err:  # a library's error outside any run: one line, traceback to a file
        print(f"error: {_one_line_with_log(err)}", file=sys.stderr)
        code = 1
    sys.exit(code)


def _one_line_with_log(err: Exception) -> str:
    import time
    import traceback

    from bench.paths import results_dir
    from bench.tracking import one_line

    log = results_dir() / "logs" / f"error-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(traceback.format_exception(err)))
    return f"{one_line(err)} (traceback: {log})"


if __name__ == "__main__":
    main()
