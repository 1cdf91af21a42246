"""The similarity criteria `angular` (Gromov et al. 2024) and `cka` (Pons et al. 2024) on
hand-built examples and against a direct computation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from baselines.similarity import (
    angular_distances,
    least_distance_run,
    linear_cka,
    run_distances,
)
from bench.models.surgery import keep_blocks
from bench.pruning import Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model

# --- angular: a toy model whose blocks rotate each 2-D token by a known angle -----------------


class Rotate(nn.Module):
    """Rotates the CLS token (token 0) by `cls_angle` and the other tokens by `patch_angle`."""

    def __init__(self, cls_angle: float, patch_angle: float | None = None) -> None:
        super().__init__()
        self.cls_angle = cls_angle
        self.patch_angle = cls_angle if patch_angle is None else patch_angle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = torch.full(x.shape[1:2], self.patch_angle, dtype=x.dtype)
        angles[0] = self.cls_angle
        c, s = torch.cos(angles)[:, None], torch.sin(angles)[:, None]
        return torch.cat([c * x[..., :1] - s * x[..., 1:], s * x[..., :1] + c * x[..., 1:]], -1)


class Rotations(nn.Module):
    def __init__(self, blocks: list[Rotate]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


ANGLES = [0.9, 0.1, 0.2, 0.05, 0.8, 0.7]  # radians; the two smallest (blocks 2, 4) are apart


def _tokens(images: int = 12, tokens: int = 3, seed: int = 0) -> list:
    x = torch.randn(images, tokens, 2, generator=torch.Generator().manual_seed(seed))
    return [(x[:5], torch.zeros(5)), (x[5:], torch.zeros(images - 5))]  # two batches


def _context(model: nn.Module, keep: int, calibration=None) -> PruneContext:
    return PruneContext(model, calibration or _tokens(), get_task("digits"),
                        Budget("keep", keep), 0, torch.device("cpu"), None)  # fmt: skip


def test_angular_distances_are_the_rotation_angles_over_pi():
    model = Rotations([Rotate(a) for a in ANGLES])
    distances = angular_distances(model, _tokens())
    cumulative = np.concatenate([[0.0], np.cumsum(ANGLES)])
    expected = np.abs(cumulative[:, None] - cumulative[None, :]) / math.pi
    np.testing.assert_allclose(distances, expected, atol=1e-7)


@pytest.mark.parametrize(("keep", "removed"), [(4, [2, 3]), (3, [1, 2, 3]), (5, [3]), (6, [])])
def test_angular_removes_the_contiguous_run_with_the_smallest_angle(keep, removed):
    # n = 2: runs across blocks (0,1) 1.0, (1,2) 0.3, (2,3) 0.25, (3,4) 0.85, (4,5) 1.5 rad
    result = make_pruner("angular").prune(_context(Rotations([Rotate(a) for a in ANGLES]), keep))
    assert result.decision["dropped"] == removed
    assert len(result.model.blocks) == keep
    assert result.metrics["removed/block_04"] == float(3 in removed)
    assert sum(v for m, v in result.metrics.items() if m.startswith("removed/")) == len(removed)
    single = [result.metrics[f"score/block_{b:02d}"] for b in range(1, 7)]
    np.testing.assert_allclose(single, np.array(ANGLES) / math.pi, atol=1e-7)  # n = 1 curve


def test_angular_all_tokens_averages_the_per_token_distance():
    blocks = [Rotate(0.1, 0.5), Rotate(0.6, 0.1), Rotate(0.2, 0.2)]  # CLS and patches differ
    cls = make_pruner("angular").prune(_context(Rotations(copy.deepcopy(blocks)), 2))
    every = make_pruner("angular", {"tokens": "all"}).prune(_context(Rotations(blocks), 2))
    assert cls.decision["dropped"] == [0]  # CLS angles 0.1, 0.6, 0.2
    assert every.decision["dropped"] == [2]  # token means (0.1 + 2 * 0.5) / 3 = 0.37, 0.27, 0.2
    np.testing.assert_allclose(every.decision["scores"], np.array([1.1, 0.8, 0.6]) / 3 / math.pi)


def test_least_distance_run_takes_the_earliest_on_ties_and_checks_n():
    d = np.zeros((5, 5))
    for i, j, v in [(0, 2, 0.4), (1, 3, 0.2), (2, 4, 0.2)]:
        d[i, j] = d[j, i] = v
    assert run_distances(d, 2) == [0.4, 0.2, 0.2]
    assert least_distance_run(d, 2) == 1
    assert least_distance_run(d, 0) == 0
    with pytest.raises(ValueError, match="does not fit"):
        least_distance_run(d, 5)


# --- cka --------------------------------------------------------------------------------------


def _cka_by_gram(x: np.ndarray, y: np.ndarray) -> float:
    """CKA the other way round: HSIC of centred linear Gram matrices (Kornblith et al. eq. 3)."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.trace(k @ l_) / np.sqrt(np.trace(k @ k) * np.trace(l_ @ l_)))


def test_linear_cka_on_hand_built_features():
    x = np.array([[1.0], [2.0], [3.0], [5.0]])
    y = np.array([[2.0], [1.0], [4.0], [4.0]])
    assert linear_cka(x, y) == pytest.approx(np.corrcoef(x[:, 0], y[:, 0])[0, 1] ** 2)  # 1-D
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(30, 3))
    rotation, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    assert linear_cka(a, 3.0 * a @ rotation + 1.0) == pytest.approx(1.0)
    assert linear_cka(a, b) == pytest.approx(_cka_by_gram(a, b))
    assert linear_cka(a, np.ones((30, 2))) == 0.0


def _final_features(model: nn.Module, loader) -> np.ndarray:
    with torch.no_grad():
        parts = [model.forward_head(model.forward_features(x), pre_logits=True) for x, _ in loader]
    return torch.cat(parts).double().numpy()


def test_cka_equals_a_direct_greedy_computation_on_a_tiny_model():
    model, loader = petl_model("convpass"), calibration_loader()
    reference = _final_features(model, loader)
    kept, expected_steps, first = [0, 1, 2, 3], [], None
    while len(kept) > 1:
        candidates = {}
        for block in kept:
            pruned = keep_blocks(copy.deepcopy(model), [i for i in kept if i != block])
            candidates[block] = _cka_by_gram(_final_features(pruned, loader), reference)
        first = first or candidates
        best = max(kept, key=lambda b: (candidates[b], -b))
        expected_steps.append((best, candidates[best]))
        kept.remove(best)

    result = make_pruner("cka").prune(_context(petl_model("convpass"), 1, loader))
    steps = [(s["removed"], s["cka"]) for s in result.decision["steps"]]
    assert [b for b, _ in steps] == [b for b, _ in expected_steps]
    np.testing.assert_allclose([c for _, c in steps], [c for _, c in expected_steps], rtol=1e-9)
    assert result.decision["kept"] == kept
    curve = [result.metrics[f"score/block_{b:02d}"] for b in range(1, 5)]
    np.testing.assert_allclose(curve, [1.0 - first[b] for b in range(4)], rtol=1e-9)
    assert [result.metrics[f"removed/block_{b:02d}"] for b in range(1, 5)] == [
        float(b not in kept) for b in range(4)
    ]
