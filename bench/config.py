"""The run configuration: dataclasses are the schema, presets (bench/presets/*.toml) the values.

Precedence: dataclass defaults < preset file < command line (`--task`, ..., `--set a.b=v`).
`None` means "not set": the component's own default applies (timm's `create_model` way).
The resolved config is flattened into MLflow params for every run.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from bench.errors import UserError

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    task: str = "digits"  # VTAB-1k task (or alias), or an offline one: `digits`, `gen_*`
    source: str = "auto"  # auto | folder | tfds | digits | generated
    data_dir: str | None = None  # vtab-1k folder root, or tfds data_dir
    image_size: int | None = 224  # resized once, square, no crop; None: the weights' input size
    interpolation: str = "bicubic"  # bicubic | bilinear | nearest
    # imagenet | 0.5 | clip | none | weights (the backbone weights' own mean and std); `None` and
    # `weights` are resolved when the config is built (bench.models.build.resolve_input), so a
    # run logs the values it used
    normalization: str = "imagenet"
    train_split: str = "train800val200"  # train800 for hyper-parameter tuning
    eval_split: str = "test"  # val200 when tuning


@dataclass
class ModelConfig:
    backbone: str = "vit_base_patch16_224.orig_in21k"  # timm name (orig_in21k = ViT-B_16.npz)
    checkpoint: str | None = None  # local .npz / .pth / .safetensors file
    pretrained: bool = False  # download from the hub (needs internet)
    drop_path: float = 0.1
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra timm create_model options


@dataclass
class PetlConfig:
    method: str = "convpass"  # convpass | repadapter | adapter | lora | splora
    dim: int | None = None  # bottleneck width / LoRA rank (None: method default, 8)
    scale: float | None = None  # None: the method's per-task value
    xavier_init: bool | None = None  # Convpass conv init; None: the per-task value
    dropout: float = 0.1


@dataclass
class Recipe:
    """An optimisation recipe (the literature's VTAB-1k one by default)."""

    epochs: int = 100
    warmup_epochs: int = 10
    lr: float = 1e-3
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    batch_size: int = 64
    schedule: str = "cosine"  # cosine (warm-up + cosine) | constant
    # after_epoch: the SLS authors' code (`scheduler.step(e)` after epoch e, so epoch e trains at
    # the rate of e - 1 and the first two at warmup_lr) | before_epoch: timm's train.py
    lr_step: str = "after_epoch"
    eval_every: int = 10  # epochs between test evaluations; the last epoch is always evaluated;
    #                       0: the last epoch only (no best-of-evals accuracy)
    dtype: str = "float32"  # float32 (the authors' transfer) | bfloat16 (autocast)
    tf32: bool = True  # float32 matmuls and convolutions in TF32 on GPUs that have it
    # speed only (`SPEED_ONLY`: not part of a transfer's or a cell's identity)
    eval_batch_size: int = 256
    compile: bool = False  # torch.compile the model for training and evaluation

    SPEED_ONLY: ClassVar[tuple[str, ...]] = ("eval_batch_size", "compile")

    def identity(self) -> dict[str, Any]:
        """The fields that decide what the training produces (not how fast)."""
        values = dataclasses.asdict(self)
        for name in self.SPEED_ONLY:
            values.pop(name)
        return values


@dataclass
class TransferConfig:
    # Which transferred model every method of a run set starts from: `last` (the last epoch's) or
    # `best_of_evals` (the periodic evaluation with the highest test accuracy, the first on a
    # tie: the SLS authors' `train.py` saves that checkpoint and `prune.py` prunes it; it selects
    # on the test set, as the published rows do).
    checkpoint: str = "last"


@dataclass
class RetrainConfig:
    recipe: str = "released"  # released: rerun the transfer recipe | constant: constant_lr
    constant_lr: float = 1e-5  # the SLS authors' earlier default
    epochs: int | None = None  # None: as many as the transfer recipe


@dataclass
class MeasureConfig:
    batch_sizes: list[int] = field(default_factory=lambda: [1, 64])
    warmup_iters: int = 50
    timed_iters: int = 100
    rounds: int = 3  # interleaved rounds of pruned vs unpruned, at least; the median ratio is
    #                  reported with its 95 % interval over the rounds
    threads: int | None = None  # torch CPU threads (None: torch's default)
    dtype: str = "float32"  # float32 | bfloat16 (autocast)
    compile: bool = False
    # how long the timer works, not what it estimates (`PRECISION_ONLY`: not part of a cell's
    # identity): rounds are added until the ratio's interval is within ±ratio_target of it
    # (None: exactly `rounds`), or until max_seconds per batch size have passed
    ratio_target: float | None = 0.03
    max_seconds: float = 60.0

    PRECISION_ONLY: ClassVar[tuple[str, ...]] = ("ratio_target", "max_seconds")

    def identity(self) -> dict[str, Any]:
        """The fields that decide what is measured (not how precisely)."""
        values = dataclasses.asdict(self)
        for name in self.PRECISION_ONLY:
            values.pop(name)
        return values


@dataclass
class SlurmConfig:
    """Slurm jobs through submitit: one job per (task, seed), as an array."""

    partition: str | None = None
    gpus: int = 1
    cpus: int = 8
    mem_gb: int = 64
    time_min: int = 24 * 60
    parallelism: int = 16  # array tasks running at once
    cluster: str = "slurm"  # slurm | local (submitit's local executor: testing without Slurm)
    folder: str | None = None  # submitit's logs and pickles (None: results/submitit)
    wait: bool = True  # wait for the jobs and print the summary (false: submit and return)


@dataclass
class SweepConfig:
    tasks: str = "all"  # all | natural | specialized | structured | a comma-separated list
    launcher: str = "local"  # local | slurm
    workers: int = 1  # local: runs in parallel on this machine
    stale_after_s: float = 600.0  # a RUNNING run whose heartbeat is older is dead: run again
    claim_cells: bool = False  # set by the sweep: a cell another sweep took first is not run
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class RunConfig:
    suite: str = "default"  # MLflow experiment
    preset: str = "paper"
    methods: list[str] = field(default_factory=lambda: ["none", "retrained", "sls"])
    seeds: list[int] = field(default_factory=lambda: [42])
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    budget: str = "match-sls"  # how pruners other than SLS are budgeted
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    petl: PetlConfig = field(default_factory=PetlConfig)
    train: Recipe = field(default_factory=Recipe)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    pruners: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-pruner options
    sweep: SweepConfig = field(default_factory=SweepConfig)  # what `sweep` runs, and where

    # What a run set spans, not one run's settings: in no run's params and no run's identity.
    RUN_SET_FIELDS: ClassVar[tuple[str, ...]] = ("methods", "seeds", "pruners", "sweep")
    # Names that label a run and never change what it computes: params, but not identity.
    LABEL_FIELDS: ClassVar[tuple[str, ...]] = ("suite", "preset")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_values(self) -> dict[str, Any]:
        """The config one run logs as its params (flattened)."""
        values = self.to_dict()
        for name in self.RUN_SET_FIELDS:
            values.pop(name)
        return values

    def identity(self) -> dict[str, Any]:
        """What decides one run's result: its values less the labels and the speed-only
        training settings."""
        values = self.run_values()
        for name in self.LABEL_FIELDS:
            values.pop(name)
        values["train"], values["measure"] = self.train.identity(), self.measure.identity()
        return values


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_config(preset: str = "demo", overrides: dict[str, Any] | None = None) -> RunConfig:
    """defaults < preset < overrides (dotted keys such as `train.epochs`)."""
    if preset not in preset_names():
        from bench.registry import Registry

        registry: Registry[str] = Registry("preset")
        for name in preset_names():
            registry.register(name, name)
        registry.canonical(preset)  # raises the did-you-mean error
    with open(PRESET_DIR / f"{preset}.toml", "rb") as file:
        values = tomllib.load(file)
    config = RunConfig(preset=preset)
    _apply(config, values, "")
    for key, value in (overrides or {}).items():
        set_value(config, key, value)
    return config


def apply_values(config: RunConfig, values: dict[str, Any]) -> None:
    """Set every value of a nested dict (a preset, or a run's logged `config.json`)."""
    _apply(config, values, "")


def _apply(target: Any, values: dict[str, Any], prefix: str) -> None:
    for key, value in values.items():
        current = getattr(target, key, _MISSING) if dataclasses.is_dataclass(target) else _MISSING
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            _apply(current, value, f"{prefix}{key}.")
        else:
            set_value(target, key, value, prefix)


_MISSING = object()


def set_value(config: Any, dotted: str, value: Any, prefix: str = "") -> None:
    """Set `a.b.c` on nested dataclasses; strings from the command line are coerced to the type."""
    *path, leaf = dotted.split(".")
    target = config
    for part in path:
        target = getattr(target, part, _MISSING)
        if target is _MISSING or not dataclasses.is_dataclass(target):
            raise UserError(f"unknown setting {prefix}{dotted!r}")
    fields = {f.name: f for f in dataclasses.fields(target)}
    if leaf not in fields:
        hint = ", ".join(sorted(fields))
        raise UserError(f"unknown setting {prefix}{dotted!r}; settings here: {hint}")
    hint = typing.get_type_hints(type(target))[leaf]
    setattr(target, leaf, coerce(value, hint, f"{prefix}{dotted}"))


def coerce(value: Any, hint: Any, name: str) -> Any:
    """`value` as the type `hint` says: a string (the command line) is parsed, a typed value (a
    preset, a caller) is checked only against a `Literal`'s choices. Raises a one-line UserError
    such as "pruners.sls.alpha 'abc': expected a number"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{name} {value!r}: expected one of {', '.join(map(str, args))}")
        return value
    if not isinstance(value, str):
        return value
    if hint is bool:
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise UserError(f"{name} {value!r}: expected true or false")
        return value.lower() in ("1", "true", "yes")
    if hint in (int, float):
        try:
            return hint(value)
        except ValueError:
            what = "an integer" if hint is int else "a number"
            raise UserError(f"{name} {value!r}: expected {what}") from None
    if origin is list:
        return [coerce(v.strip(), args[0], name) for v in value.split(",") if v.strip()]
    if origin is dict:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{name} {value!r}: expected a JSON object") from None
    return value


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b": v}: the MLflow params of a run."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
