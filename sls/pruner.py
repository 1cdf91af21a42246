"""SLS as a pruner: features -> embed -> score -> select, then keep the first k blocks."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from typing import Literal

import torch

from bench import record as R
from bench.errors import UserError
from bench.models.family import NAMES as FAMILIES
from bench.models.surgery import keep_first
from bench.pruning import PRUNERS, PruneContext, Pruner, PruneResult
from sls.calibration import block_samples
from sls.features import block_features, resolve_feature
from sls.parallel import decide_depth_parallel, sample_score
from sls.plot import plot_scores
from sls.score import LABEL_METRICS, describe, score_name
from sls.select import DepthDecision, decide_depth

CHEAP_EMBEDDINGS = ("pca", "none")  # not worth a process each
# the choices of sls.score.HIGHER_IS_BETTER, sls.embed.EMBED_METHODS, sls.features.FEATURES
Metric = Literal["silhouette", "calinski_harabasz", "davies_bouldin", "probe", "knn"]
Embedding = Literal["tsne", "opentsne", "pca", "none"]
Feature = Literal["head", "cls", "mean"]
Calibration = Literal["all", "released"]  # sls.calibration.CALIBRATIONS


@PRUNERS.register("sls")
@dataclass
class SLS(Pruner):
    """Straightforward Layer-wise Pruning (Han & Tang, ECCV 2024), as the authors' code does it.

    Keeps the first k blocks, where k is found by scanning the per-block silhouette of a t-SNE
    embedding of block features on train800val200 from the top block down (spec: SLS.md): what
    the head reads (a ViT's CLS token, or its patch-token mean where the head pools; on a Swin
    the token mean after the patch merging that ends the block's stage, as the authors' code).

    `metric` swaps the score and nothing else (the threshold rule is the same). `probe` and `knn`
    (`sls.score.LABEL_METRICS`) are held-out accuracies on the block's features: they use no
    embedding (`embedding` is ignored) and are scored on labels the classifier was not fitted
    on, unlike the silhouette, which is computed on the points the embedding was fitted to. They
    score every block (as `full_curve` does: the decision is the lazy scan's, and a probe costs
    seconds where t-SNE costs minutes) and log the curve as `sls/<metric>/block_NN` too, the
    reference curve of the criteria table (`bench.tables.criteria`).
    """

    fixed_budget = "auto"  # SLS chooses its own depth
    backbones = FAMILIES

    alpha: float = 0.3  # threshold = alpha * SC_N below the top block
    min_blocks: int = 1  # floor on k
    embedding: Embedding = "tsne"  # tsne: scikit-learn's
    metric: Metric = "silhouette"  # davies_bouldin: scored as 1/DB
    feature: Feature = "head"  # what the head reads (logged as the tag sls.feature); cls; mean
    # all: every calibration image for every block; released: prune.py's reshuffled 960 of 1000
    calibration: Calibration = "all"
    embed_seed: int = 0  # t-SNE random_state (the authors: 0)
    full_curve: bool = False  # embed every block (for plots) instead of the lazy scan
    # Processes embedding blocks at once (0: auto, see `scan_workers`; 1: in this process).
    # Speed only: the decision and its scores are the sequential scan's.
    workers: int = 0

    speed_only = ("workers",)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.workers < 0:
            raise UserError(f"pruners.sls.workers must be >= 0 (0: auto), got {self.workers}")
        if self.min_blocks < 1:
            raise UserError(f"pruners.sls.min_blocks must be >= 1, got {self.min_blocks}")

    def prune(self, ctx: PruneContext) -> PruneResult:
        start = time.perf_counter()
        feature = resolve_feature(ctx.model, self.feature)
        features, labels = block_features(ctx.model, ctx.calibration, feature)
        samples = block_samples(features, labels, self.calibration, ctx.seed)
        features_done = time.perf_counter()
        decision, workers = self.decide(samples)
        seconds = time.perf_counter() - start
        model = keep_first(ctx.model, decision.k)
        plot = ctx.artifact_dir / "sls_scores.png"
        plot_scores(decision, plot)
        record = {**decision.to_dict(), **self.score_record(feature), "settings": self.settings(),
                  "seconds": seconds, "versions": _versions()}  # fmt: skip
        metrics = {
            "k": decision.k,
            "decision_seconds": seconds,
            "feature_seconds": features_done - start,
            "scan_seconds": start + seconds - features_done,
            "blocks_embedded": len(decision.scores),
            "scan_workers": workers,
            "calibration_images": len(samples[-1][1]),
        }
        if decision.threshold is not None:
            metrics["threshold"] = decision.threshold
        metrics.update(margins(decision))
        metrics.update({f"score/block_{b:02d}": v for b, v in decision.scores.items()})
        if self.metric in LABEL_METRICS:
            metrics.update({f"{self.metric}/block_{b:02d}": v for b, v in decision.scores.items()})
        return PruneResult(model, {"k": decision.k}, record, metrics, [plot],
                           tags={R.SLS_FEATURE: feature}, retrain=True)  # fmt: skip

    def decide(self, samples) -> tuple[DepthDecision, int]:
        """The depth decision on each block's (features, labels) sample and the number of
        processes that computed it."""
        on_features = self.metric in LABEL_METRICS  # cheap: scored in this process
        lazy = not (self.full_curve or on_features)
        score_fn = partial(sample_score, embedding=self.embedding, metric=self.metric,
                           seed=self.embed_seed)  # fmt: skip
        workers = 1 if on_features else self.scan_workers(len(samples))
        rule = (self.alpha, self.min_blocks, lazy)
        if workers > 1:
            threads = max(1, torch.get_num_threads() // workers)
            return decide_depth_parallel(score_fn, samples, *rule, workers, threads), workers
        return decide_depth(lambda block: score_fn(samples[block - 1]), len(samples), *rule), 1

    def scan_workers(self, num_blocks: int) -> int:
        """`workers`, where 0 (auto) means one per torch thread (this process's share of the
        CPU) for t-SNE and 1 for the embeddings that take milliseconds."""
        if self.workers == 0 and self.embedding in CHEAP_EMBEDDINGS:
            return 1
        return min(self.workers or torch.get_num_threads(), num_blocks)

    def score_record(self, feature: str) -> dict[str, str]:
        """What the scores in the record are (e.g. `1/davies_bouldin`) and what they were
        computed on."""
        on_features = self.metric in LABEL_METRICS
        points = "block features (no embedding)" if on_features else f"{self.embedding} embedding"
        return {"score_name": score_name(self.metric), "score_description": describe(self.metric),
                "scored_on": f"{points} of the {feature} token"}  # fmt: skip

    @classmethod
    def restore(cls, model, state):
        return keep_first(model, state["k"])


def margins(decision) -> dict[str, float]:
    """How near a call k was: the last kept block's score minus T (>= 0) and, where the scan
    stopped at a failing block, that block's score minus T (< 0); `margin` is the smaller
    distance. On the offline default block 6 sits within 0.02 of T, and the torch thread count
    alone moves k between 6 and 7."""
    if decision.threshold is None or decision.reason not in ("threshold", "all_pass"):
        return {}
    kept = decision.scores[decision.k] - decision.threshold
    if decision.reason == "all_pass":
        return {"margin_kept": kept, "margin": kept}
    failed = decision.scores[decision.k - 1] - decision.threshold
    return {"margin_kept": kept, "margin_failed": failed, "margin": min(kept, -failed)}


def _versions() -> dict[str, str]:
    out = {}
    for package in ("scikit-learn", "openTSNE", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return out
