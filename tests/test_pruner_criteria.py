"""Each pruner removes what its criterion says, on a hand-built model whose answer is known.

The contract (test_pruner_contract.py) checks that a pruner meets its budget and rebuilds; here
the question is *which* blocks, channels or adapters go: the tiny 4-block Convpass ViT is given
blocks that do nothing, channels with known norms or no effect at all, adapters that are dead,
and each pruner must keep and drop exactly what its criterion implies. One test per family.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import bench.plugins  # noqa: F401  (registers every pruner)
import sls.pruner
from bench.models.surgery import keep_blocks, timm_block
from bench.pruning import PRUNERS, Budget, PruneContext, make_pruner
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model

HEADS, HEAD_DIM, HIDDEN = 2, 16, 128  # the tiny ViT's attention and MLP widths
FAST = {
    "taylor": {"batches": 2, "batch_size": 16},
    "pear": {"batches": 2, "batch_size": 16},
    "spa": {"batches": 2, "batch_size": 16},
    "block_benefit": {"epochs": 2, "batch_size": 32, "update_every": 2},
}
# angular and cka: hand-built cases in test_similarity.py; depgraph_sls: test_width.py
TESTED = {"none", "retrained", "sls", "drop_last", "fixed_depth", "random_blocks",
          "block_influence", "magnitude", "taylor", "block_benefit", "pear", "spa",
          "angular", "cka", "depgraph_sls"}  # fmt: skip


def _prune(name, model, budget="keep:2", seed=0, options=None, tmp_path=None):
    ctx = PruneContext(model, calibration_loader(), get_task("digits"), Budget.parse(budget), seed,
                       torch.device("cpu"), tmp_path)  # fmt: skip
    return make_pruner(name, {**FAST.get(name, {}), **(options or {})}).prune(ctx)


def _same_outputs(a, b) -> bool:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_every_registered_pruner_has_a_criterion_test_here():
    assert set(PRUNERS.names()) <= TESTED, sorted(set(PRUNERS.names()) - TESTED)


# ---------------------------------------------------------------------------------------------
# the controls and the layer-wise pruners


def test_the_controls_remove_nothing(tmp_path):
    for name, retrain in (("none", False), ("retrained", True)):
        model = petl_model("convpass")
        result = _prune(name, copy.deepcopy(model), tmp_path=tmp_path)
        assert result.retrain is retrain and len(result.model.blocks) == 4
        assert _same_outputs(result.model, model)


@pytest.mark.parametrize("name", ["drop_last", "fixed_depth"])
def test_truncating_pruners_keep_the_first_k_blocks(tmp_path, name):
    model = petl_model("convpass")
    result = _prune(name, copy.deepcopy(model), budget="keep:3", tmp_path=tmp_path)
    assert result.state["kept"] == [0, 1, 2]
    assert _same_outputs(result.model, keep_blocks(model, [0, 1, 2]))


def test_random_blocks_drops_a_seeded_uniform_draw(tmp_path):
    model = petl_model("convpass")
    kept = {}
    for seed in range(12):
        result = _prune("random_blocks", copy.deepcopy(model), seed=seed, tmp_path=tmp_path)
        kept[seed] = result.state["kept"]
        assert len(kept[seed]) == 2 and kept[seed] == sorted(kept[seed])
        assert _same_outputs(result.model, keep_blocks(copy.deepcopy(model), kept[seed]))
    again = _prune("random_blocks", copy.deepcopy(model), seed=5, tmp_path=tmp_path)
    assert again.state["kept"] == kept[5]  # the seed decides
    assert len({tuple(k) for k in kept.values()}) > 2  # not one fixed choice
    assert {b for k in kept.values() for b in k} == {0, 1, 2, 3}  # any block may stay ...
    assert all(any(b not in k for k in kept.values()) for b in range(4))  # ... or go


def _make_identity(block) -> None:
    """The block adds nothing to the residual stream: attention, MLP and both Convpass branches
    write zeros, so its output equals its input (influence 0)."""
    b = timm_block(block)
    with torch.no_grad():
        for linear in (b.attn.proj, b.mlp.fc2, block.attn_branch.up, block.mlp_branch.up):
            linear.weight.zero_()
            linear.bias.zero_()


def test_block_influence_keeps_the_blocks_that_change_their_tokens_most(tmp_path):
    model = petl_model("convpass")
    for i in (0, 2):
        _make_identity(model.blocks[i])
    result = _prune("block_influence", copy.deepcopy(model), tmp_path=tmp_path)
    scores = result.decision["scores"]
    assert scores[0] == pytest.approx(0.0, abs=1e-6) and scores[2] == pytest.approx(0.0, abs=1e-6)
    assert min(scores[1], scores[3]) > 1e-3
    assert result.state["kept"] == [1, 3]
    assert _same_outputs(result.model, keep_blocks(model, [1, 3]))


def _silhouette(features: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(features, labels))


def test_sls_keeps_the_blocks_down_to_the_first_whose_separability_fails(tmp_path, monkeypatch):
    """Block CLS features made by hand: classes separate well at blocks 3 and 4, barely at 2, not
    at 1. With alpha = 0.3 the scan from the top stops at block 2: keep 3."""
    rng = np.random.default_rng(0)
    labels = np.arange(120) % 4
    centres = rng.normal(size=(4, 8))
    features = [
        (centres[labels] * separation + rng.normal(size=(120, 8))).astype(np.float32)
        for separation in (0.0, 0.3, 4.0, 6.0)
    ]
    monkeypatch.setattr(sls.pruner, "block_features", lambda *args, **kwargs: (features, labels))
    model = petl_model("convpass")
    result = _prune("sls", copy.deepcopy(model), options={"embedding": "none"}, tmp_path=tmp_path)
    scores = [_silhouette(f, labels) for f in features]
    threshold = 0.3 * scores[3]
    assert scores[2] >= threshold > scores[1]  # the hand-built answer, computed independently
    assert result.state == {"k": 3} and result.metrics["k"] == 3
    assert result.metrics["threshold"] == pytest.approx(threshold)
    assert _same_outputs(result.model, keep_blocks(model, [0, 1, 2]))


# ---------------------------------------------------------------------------------------------
# width pruners: channels with known norms, and channels that do nothing


def _graded_channels(model, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every channel's coupled weights get unit norm times a distinct scale: a head-dim position
    the same scale in every head (q, k, v rows and the proj column), an MLP hidden unit its own
    (fc1 row and fc2 column); their biases are zero. Returns per block (position scales, hidden
    unit scales)."""
    generator = torch.Generator().manual_seed(seed)
    scales = []
    with torch.no_grad():
        for block in model.blocks:
            b = timm_block(block)
            position = 1.2 ** torch.randperm(HEAD_DIM, generator=generator).float()
            channel = position.repeat(HEADS)  # channel c = head * HEAD_DIM + position
            qkv = b.attn.qkv.weight.view(3, HEADS * HEAD_DIM, -1)
            qkv.div_(qkv.norm(dim=2, keepdim=True)).mul_(channel.view(1, -1, 1))
            b.attn.qkv.bias.zero_()
            proj = b.attn.proj.weight
            proj.div_(proj.norm(dim=0, keepdim=True)).mul_(channel)
            hidden = 1.05 ** torch.randperm(HIDDEN, generator=generator).float()
            fc1, fc2 = b.mlp.fc1.weight, b.mlp.fc2.weight
            fc1.div_(fc1.norm(dim=1, keepdim=True)).mul_(hidden.view(-1, 1))
            b.mlp.fc1.bias.zero_()
            fc2.div_(fc2.norm(dim=0, keepdim=True)).mul_(hidden)
            scales.append((position, hidden))
    return scales


