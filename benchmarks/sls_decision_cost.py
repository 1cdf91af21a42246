"""Cost of the SLS depth decision: reference (t-SNE on every block) vs the lazy top-down scan.

Run: python benchmarks/sls_decision_cost.py [--features PATH.npz] [--blocks 12 --samples 1000]

Without --features the data are synthetic features of ViT-B size whose class structure grows
with depth, so the decision is non-trivial and the lazy scan stops early. The .npz form holds
`features` (N_blocks, n, D) and `labels` (n,), e.g. dumped from a trained model.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from sls import decide_depth, embed, score, select_depth


def synthetic_features(
    num_blocks: int = 12, samples: int = 1000, dim: int = 768, classes: int = 10, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Gaussian classes whose mean separation grows linearly with the block index."""
    rng = np.random.default_rng(seed)
    labels = np.arange(samples) % classes
    means = rng.normal(size=(classes, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    # Separation 10 at the top block: t-SNE silhouette ~0.8 there, ~0 around half depth.
    features = [
        (10.0 * block / num_blocks * means[labels] + rng.normal(size=(samples, dim))).astype(
            np.float32
        )
        for block in range(1, num_blocks + 1)
    ]
    return features, labels


def _timed(fn: Callable[[], tuple[int, dict[int, float]]]) -> dict:
    start = time.perf_counter()
    k, scores = fn()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "k": k, "blocks_embedded": len(scores), "scores": scores}


def compare(features_per_block: list[np.ndarray], labels: np.ndarray, alpha: float = 0.3) -> dict:
    """Time the reference procedure and the lazy scans; report k and blocks embedded for each."""
    num_blocks = len(features_per_block)

    def sc(method: str) -> Callable[[int], float]:
        return lambda block: score(embed(features_per_block[block - 1], method), labels)

    def reference() -> tuple[int, dict[int, float]]:
        scores = [sc("tsne")(block) for block in range(1, num_blocks + 1)]
        return select_depth(scores, alpha), dict(enumerate(scores, start=1))

    def lazy(method: str) -> Callable[[], tuple[int, dict[int, float]]]:
        def run() -> tuple[int, dict[int, float]]:
            decision = decide_depth(sc(method), num_blocks, alpha)
            return decision.k, decision.scores

        return run

    # Imports and first-call set-up would otherwise be charged to whichever variant runs first.
    warm = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    for method in ("tsne", "opentsne"):
        embed(warm, method)
    variants = {
        "reference (sklearn t-SNE, all blocks)": _timed(reference),
        "lazy sklearn t-SNE (default)": _timed(lazy("tsne")),
        "lazy openTSNE": _timed(lazy("opentsne")),
    }
    ref = variants["reference (sklearn t-SNE, all blocks)"]
    for result in variants.values():
        result["ratio_vs_reference"] = result["seconds"] / ref["seconds"]
        result["k_agrees"] = result["k"] == ref["k"]
    return {"num_blocks": num_blocks, "alpha": alpha, "variants": variants}


def print_table(result: dict) -> None:
    """Print one row per variant, whether its k agrees with the reference, and its scores."""
    print(f"blocks N = {result['num_blocks']}, alpha = {result['alpha']}")
    print(f"{'variant':<40} {'seconds':>8} {'k':>3} {'embedded':>9} {'ratio':>6} {'k agrees':>9}")
    for name, r in result["variants"].items():
        print(
            f"{name:<40} {r['seconds']:>8.1f} {r['k']:>3} {r['blocks_embedded']:>9} "
            f"{r['ratio_vs_reference']:>6.2f} {'yes' if r['k_agrees'] else 'NO':>9}"
        )
    for name, r in result["variants"].items():
        scores = " ".join(f"{b}:{s:.3f}" for b, s in sorted(r["scores"].items()))
        print(f"SC, {name}: {scores}")


def demo_features() -> tuple[list[np.ndarray], np.ndarray]:
    """Block features of the offline demo's trained PETL model (the cached transfer if any)."""
    from bench.config import load_config
    from bench.data.task_data import calibration_loader, load_data
    from bench.gpus import resolve_device
    from bench.models.build import weights_id
    from bench.preflight import preflight
    from bench.transfer import transfer
    from sls.features import block_features

    config = load_config("demo")
    checked = preflight(config)
    device = resolve_device(config.device)
    data = load_data(config.data, checked.task, progress=False)
    trained = transfer(
        config, data, checked.settings, config.seeds[0], device, weights_id(config.model), True
    )
    return block_features(trained.model, calibration_loader(data, device))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", help=".npz with features (N_blocks, n, D) and labels (n,)")
    parser.add_argument(
        "--only", choices=["demo", "synthetic"], help="run one feature set (default: both)"
    )
    parser.add_argument("--blocks", type=int, default=12, help="synthetic blocks (default 12)")
    parser.add_argument("--samples", type=int, default=1000, help="synthetic samples (1000)")
    parser.add_argument("--alpha", type=float, default=0.3)
    args = parser.parse_args(argv)
    if args.features:
        with np.load(args.features) as data:
            sets = {args.features: (list(data["features"]), data["labels"])}
    else:
        sets = {}
        if args.only in (None, "demo"):
            sets["trained demo model (digits, 12 blocks, width 64)"] = demo_features()
        if args.only in (None, "synthetic"):
            sets["random features of ViT-B size"] = synthetic_features(args.blocks, args.samples)
    for name, (features, labels) in sets.items():
        print(
            f"\n== {name}: {len(features)} blocks x {features[0].shape}, {len(set(labels))} classes"
        )
        print_table(compare(features, labels, args.alpha))


if __name__ == "__main__":
    main()
