"""Layer-wise baselines: drop whole blocks, as SLS does, but chosen by a simpler rule.

Each keeps as many blocks as the budget says (by default SLS's k for the same transfer) and
stores only the kept-block indices + PETL + head; `restore` re-applies them with `keep_blocks`.

`drop_last` at SLS's k is SLS's own model, so the harness does not run it at `match-sls`; at an
explicit `keep:k` it is a point of the depth curve (`make curve`). `fixed_depth` keeps the same
k on every task (by default the rounded mean of SLS's k over the suite): whether choosing k per
task helps at all.
"""

from __future__ import annotations

import hashlib
import random
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench import record as R
from bench.budget import block_sizes, blocks_to_keep
from bench.models.family import NAMES as FAMILIES
from bench.models.family import num_blocks as count_blocks
from bench.models.features import block_io
from bench.models.surgery import keep_blocks
from bench.pruning import PRUNERS, Budget, PruneContext, Pruner, PruneResult

Tokens = Literal["all", "cls", "head"]  # what block_influence averages over


class LayerwisePruner(Pruner):
    """Keeps `blocks_to_keep(budget)` blocks, in their original order; subclasses choose which.
    Whole blocks go on every backbone family (a Swin keeps every patch merging)."""

    backbones = FAMILIES

    @abstractmethod
    def choose(self, ctx: PruneContext, k: int) -> tuple[list[int], dict[str, Any]]:
        """The k block indices to keep, and a JSON record of why (its `scores`, if any, are
        also logged as metrics `score/block_NN`, 1-based like SLS's)."""

    def prune(self, ctx: PruneContext) -> PruneResult:
        num_blocks = count_blocks(ctx.model)
        k = blocks_to_keep(ctx.budget, num_blocks, block_sizes(ctx.model))
        kept, record = self.choose(ctx, k)
        kept = sorted(kept)
        dropped = [i for i in range(num_blocks) if i not in kept]
        model = keep_blocks(ctx.model, kept)
        decision = {"k": k, "kept": kept, "dropped": dropped, "settings": self.settings(), **record}
        metrics = {R.PRUNER_K: float(k)}
        metrics.update(
            {R.block_metric(R.BLOCK_SCORE, i): s for i, s in enumerate(record.get("scores", []), 1)}
        )
        return PruneResult(model, {"kept": kept}, decision, metrics)

    @classmethod
    def restore(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        return keep_blocks(model, state["kept"])


class RecordsRemoved(LayerwisePruner):
    """A LayerwisePruner that also logs `removed/block_NN` (1 = removed) for the criteria table."""

    def prune(self, ctx: PruneContext) -> PruneResult:
        result = super().prune(ctx)
        dropped = set(result.decision["dropped"])
        total = len(dropped) + len(result.decision["kept"])
        result.metrics.update(
            {R.block_metric(R.BLOCK_REMOVED, i + 1): float(i in dropped) for i in range(total)}
        )
        return result


@PRUNERS.register("drop_last")
@dataclass
class DropLast(LayerwisePruner):
    """Keeps the first k blocks of an explicit `keep:k`: the truncated model the depth curve is
    made of. At `match-sls` it would be SLS's model, trained the same way, so it is not run."""

    def choose(self, ctx: PruneContext, k: int) -> tuple[list[int], dict[str, Any]]:
        return list(range(k)), {}

    def same_model_as(self, budget: Budget) -> str | None:
        return "sls" if budget.kind == "match-sls" else None


@PRUNERS.register("fixed_depth")
@dataclass
class FixedDepth(LayerwisePruner):
    """Keeps the first k blocks with one k for every task: `keep:k`, or by default (`sls-mean`)
    the rounded mean of SLS's k over the suite's finished SLS runs. Against SLS it shows whether
    choosing the depth per task helps; on a task whose SLS k equals that mean it is SLS's model."""

    default_budget = "sls-mean"

    def choose(self, ctx: PruneContext, k: int) -> tuple[list[int], dict[str, Any]]:
        return list(range(k)), {}


@PRUNERS.register("random_blocks")
@dataclass
class RandomBlocks(LayerwisePruner):
    """Drops a random set of N - k blocks: a sanity floor. The draw depends on the task and the
    run's seed (a stable hash of both), so tasks with the same k do not all drop the same
    blocks. One run is one draw (the harness retrains and evaluates one model per run): K draws
    are K seeds (SEEDS=0,...,K-1), and the tables average over seeds."""

    def choose(self, ctx: PruneContext, k: int) -> tuple[list[int], dict[str, Any]]:
        num_blocks = count_blocks(ctx.model)
        rng_seed = draw_seed(ctx.task.name, ctx.seed)
        dropped = random.Random(rng_seed).sample(range(num_blocks), num_blocks - k)
        return [i for i in range(num_blocks) if i not in dropped], {"rng_seed": rng_seed}


def draw_seed(task: str, seed: int) -> int:
    """A seed from the task name and the run's seed that every process computes alike (sha256;
    Python's hash() of a string is salted per process)."""
    digest = hashlib.sha256(f"random_blocks|{task}|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


@PRUNERS.register("block_influence")
@dataclass
class BlockInfluence(RecordsRemoved):
    """Drops the N - k blocks that change their tokens least: score = 1 - cos(input, output),
    averaged over tokens and calibration images (the "block influence" of LLM layer pruning,
    e.g. ShortGPT), computed once on the unpruned model. `tokens="all"` (default) averages over
    every token, as ShortGPT over a sequence's hidden states; `tokens="cls"` scores only the CLS
    token; `tokens="head"` what the classifier head reads (the CLS token, or the token mean where
    the head pools, as a Swin's does). A Swin block's input and output are both on its stage's
    grid (the patch merging before a stage is not part of any block). Logs `score/block_NN` and
    `removed/block_NN` for the criteria table."""

    max_images: int | None = None  # None: every calibration image (train800val200)
    tokens: Tokens = "all"

    def choose(self, ctx: PruneContext, k: int) -> tuple[list[int], dict[str, Any]]:
        scores = block_influence(ctx.model, ctx.calibration, self.max_images, self.tokens)
        # ties broken by index, so the result does not depend on sort stability
        ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        return ranked[:k], {"scores": scores}


@torch.no_grad()
def block_influence(
    model: nn.Module, loader, max_images: int | None = None, tokens: str = "all"
) -> list[float]:
    """Mean over tokens (every token, or one: `cls`, `head`) and images of
    1 - cosine(block input, block output), per block."""
    totals = torch.zeros(count_blocks(model), dtype=torch.float64)
    count = 0
    for io, _ in block_io(model, loader, tokens, max_images):
        for index, (before, after) in enumerate(zip(io.inputs, io.outputs, strict=True)):
            distance = 1.0 - F.cosine_similarity(before.double(), after.double(), dim=-1)
            per_image = distance.mean(dim=1) if tokens == "all" else distance
            totals[index] += per_image.sum().cpu()
        count += len(io.inputs[0])
    if count == 0:
        raise ValueError("block_influence needs calibration images; the loader gave none")
    return (totals / count).tolist()