def _top(scores: torch.Tensor, n: int) -> list[int]:
    return sorted(torch.argsort(scores, descending=True)[:n].tolist())


def _positions(kept_attn: list[int]) -> list[list[int]]:
    """Kept attention channels as head-dim positions, per head."""
    return [[c - h * HEAD_DIM for c in kept_attn if c // HEAD_DIM == h] for h in range(HEADS)]


@pytest.mark.parametrize(("name", "options"), [("magnitude", {}), ("spa", {})])
def test_magnitude_criteria_keep_the_largest_norm_channels(tmp_path, name, options):
    model = petl_model("splora" if name == "spa" else "convpass")  # spa prunes SPLoRA models
    scales = _graded_channels(model)
    result = _prune(name, model, options=options, tmp_path=tmp_path)
    pruned_something = False
    for kept, (position, hidden) in zip(result.state["blocks"], scales, strict=True):
        assert kept["mlp"] == _top(hidden, len(kept["mlp"]))
        per_head = _positions(kept["attn"])
        assert all(p == _top(position, len(per_head[0])) for p in per_head)
        pruned_something |= len(kept["mlp"]) < HIDDEN and len(per_head[0]) < HEAD_DIM
    assert pruned_something


def _dead_channels(model, seed: int = 0) -> list[tuple[set[int], set[int]]]:
    """Per block, 4 head-dim positions (in every head) and 32 hidden units that do nothing: their
    q, k, v rows and biases, proj columns, fc1 rows and biases and fc2 columns are zero, so their
    output and every first-order (Taylor) score of them is exactly 0. Returns (attention channels,
    hidden units) per block."""
    generator = torch.Generator().manual_seed(seed)
    dead = []
    with torch.no_grad():
        for block in model.blocks:
            b = timm_block(block)
            positions = torch.randperm(HEAD_DIM, generator=generator)[:4].tolist()
            channels = [h * HEAD_DIM + p for h in range(HEADS) for p in positions]
            qkv, bias = b.attn.qkv.weight.view(3, HEADS * HEAD_DIM, -1), b.attn.qkv.bias.view(3, -1)
            qkv[:, channels] = 0.0
            bias[:, channels] = 0.0
            b.attn.proj.weight[:, channels] = 0.0
            units = torch.randperm(HIDDEN, generator=generator)[:32].tolist()
            b.mlp.fc1.weight[units] = 0.0
            b.mlp.fc1.bias[units] = 0.0
            b.mlp.fc2.weight[:, units] = 0.0
            dead.append((set(channels), set(units)))
    return dead


def _dead_go_first(kept: list[int], dead: set[int], width: int) -> bool:
    """The channels that do nothing are the first to go: none is kept unless every live one is."""
    live = set(range(width)) - dead
    return not (set(kept) & dead) if len(kept) <= len(live) else live <= set(kept)


@pytest.mark.parametrize(("name", "options"), [("taylor", {}), ("spa", {"importance": "taylor"}),
                                               ("block_benefit", {})])  # fmt: skip
def test_taylor_criteria_prune_the_channels_without_effect_first(tmp_path, name, options):
    model = petl_model("splora" if name == "spa" else "convpass")  # spa prunes SPLoRA models
    dead = _dead_channels(model)
    result = _prune(name, model, options=options, tmp_path=tmp_path)
    pruned_dead = 0
    for kept, (attn, mlp) in zip(result.state["blocks"], dead, strict=True):
        assert _dead_go_first(kept["attn"], attn, HEADS * HEAD_DIM), (kept["attn"], attn)
        assert _dead_go_first(kept["mlp"], mlp, HIDDEN), (kept["mlp"], mlp)
        pruned_dead += len(attn - set(kept["attn"])) + len(mlp - set(kept["mlp"]))
    assert pruned_dead > 0


# ---------------------------------------------------------------------------------------------
# adapter pruning


def test_pear_prunes_the_adapters_with_the_lowest_taylor_score(tmp_path):
    """Three adapters are dead (zero up-projection: score exactly 0), one is weak (its
    up-projection scaled by 1e-3); keep:2 of 4 blocks removes half of the 8 adapters: those 4."""
    model = petl_model("convpass")
    dead, weak = (
        ["blocks.0.mlp_branch", "blocks.2.attn_branch", "blocks.3.mlp_branch"],
        ("blocks.1.attn_branch"),
    )
    with torch.no_grad():
        for path in dead:
            up = model.get_submodule(path).up
            up.weight.zero_()
            up.bias.zero_()
        model.get_submodule(weak).up.weight.mul_(1e-3)
        model.get_submodule(weak).up.bias.mul_(1e-3)
    result = _prune("pear", model, options={"knowledge": "none"}, tmp_path=tmp_path)
    scores = result.decision["scores"]
    assert all(scores[p] == 0.0 for p in dead)
    assert 0.0 < scores[weak] < min(s for p, s in scores.items() if p not in [*dead, weak])
    assert sorted(result.state["sharing"]) == sorted([*dead, weak])
