"""Pear-style adapter pruning: the sharing map, the knowledge checkpoint, the stored state."""

import pytest
import torch

from baselines.pear import adapter_paths, distil_shared, fold_adapters, sharing_map, teacher_io
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


def test_without_a_knowledge_checkpoint_the_shared_adapters_keep_their_own_weights(tmp_path):
    """`knowledge=none`: every kept adapter is exactly the transferred one."""
    result = make_pruner("pear", {**OPTIONS, "knowledge": "none"}).prune(_context(tmp_path))
    transferred = dict(petl_model("convpass").named_parameters())
    sharing = result.state["sharing"]
    for path in adapter_paths(result.model):
        source = sharing.get(path, path)  # a pruned position holds the adapter it shares
        for name, param in result.model.get_submodule(path).named_parameters():
            assert torch.equal(param, transferred[f"{source}.{name}"]), (path, name)
    assert "keeps its own weights" in result.tags["pear.knowledge_checkpoint"]
    assert "code could not be read" in result.tags["reconstruction"]


def test_by_default_each_pruned_position_shares_the_highest_scored_kept_adapter(tmp_path):
    """The abstract's "the more important unpruned ones": every pruned position of a role points
    at the kept adapter of that role with the highest Taylor score."""
    pruner = make_pruner("pear", OPTIONS)
    assert (pruner.share, pruner.knowledge) == ("important", "distil")
    result = pruner.prune(_context(tmp_path))
    scores, sharing = result.decision["scores"], result.state["sharing"]
    kept = [p for p in adapter_paths(result.model) if p not in sharing]
    for path, target in sharing.items():
        role = path.split(".")[-1]
        same_role = [k for k in kept if k.endswith(role)]
        assert target == max(same_role, key=lambda k: scores[k]), path


def test_the_most_important_or_the_nearest_kept_adapter_is_shared():
    adapters = [f"blocks.{i}.{r}" for i in range(4) for r in ("attn_branch", "mlp_branch")]
    scores = {p: float(i) for i, p in enumerate(adapters)}  # deeper blocks score higher
    pruned = ["blocks.0.attn_branch", "blocks.0.mlp_branch", "blocks.2.mlp_branch"]
    assert sharing_map(adapters, pruned, scores) == {
        "blocks.0.attn_branch": "blocks.3.attn_branch",
        "blocks.0.mlp_branch": "blocks.3.mlp_branch",
        "blocks.2.mlp_branch": "blocks.3.mlp_branch",
    }
    assert sharing_map(adapters, pruned, scores, "nearest") == {
        "blocks.0.attn_branch": "blocks.1.attn_branch",
        "blocks.0.mlp_branch": "blocks.1.mlp_branch",
        "blocks.2.mlp_branch": "blocks.3.mlp_branch",  # blocks 1 and 3 tie: the higher score
    }


def test_the_knowledge_checkpoint_fits_the_shared_adapter_to_what_each_position_computed():
    """`distil`: the shared adapter is fitted to the transferred adapters' outputs at the
    positions it serves, on their inputs in the unpruned model. Its error there falls below
    sharing it as it was (one adapter cannot compute three independent ones: for such adapters
    the best fit is about half that error), the pruned positions' errors fall while its own
    position's rises from 0 (the trade-off), and nothing else moves."""
    model, original = petl_model("convpass"), petl_model("convpass")
    images = torch.randn(32, 3, 16, 16)
    paths = ["blocks.0.attn_branch", "blocks.1.attn_branch", "blocks.2.attn_branch"]
    sharing = {paths[0]: paths[1], paths[2]: paths[1]}
    seen = teacher_io(original, paths, images)

    def errors(adapter):
        with torch.no_grad():
            return [torch.nn.functional.mse_loss(adapter(x), y).item() for x, y in seen.values()]

    before = errors(model.get_submodule(paths[1]))
    result = distil_shared(model, sharing, images, batch_size=16, epochs=20, lr=1e-2)
    after = errors(model.get_submodule(paths[1]))
    assert before[1] == 0.0 < after[1]
    assert after[0] < before[0] and after[2] < before[2]
    assert sum(after) < 0.8 * sum(before)
    assert result["knowledge_error_before"] == pytest.approx(sum(before) / 3, rel=1e-4)
    assert result["knowledge_error_after"] == pytest.approx(sum(after) / 3, rel=1e-4)
    untouched = dict(original.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(param, untouched[name]) == (not name.startswith(paths[1])), name


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
    sharing = sharing_map(
        adapters, ["blocks.0.attn_branch", "blocks.2.mlp_branch"], scores, "nearest"
    )
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
