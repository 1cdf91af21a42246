"""What a run logs: the names of its params, tags and metrics, in one place.

The writers (`bench.run`, `bench.tracking`) and every reader (`bench.store`, the tables, the
sweep, the run description, the benchmarks) use these names; no other module spells a name that
another module reads. A pruner's own metrics are logged as `<pruner>/<name>` (`metric_of`).
"""

from __future__ import annotations

# --- tags: what a run is (searchable in the MLflow UI) -------------------------------------------
TASK = "task"
GROUP = "group"
PETL = "petl"
PRUNER = "pruner"
WEIGHTS = "weights"
TRANSFER_KEY = "transfer.key"
TRANSFER_CACHED = "transfer.cached"
CELL_KEY = "cell.key"  # a sweep cell: a FINISHED run with this key is not run again
OWNER_HOST = "owner.host"
OWNER_PID = "owner.pid"
SLURM_JOB_ID = "slurm.job_id"
HEARTBEAT = "heartbeat"  # unix seconds of the run's last beat
ERROR = "error"  # why a run ended FAILED or KILLED
CUDA_VISIBLE_DEVICES = "worker.cuda_visible_devices"
# A width pruner's softmax scale (`pruners.<name>.keep_scale`), one of the two values below: the
# tables can show it beside the method (baselines/softmax_scale.py)
SOFTMAX_SCALE = "softmax_scale"
SCALE_UNPRUNED = "unpruned scale"
SCALE_PRUNED_HEAD = "pruned-head scale"
BACKBONE_FAMILY = "backbone.family"  # vit | swin (bench.models.family); name: P_BACKBONE
SLS_FEATURE = "sls.feature"  # what SLS read of each block: cls | mean (its `head` setting resolved)

# --- params: the resolved config, flattened, plus what a run adds --------------------------------
P_METHOD = "method"  # `drop_last@keep:6`
P_PRUNER = "pruner"
P_SEED = "seed"
P_BUDGET = "budget"  # as requested
P_BUDGET_RESOLVED = "budget.resolved"  # `match-sls` -> `keep:<k>`
P_BUDGET_SOURCE = "budget.source"
P_WEIGHTS = "weights"
P_TASK = "data.task"
P_EVAL_SPLIT = "data.eval_split"
P_SOURCE = "data.source"
P_FORMAT = "data.format"
P_TASK_VERSION = "data.task_version"
P_RETRAIN_RESOLVED = "retrain.resolved"
P_PETL_METHOD = "petl.method"
P_TRANSFER_CHECKPOINT = "transfer.checkpoint"  # `last` | `best_of_evals`
P_BACKBONE = "model.backbone"  # the timm name: runs of two backbones are never pooled
PRUNER_SETTING_PREFIX = "pruner."  # `pruner.<setting>` for each of the pruner's settings
PETL_SETTING_PREFIX = "petl."

# --- metrics --------------------------------------------------------------------------------------
ACC = "test/acc"  # the headline: the last epoch's accuracy on the evaluation split
ACC_BEST = "test/acc_best_of_evals"  # the best of the periodic evaluations (most papers' number)
TRANSFER_ACC = "transfer/test_acc"  # of the transferred model every method starts from
TRANSFER_SELECTED_EPOCH = "transfer/selected_epoch"  # transfer.checkpoint=best_of_evals: which
TRANSFER_PEAK_GPU = "transfer/peak_gpu_memory_gb"
EPOCHS_AFTER_TRANSFER = "train/epochs_after_transfer"
PRUNE_SECONDS = "prune/seconds"
MEASURE_SECONDS = "measure/seconds"
PEAK_GPU = "gpu/peak_memory_gb"
BLOCKS_KEPT = "blocks/kept"
MACS = "macs"
MACS_UNPRUNED = "macs_unpruned"
PARAMS_TOTAL = "params/total"
PARAMS_TOTAL_UNPRUNED = "params/total_unpruned"
PARAMS_TRAINABLE = "params/trainable"
PARAMS_STORED = "params/stored"
PARAMS_STORED_NO_HEAD = "params/stored_no_head"
BYTES_STORED = "bytes/stored"
BYTES_MERGED_BACKBONE = "bytes/merged_backbone"
PARAMS_TARGET_FRACTION = "budget/params_target_fraction"  # asked: backbone block params removed
PETL_TARGET_FRACTION = "budget/petl_target_fraction"  # asked of a pruner that budgets PETL params
PARAMS_REMOVED_FRACTION = "budget/params_removed_fraction"  # achieved
PETL_REMOVED_FRACTION = "budget/petl_removed_fraction"
MACS_REMOVED_FRACTION = "budget/macs_removed_fraction"
SLS_K = "sls/k"
SLS_MARGIN = "sls/margin"
SLS_THRESHOLD = "sls/threshold"
SLS_SCORE_PREFIX = "sls/score/block_"
THROUGHPUT_PREFIX = "throughput/bs"
SPEEDUP_PREFIX = "speedup/bs"


