"""Plot of the per-block scores behind a depth decision."""

from __future__ import annotations

from pathlib import Path

from sls.select import DepthDecision


def plot_scores(decision: DepthDecision, path: str | Path) -> None:
    """Save a PNG: computed scores by block, the threshold T, and the chosen k."""
    # Figure + Agg canvas directly: no pyplot, so no global backend switch and no leaked figures.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    blocks = sorted(decision.scores)
    ax.plot(blocks, [decision.scores[b] for b in blocks], marker="o", label="score")
    if decision.threshold is not None:
        ax.axhline(
            decision.threshold, color="tab:red", ls="--", label=f"T = {decision.threshold:.3f}"
        )
    ax.axvline(decision.k, color="tab:green", ls=":", label=f"k = {decision.k}")
    ax.set_xlim(0.5, decision.num_blocks + 0.5)
    ax.set_xticks(range(1, decision.num_blocks + 1))
    ax.set_xlabel("block")
    ax.set_ylabel("separability score")
    ax.set_title(f"SLS depth: keep {decision.k}/{decision.num_blocks} blocks ({decision.reason})")
    ax.legend(loc="best")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
