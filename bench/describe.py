"""What a run shows on the MLflow UI besides its metrics: its dataset input and its description.

- `dataset_input`: the task's data as an MLflow dataset (the runs table's Dataset column): name =
  the task, source = where it was read (source kind, builder / folder, split strings), profile =
  the split sizes and classes, digest = a hash of the cached splits' keys (same digest, same
  images, labels and preprocessing).
- `run_description`: a short Markdown note (task, method, k, accuracy, Δ against the controls
  `none` / `retrained` of the same transfer where the store already holds them, speedup, stored
  bytes), set as the run's `mlflow.note.content`.
"""

from __future__ import annotations

import hashlib

from bench import record as R
from bench.store import CONTROLS


def dataset_input(task, source_name: str, data_dir, train_split: str, eval_split: str,
                  train_size: int, eval_size: int, keys: tuple[str, str],
                  image_size: int) -> dict:  # fmt: skip
    """Keyword arguments for `TrackedRun.log_dataset`."""
    source = {"task": task.name, "kind": source_name, "train_split": train_split,
              "eval_split": eval_split, "task_version": task.version}  # fmt: skip
    if source_name == "tfds" and task.tfds_name:
        source["builder"] = task.tfds_name
        source["train_split_string"] = task.split_string(train_split)
        source["eval_split_string"] = task.split_string(eval_split)
    if data_dir:
        source["data_dir"] = str(data_dir)
    digest = hashlib.sha256("|".join(keys).encode()).hexdigest()[:16]
    profile = {train_split: train_size, eval_split: eval_size, "num_classes": task.num_classes,
               "group": task.group}  # fmt: skip
    tensor = '[{{"type": "tensor", "tensor-spec": {{"dtype": "{}", "shape": {}}}, "name": "{}"}}]'
    schema = {"mlflow_tensorspec": {
        "features": tensor.format("uint8", f"[-1, 3, {image_size}, {image_size}]", "image"),
        "targets": tensor.format("int64", "[-1]", "label"),
    }}  # fmt: skip
    return {"name": task.name, "digest": digest, "source_type": source_name, "source": source,
            "profile": profile, "schema": schema, "context": "train"}  # fmt: skip


def run_description(task: str, petl: str, method: str, seed, metrics: dict[str, float],
                    controls: dict[str, float], total_blocks: int | None = None) -> str:  # fmt: skip
    """Markdown: one header line and a small table of what the run gave."""
    acc = metrics.get(R.ACC)
    kept = metrics.get(R.BLOCKS_KEPT)
    k = metrics.get(R.SLS_K, kept)
    depth = "-" if k is None else f"{int(k)}" + (f" of {total_blocks}" if total_blocks else "")
    rows = [("task", f"`{task}`"), ("method", f"`{method}` on {petl}, seed {seed}"),
            ("k (blocks kept)", depth),
            ("accuracy", "-" if acc is None else f"{acc * 100:.2f} %")]  # fmt: skip
    for control in CONTROLS:
        if control in controls and acc is not None and control != method:
            rows.append((f"Δ vs {control}", f"{(acc - controls[control]) * 100:+.2f} pts"))
    batches = R.speedup_batches(metrics)
    if batches:  # the largest batch measured
        name = R.speedup(batches[-1])
        rows.append((f"speedup (bs{batches[-1]})", f"{metrics[name]:.2f}×"))
    if R.BYTES_STORED in metrics:
        rows.append(("stored per task", _bytes(metrics[R.BYTES_STORED])))
    missing = [c for c in CONTROLS if c not in controls and c != method]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    note = (
        f"\n\nΔ vs {' / '.join(missing)}: no finished run of the same transfer in the store when "
        "this run ended (run the control first to see it here; the tables pair them anyway)."
        if missing
        else ""
    )
    return f"**{task} · {method} · {petl} · seed {seed}**\n\n| | |\n|---|---|\n{table}{note}\n"


def _bytes(value: float) -> str:
    for unit, size in (("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{int(value)} B"
