"""Where the suite writes: results/ under the project (override with SLSBENCH_RESULTS)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    return Path(os.environ.get("SLSBENCH_RESULTS", PROJECT_ROOT / "results")).expanduser()


def cache_dir() -> Path:
    """Decoded images and transferred PETL models, keyed by hashes of what produced them."""
    return Path(os.environ.get("SLSBENCH_CACHE", results_dir() / "cache")).expanduser()
