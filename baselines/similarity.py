"""Layer-wise criteria from representation similarity: the ones SLS argues against (issue #16).

The SLS paper's claim is that mainstream layer-wise pruning criteria, which ask how little a
block changes the representation, do not suit PETL models, whose frozen blocks carry little task
information; the separability of each block's features (SLS) does. Two such criteria:

- `angular`: Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers";
- `cka`: Pons et al. 2024, "Effective Layer Pruning Through Similarity Metric Perspective".

Both choose *which* blocks to remove at the run's budget (by default SLS's k, so N - k blocks go)
and store only the kept-block indices + PETL + head, like every `LayerwisePruner`. Besides the
base class's record they log:
- `score/block_NN` (1-based): a per-block curve, oriented like `block_influence`'s, higher = the
  criterion values the block more, which the criteria table rank-correlates with the per-block
  linear-probe accuracy (`bench.tables.criteria`);
- `removed/block_NN`: 1 for a removed block, 0 for a kept one, so the table can say which blocks
  went without reading `decision.json`.
Both are computed once on the calibration images (train800val200, never test) in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from baselines.layerwise import RecordsRemoved
from bench.errors import UserError
from bench.models.calibration import calibration_batches
from bench.models.family import family_of
from bench.models.features import block_io
from bench.pruning import PRUNERS, PruneContext

Tokens = Literal["head", "cls", "all"]
ALL_TOKEN_CHUNK = 16  # images per forward when every token's state is kept (ViT-B: ~250 MB)


# ---------------------------------------------------------------------------------------------
# angular distance (Gromov et al. 2024)


@PRUNERS.register("angular")
@dataclass
class Angular(RecordsRemoved):
    """Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers": remove the
    contiguous run of n = N - k blocks whose input and output are closest in angle.

    x^l is the input of block l (x^N the output of the last block, before the final norm). The
    distance d(x^l, x^{l+n}) = arccos(cos(x^l, x^{l+n})) / pi is averaged over the calibration
    images; the run l*, ..., l* + n - 1 with the smallest d goes (ties: the earliest run). The
    paper measures at the last token of an LLM; a ViT's counterpart is the token its head reads
    (`tokens="head"`, the default: the CLS token, or the token mean where the head pools, as a
    Swin's does); `tokens="cls"` the CLS token; `tokens="all"` averages the distance over every
    token. The paper's "healing" fine-tune is the suite's common retraining of PETL + head.

    On a Swin the run lies within one stage (its tokens change grid and width between stages):
    d is taken between the input of the run's first block and the output of its last, and runs
    that cross a patch merging are not candidates (their distance is None in the record).

    Per-block curve (`score/block_NN`): d(x^{l-1}, x^l), the angle across block l alone (n = 1),
    whatever n the budget gives, so that the curve means the same at every budget.
    """

    tokens: Tokens = "head"  # all: the mean over every token of the per-token distance
    max_images: int | None = None  # None: every calibration image (train800val200)

    def choose(self, ctx: PruneContext, k: int) -> tuple[list[int], dict[str, Any]]:
        num_blocks = family_of(ctx.model).num_blocks(ctx.model)
        distances = angular_distances(ctx.model, ctx.calibration, self.tokens, self.max_images)
        n = num_blocks - k
        run = run_distances(distances, n)
        start = least_distance_run(distances, n)
        removed = set(range(start, start + n)) if n else set()
        record = {
            "n": n,
            "start": start if n else None,  # 0-based, like `kept` and `dropped`
            "run_distances": _json(run),  # d(x^l, x^{l+n}) for every start l = 0..N-n
            "distances": _json(distances.tolist()),  # (N+1) x (N+1): d(x^i, x^j)
            "scores": single_block_distances(distances),
        }
        return [i for i in range(num_blocks) if i not in removed], record


def run_distances(distances: np.ndarray, n: int) -> list[float]:
    """d(x^l, x^{l+n}) for l = 0..N-n: the distance across each run of n blocks."""
    num_blocks = distances.shape[0] - 1
    return [float(distances[start, start + n]) for start in range(num_blocks - n + 1)]


def least_distance_run(distances: np.ndarray, n: int) -> int:
    """The start l* (0-based) of the n-block run with the smallest d(x^l, x^{l+n}); the earliest
    on ties; runs whose distance is undefined (NaN: across a Swin's stages) are no candidates.
    n = 0 removes nothing (returns 0)."""
    if not 0 <= n < distances.shape[0]:
        raise ValueError(f"a run of {n} blocks does not fit in {distances.shape[0] - 1} blocks")
    if not n:
        return 0
    run = np.array(run_distances(distances, n))
    if np.isnan(run).all():
        raise UserError(
            f"angular removes a contiguous run of {n} blocks within one stage, and no stage has "
            f"{n} blocks: keep more blocks (a budget keep:k with a larger k)"
        )
    return int(np.nanargmin(run))


def _json(values):
    """NaN (an undefined distance) as None, for the JSON record."""
    if isinstance(values, list):
        return [_json(v) for v in values]
    return None if np.isnan(values) else values


def single_block_distances(distances: np.ndarray) -> list[float]:
    """d(x^{l-1}, x^l) for blocks l = 1..N: the angle across each block alone."""
    return run_distances(distances, 1)


@torch.no_grad()
def angular_distances(
    model: nn.Module, loader, tokens: str = "cls", max_images: int | None = None
) -> np.ndarray:
    """(N+1) x (N+1) matrix of d(x^i, x^j) = arccos(cos(x^i, x^j)) / pi, averaged over images
    (and over tokens for `tokens="all"`), where x^i is the input of block i and x^N the output of
    the last block. On a backbone of several stages (a Swin), d(x^i, x^j) for i < j is taken
    between the input of block i and the output of block j - 1 where both lie in one stage, and
    is NaN across stages."""
    family = family_of(model)
    num_blocks = family.num_blocks(model)
    spans = _stage_spans(family.stages(model))
    totals = torch.zeros(num_blocks + 1, num_blocks + 1, dtype=torch.float64)
    count = 0
    chunk = ALL_TOKEN_CHUNK if tokens == "all" else None
    for io, _ in block_io(model, loader, tokens, max_images, images_per_forward=chunk):
        for first, last in spans:  # a stage's states: its first block's input, then each output
            states = [io.inputs[first], *io.outputs[first : last + 1]]
            # (n+1, B, D) or (n+1, B, T, D), unit vectors along the width
            unit = torch.stack([F.normalize(state.double(), dim=-1) for state in states])
            cos = torch.einsum("ib...d,jb...d->ijb...", unit, unit).clamp(-1.0, 1.0)
            angle = torch.arccos(cos) / torch.pi
            per_image = angle.mean(dim=3) if tokens == "all" else angle  # (n+1, n+1, B)
            totals[first : last + 2, first : last + 2] += per_image.sum(dim=2).cpu()
        count += len(io.inputs[0])
    if count == 0:
        raise ValueError("angular needs calibration images; the loader gave none")
    distances = (totals / count).numpy()
    within = np.zeros_like(distances, dtype=bool)
    for first, last in spans:
        within[first : last + 2, first : last + 2] = True
    distances[~within] = np.nan
    return distances


def _stage_spans(stages: list[int]) -> list[tuple[int, int]]:
    """(first, last) block of each stage that has blocks, 0-based."""
    spans: dict[int, tuple[int, int]] = {}
    for index, stage in enumerate(stages):
        spans[stage] = (spans.get(stage, (index, index))[0], index)
    return list(spans.values())


# ---------------------------------------------------------------------------------------------
# linear CKA (Pons et al. 2024)


@PRUNERS.register("cka")
@dataclass
class CKA(RecordsRemoved):
    """Layer pruning by representation similarity, after Pons et al. 2024, "Effective Layer
    Pruning Through Similarity Metric Perspective": remove, one at a time, the block whose
    removal keeps the linear CKA between the pruned and the unpruned model's final CLS features
    highest, until k blocks are left.

    Features are the pre-logits output (what the head sees: the CLS token after the final norm,
    or the pooled tokens of a pooling head such as a Swin's) on the calibration images; each candidate is evaluated by running the model without the
    block, no retraining between removals (the suite's common retraining follows). A
    reconstruction of the procedure as issue #16 states it, not the authors' code: their
    networks, feature layer and fine-tuning schedule differ. Ties go to the earliest block.

    Per-block curve (`score/block_NN`): 1 - CKA(model without block l alone, unpruned model),
    the similarity lost by removing block l from the full model (the greedy's first step).
    """

    max_images: int | None = None  # None: every calibration image (train800val200)

    def choose(self, ctx: PruneContext, k: int) -> tuple[list[int], dict[str, Any]]:
        kept, steps, single = greedy_cka_removal(ctx.model, ctx.calibration, k, self.max_images)
        record = {
            "steps": steps,  # per removal: the block (0-based), its CKA, every candidate's CKA
            "cka_without_block": single,  # CKA with block l alone removed, l = 0..N-1
            "scores": [1.0 - value for value in single],
        }
        return kept, record


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA (Kornblith et al. 2019) of two (n, d) feature matrices over the same n inputs:
    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), columns centred. 0 if either is constant."""
    xc = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    yc = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    denominator = np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)
    if denominator == 0:
        return 0.0
    return float(np.linalg.norm(yc.T @ xc) ** 2 / denominator)


def greedy_cka_removal(
    model: nn.Module, loader, k: int, max_images: int | None = None
) -> tuple[list[int], list[dict[str, Any]], list[float]]:
    """(kept blocks, the removal steps, CKA with each single block removed from the full model)."""
    num_blocks = family_of(model).num_blocks(model)
    reference = final_features(model, loader, range(num_blocks), max_images)

    def cka_without(kept: Sequence[int], block: int) -> float:
        rest = [i for i in kept if i != block]
        return linear_cka(final_features(model, loader, rest, max_images), reference)

    everything = list(range(num_blocks))
    single = [cka_without(everything, block) for block in everything]
    kept, steps = everything, []
    while len(kept) > k:
        if len(kept) == num_blocks:
            candidates = dict(enumerate(single))
        else:
            candidates = {block: cka_without(kept, block) for block in kept}
        removed = max(kept, key=lambda block: (candidates[block], -block))
        kept = [i for i in kept if i != removed]
        steps.append({"removed": removed, "cka": candidates[removed],
                      "candidates": {str(b): v for b, v in candidates.items()}})  # fmt: skip
    return kept, steps, single


@torch.no_grad()
def final_features(
    model: nn.Module, loader, blocks: Sequence[int], max_images: int | None = None
) -> np.ndarray:
    """(n, D) pre-logits features of `model` run with only `blocks` (in order)."""
    outputs = []
    with _only_blocks(model, blocks), _eval_mode(model):
        for images, _ in calibration_batches(loader, max_images):
            tokens = model.forward_features(images)
            outputs.append(model.forward_head(tokens, pre_logits=True).double().cpu())
    if not outputs:
        raise ValueError("cka needs calibration images; the loader gave none")
    return torch.cat(outputs).numpy()


@contextmanager
def _only_blocks(model: nn.Module, blocks: Sequence[int]) -> Iterator[nn.Module]:
    """`model` with only the listed blocks (flat indices; no copy; a Swin's patch mergings
    all stay), its block lists restored after."""
    family = family_of(model)
    original = family.block_lists(model)
    family.keep_blocks(model, blocks)
    try:
        yield model
    finally:
        family.set_block_lists(model, original)


# ---------------------------------------------------------------------------------------------
# shared


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
