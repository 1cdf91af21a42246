"""Pear-style adapter pruning: the sharing map, the knowledge checkpoint, the stored state."""

import pytest
import torch

from baselines.pear import adapter_paths, fold_adapters, sharing_map
from bench.budget import achieved_budget, petl_params, requested_budget
from bench.errors import UserError
from bench.models.petl import attach_petl, is_task_parameter, resolve_settings
from bench.pruning import Budget, PruneContext, make_pruner
from bench.state import rebuild, save_task_state
from bench.tasks import get_task
from tests.conftest import calibration_loader, petl_model, tiny_vit

OPTIONS = {"batches": 2, "batch_size": 16}


def _context(tmp_path, petl="convpass", budget="keep:2"):
    return PruneContext(petl_model(petl), calibration_loader(), get_task("digits"),
                        Budget.parse(budget), 0, torch.device("cpu"), tmp_path)  # fmt: skip


@pytest.mark.parametrize(("petl", "budget", "pruned"), [("convpass", "keep:2", 4),
                         ("convpass", "keep:3", 2), ("adapter", "params:0.5", 2)])  # fmt: skip
def test_sharing_map_points_only_at_kept_adapters(tmp_path, petl, budget, pruned):
    result = make_pruner("pear", OPTIONS).prune(_context(tmp_path, petl, budget))
    sharing = result.state["sharing"]
    assert len(sharing) == pruned
    kept = set(adapter_paths(result.model)) - set(sharing)
    assert set(sharing.values()) <= kept
    for path, target in sharing.items():
        assert path.split(".")[-1] == target.split(".")[-1]  # same role
        assert result.model.get_submodule(path) is result.model.get_submodule(target)
    scores = result.decision["scores"]
    assert max(scores[p] for p in sharing) <= min(scores[k] for k in kept)
    assert result.metrics["petl_removed_fraction"] == pytest.approx(
        pruned / (8 if petl == "convpass" else 4)
    )


def test_stored_state_holds_kept_adapters_and_rebuilds_the_model(tmp_path):
    result = make_pruner("pear", OPTIONS).prune(_context(tmp_path))
    model = result.model.eval()
    for name, param in model.named_parameters():  # shared adapters still train
        assert param.requires_grad == is_task_parameter(model, name), name
    assert petl_params(model) == petl_params(petl_model("convpass")) // 2
    size = save_task_state(model, tmp_path / "s.safetensors",
                           {"pruner": "pear", "pruner_state": result.state})  # fmt: skip
    assert size < save_task_state(petl_model("convpass"), tmp_path / "u.safetensors", {})

    def fresh(meta):
        return attach_petl(tiny_vit(seed=0), resolve_settings("convpass", "digits"))

    rebuilt = rebuild(tmp_path / "s.safetensors", fresh).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    for path, target in result.state["sharing"].items():
        assert rebuilt.get_submodule(path) is rebuilt.get_submodule(target)


def test_by_default_the_shared_adapters_keep_their_own_weights(tmp_path):
    """No averaged weights are stored: every kept adapter is exactly the transferred one."""
    result = make_pruner("pear", OPTIONS).prune(_context(tmp_path))
    transferred = dict(petl_model("convpass").named_parameters())
    sharing = result.state["sharing"]
    for path in adapter_paths(result.model):
        source = sharing.get(path, path)  # a pruned position holds the adapter it shares
        for name, param in result.model.get_submodule(path).named_parameters():
            assert torch.equal(param, transferred[f"{source}.{name}"]), (path, name)
    assert "no weight folding" in result.tags["pear.fold"]
    assert "original code could not be checked" in result.tags["reconstruction"]


def test_fold_is_a_score_weighted_average():
    model = petl_model("convpass")
    a, b = model.blocks[0].attn_branch, model.blocks[1].attn_branch
    expected = (1 * a.up.weight + 3 * b.up.weight) / 4
    fold_adapters(model, {"blocks.0.attn_branch": "blocks.1.attn_branch"},
                  {"blocks.0.attn_branch": 1.0, "blocks.1.attn_branch": 3.0}, "taylor")  # fmt: skip
    assert torch.allclose(b.up.weight, expected)


def test_nearest_kept_adapter_of_the_same_role_is_shared():
    adapters = [f"blocks.{i}.{r}" for i in range(4) for r in ("attn_branch", "mlp_branch")]
    scores = {p: 1.0 for p in adapters}
    sharing = sharing_map(adapters, ["blocks.0.attn_branch", "blocks.2.mlp_branch"], scores)
    assert sharing == {"blocks.0.attn_branch": "blocks.1.attn_branch",
                       "blocks.2.mlp_branch": "blocks.1.mlp_branch"}  # fmt: skip


def test_lora_is_refused_clearly(tmp_path):
    with pytest.raises(UserError, match="per-block adapters"):
        make_pruner("pear", OPTIONS).prune(_context(tmp_path, "lora"))


def test_budget_metrics_on_the_petl_axis(tmp_path):
    pruner = make_pruner("pear", OPTIONS)
    result = pruner.prune(_context(tmp_path))
    achieved = achieved_budget(petl_model("convpass"), result.model, 1.0, 1.0)
    assert achieved["budget/petl_removed_fraction"] == pytest.approx(0.5)
    assert achieved["budget/params_removed_fraction"] == 0.0  # the backbone is untouched
    requested = requested_budget(Budget.parse("keep:2"), 4, pruner.budget_axis)
    assert requested == {"budget/petl_target_fraction": 0.5}