def metric_of(pruner: str, name: str) -> str:
    """A pruner's own metric, as logged: `metric_of("sls", "k")` is `sls/k`."""
    return f"{pruner}/{name}"


def phase_metric(phase: str, name: str) -> str:
    """A training phase's metric: `phase_metric("retrain", "seconds")` is `retrain/seconds`."""
    return f"{phase}/{name}"


def throughput(batch: int) -> str:
    return f"{THROUGHPUT_PREFIX}{batch}"


def throughput_unpruned(batch: int) -> str:
    return f"throughput_unpruned/bs{batch}"


def speedup(batch: int) -> str:
    return f"{SPEEDUP_PREFIX}{batch}"


def speedup_low(batch: int) -> str:
    """The lower end of `speedup/bs<N>`'s 95 % interval over the interleaved rounds (absent where
    too few rounds were timed for one)."""
    return f"speedup_low/bs{batch}"


def speedup_high(batch: int) -> str:
    return f"speedup_high/bs{batch}"


def speedup_rounds(batch: int) -> str:
    """How many interleaved rounds the speedup at this batch took."""
    return f"speedup_rounds/bs{batch}"


def speedup_target_met(batch: int) -> str:
    """1 where the rounds stopped with the interval under `measure.ratio_target`, 0 where they
    stopped at `measure.max_seconds`; absent when no target was set."""
    return f"speedup_target_met/bs{batch}"


def merged(metric: str) -> str:
    """`speedup/bs1` -> `speedup_merged/bs1`: the same measurement with adapters merged."""
    family, _, batch = metric.partition("/")
    return f"{family}_merged/{batch}"


def speedup_batches(names) -> list[int]:
    """The batch sizes of the `speedup/bs<N>` metrics among `names`, ascending."""
    return sorted(
        int(n.removeprefix(SPEEDUP_PREFIX)) for n in names if n.startswith(SPEEDUP_PREFIX)
    )


# --- columns of `mlflow.search_runs` frames, and filter strings -----------------------------------


def tag_column(name: str) -> str:
    return f"tags.{name}"


def param_column(name: str) -> str:
    return f"params.{name}"


def metric_column(name: str) -> str:
    return f"metrics.{name}"


def tag_is(name: str, value: str) -> str:
    """An MLflow filter clause: the tag `name` equals `value`."""
    return f"tags.`{name}` = '{value}'"


def param_is(name: str, value: str) -> str:
    return f"params.`{name}` = '{value}'"


def status_is(status: str) -> str:
    return f"attributes.status = '{status}'"


def all_of(*clauses: str) -> str:
    return " and ".join(clauses)


# --- per-block curves of the layer-wise pruners, and the `tables` run -----------------------------
# A pruner logs `<name>NN` (1-based block NN, `block_metric`) as its own metric (`metric_of`):
# `block_influence/score/block_03`.
BLOCK_SCORE = "score/block_"  # higher = the criterion values the block more
BLOCK_REMOVED = "removed/block_"  # 1 where the pruner removed the block, 0 where it kept it
PRUNER_K = "k"  # the blocks a layer-wise pruner kept
SLS_PROBE_PREFIX = "sls/probe/block_"  # linear-probe accuracy per block (sls with metric=probe)
KIND = "kind"  # tag of a run that is no benchmark run: `tables`
P_TABLES_RUNS = "tables.runs"


def block_metric(prefix: str, block: int) -> str:
    """`block_metric(BLOCK_SCORE, 3)` is `score/block_03` (blocks are 1-based)."""
    return f"{prefix}{block:02d}"
