"""How numbers read in the tables: three significant digits, percentages to one decimal."""

from __future__ import annotations

import math

import numpy as np


def readable(value):
    """Three significant digits, no exponent for numbers a table shows; NaN as empty."""
    if isinstance(value, bool) or not isinstance(value, float | int | np.number):
        return value
    value = float(value)
    if math.isnan(value):
        return ""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"


def pct(value: float) -> str:
    """A percentage to one decimal; NaN or None as empty."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "" if missing else f"{value:.1f}"


def mean_pm_std(mean: float, std: float, n: float) -> str:
    """`81.0 ± 1.4` over several seeds, `81.0` over one, empty for none."""
    if math.isnan(mean):
        return ""
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"
