"""Budgets the harness resolves before a pruner runs, from the run set or the store.

- `match-sls` -> `keep:<k>`, SLS's k for the same transfer (task, PETL model, seed): from this
  run set, else from a FINISHED sls run in the store with the same transfer key and SLS settings,
  else computed now (SLS on a copy, no retraining).
- `sls-mean` -> `keep:<k>`, the rounded mean of SLS's k over the suite's finished runs of this
  PETL method, these SLS settings and this evaluation split.
"""

from __future__ import annotations

import copy
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from torch import nn

from bench.cells import sls_settings
from bench.config import RunConfig
from bench.errors import UserError
from bench.pruning import Budget, PruneContext, make_pruner
from bench.store import sls_k_of_transfer, sls_ks_of_suite


def resolve_budget(budget: Budget, method: str, config: RunConfig, petl: str, transfer_key: str,
                   known_k: dict[str, int], compute_k: Callable[[], int]) -> tuple[Budget, str]:  # fmt: skip
    """The budget as `keep:<k>` where the harness resolves it, and where it came from.
    `known_k` (SLS's k per transfer key in this run set) is updated."""
    if budget.kind == "sls-mean":
        return sls_mean_budget(config, petl, method)
    if budget.kind != "match-sls":
        return budget, "given"
    source, k = "run set", known_k.get(transfer_key)
    if k is None:
        source, k = "store", sls_k_of_transfer(transfer_key, sls_settings(config))
    if k is None:
        source, k = "computed", compute_k()
    known_k[transfer_key] = k
    return Budget("keep", k), source


def sls_mean_budget(config: RunConfig, petl: str, method: str) -> tuple[Budget, str]:
    """The rounded mean of SLS's k over the suite: the newest finished run per (task, seed)."""
    ks = sls_ks_of_suite(config.suite, petl, config.data.eval_split, sls_settings(config))
    if not ks:
        raise UserError(
            f"{method} keeps the rounded mean of SLS's k over suite {config.suite!r}, which has "
            f"no finished sls run with PETL {petl}: run sls first (e.g. METHODS=sls,{method}) or "
            "give BUDGET=keep:<k>"
        )
    k = int(math.floor(sum(ks.values()) / len(ks) + 0.5))
    return Budget("keep", k), f"mean of SLS's k over {len(ks)} (task, seed) runs of the suite"


def sls_k_now(config: RunConfig, model: nn.Module, calibration, task, seed: int, device) -> int:
    """SLS's k on a copy of the transferred model (no retraining)."""
    pruner = make_pruner("sls", config.pruners.get("sls"))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = PruneContext(copy.deepcopy(model), calibration, task,
                           Budget.parse(pruner.fixed_budget), seed, device, Path(tmp))  # fmt: skip
        return int(pruner.prune(ctx).metrics["k"])
