"""`make config PRESET=<name>`: what a preset resolves to, before anything runs: every run
setting (dataclass defaults < the preset's file; the params each run logs) and every pruner's
settings (its defaults < the preset's `[pruners.<name>]`)."""

from __future__ import annotations

from typing import Any

import bench.plugins  # noqa: F401  (registers SLS and the baselines)
from bench.config import flatten, load_config
from bench.pruning import PRUNERS, make_pruner


def config_lines(preset: str, overrides: dict[str, Any] | None = None) -> list[str]:
    config = load_config(preset, overrides)
    lines = [f"# preset {preset}: run settings", *_assignments(config.run_values())]
    lines += ["", f"methods = {config.methods}", f"seeds = {config.seeds}"]
    for name in PRUNERS.names():
        settings = make_pruner(name, config.pruners.get(name)).settings()
        if settings:
            lines += ["", f"[pruners.{name}]", *_assignments(settings)]
    return lines


def _assignments(values: dict[str, Any]) -> list[str]:
    return [f"{key} = {value!r}" for key, value in sorted(flatten(values).items())]
