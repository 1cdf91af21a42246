"""SLS inside the harness: features, truncation, stored state, determinism, the logged run."""

import numpy as np
import pytest
import torch

from bench.cells import cell_key, sls_settings
from bench.data import BatchLoader, ImageSplit
from bench.models.petl import attach_petl, resolve_settings
from bench.models.surgery import keep_first
from bench.pruning import Budget, PruneContext, make_pruner
from bench.run import run_benchmark
from bench.state import rebuild, save_task_state
from bench.tasks import get_task
from bench.tracking import client
from sls import embed, score, select_depth
from sls.features import block_features
from sls.score import heldout_accuracy
from tests.conftest import tiny_config, tiny_vit


def _petl_model(seed=0):
    model = attach_petl(tiny_vit(seed=seed), resolve_settings("convpass", "digits"))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _loader(n=120, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 16, 16), dtype=np.uint8)
    labels = np.arange(n) % 4
    return BatchLoader(ImageSplit(images, labels), 50)


def test_features_are_the_cls_token_of_each_block_before_the_final_norm():
    model, loader = _petl_model(), _loader(20)
    features, labels = block_features(model, loader)
    assert len(features) == len(model.blocks) and features[0].shape == (20, 32)
    x, _ = next(iter(BatchLoader(loader.split, 20)))
    with torch.no_grad():
        tokens = model.blocks(model.norm_pre(model._pos_embed(model.patch_embed(x))))
        logits = model.forward_head(model.norm(tokens))
        expected = model.head(model.norm(torch.from_numpy(features[-1])))
    assert np.allclose(features[-1], tokens[:, 0].numpy(), atol=1e-5)  # CLS, not a patch token
    assert torch.allclose(expected, logits, atol=1e-4)  # and timm's own forward agrees
    assert torch.allclose(logits, model(x), atol=1e-4)
    assert labels.tolist() == (np.arange(20) % 4).tolist()


def test_truncation_equals_running_the_first_k_blocks_by_hand():
    model = _petl_model()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        tokens = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        for block in list(model.blocks)[:2]:
            tokens = block(tokens)
        by_hand = model.forward_head(model.norm(tokens))
        truncated = keep_first(model, 2)
        assert len(truncated.blocks) == 2
        assert torch.allclose(truncated(x), by_hand, atol=1e-6)


@pytest.fixture
def sls_context(tmp_path):
    def make():
        return PruneContext(_petl_model(), _loader(), get_task("digits"), Budget("auto"), 0,
                            torch.device("cpu"), tmp_path)  # fmt: skip

    return make


def test_same_seed_gives_the_same_k_twice(sls_context):
    pruner = make_pruner("sls", {"embedding": "pca"})
    first, second = pruner.prune(sls_context()), pruner.prune(sls_context())
    assert first.state == second.state
    assert first.decision["scores"] == second.decision["scores"]
    assert len(first.model.blocks) == first.state["k"]


def test_sls_state_round_trip_rebuilds_the_truncated_model(sls_context, tmp_path):
    result = make_pruner("sls", {"embedding": "pca"}).prune(sls_context())
    meta = {"pruner": "sls", "pruner_state": result.state, "petl": {"method": "convpass"}}
    save_task_state(result.model, tmp_path / "s.safetensors", meta)

    def fresh(meta):
        return attach_petl(tiny_vit(seed=0), resolve_settings("convpass", "digits"))

    rebuilt = rebuild(tmp_path / "s.safetensors", fresh).eval()
    x = torch.randn(2, 3, 16, 16)
    assert len(rebuilt.blocks) == result.state["k"]
    assert torch.equal(rebuilt(x), result.model.eval()(x))


@pytest.mark.slow
def test_offline_run_logs_the_sls_decision():
    config = tiny_config(methods=["none", "sls"], suite="tests-sls")
    config.pruners["sls"] = {"embedding": "pca"}
    outcomes = run_benchmark(config, progress=False)
    assert [o.status for o in outcomes] == ["FINISHED", "FINISHED"]
    run = client().get_run(outcomes[1].run_id)
    k = run.data.metrics["sls/k"]
    assert 1 <= k <= 4 and run.data.metrics["blocks/kept"] == k
    assert "sls/score/block_04" in run.data.metrics
    assert run.data.params["pruner.alpha"] == "0.3"
    artifacts = {a.path for a in client().list_artifacts(run.info.run_id)}
    assert {"sls_scores.png", "decision.json", "task_state.safetensors"} <= artifacts
    if k < 4:
        assert run.data.metrics["params/total"] < run.data.metrics["params/total_unpruned"]


# knn at alpha 0.9 fails at block 3 (0.21 < 0.9 * 0.29): the lazy scan would stop there
@pytest.mark.parametrize(("metric", "alpha", "k"), [("probe", 0.3, 1), ("knn", 0.9, 4)])
def test_label_metrics_score_every_block_on_its_features_with_the_same_rule(
    sls_context, metric, alpha, k
):
    result = make_pruner("sls", {"metric": metric, "alpha": alpha}).prune(sls_context())
    features, labels = block_features(_petl_model(), _loader())
    expected = {b: heldout_accuracy(f, labels, metric) for b, f in enumerate(features, 1)}
    assert result.decision["scores"] == {str(b): v for b, v in expected.items()}
    assert select_depth(list(expected.values()), alpha=alpha) == result.state["k"] == k
    assert result.metrics[f"{metric}/block_01"] == result.metrics["score/block_01"] == expected[1]
    assert result.decision["score_name"] == metric
    assert result.decision["scored_on"] == "block features (no embedding) of the cls token"


def test_davies_bouldin_is_recorded_as_its_inverse(sls_context):
    result = make_pruner("sls", {"metric": "davies_bouldin", "embedding": "pca"}).prune(
        sls_context()
    )
    features, labels = block_features(_petl_model(), _loader())
    top = 1.0 / score(embed(features[-1], "pca"), labels, "davies_bouldin")
    assert result.decision["scores"]["4"] == pytest.approx(top)
    assert result.decision["score_name"] == "1/davies_bouldin"
    assert "1 / Davies-Bouldin" in result.decision["score_description"]


@pytest.mark.slow
def test_embedding_blocks_in_two_processes_gives_the_same_decision(sls_context):
    one, two = (make_pruner("sls", {"workers": w}).prune(sls_context()) for w in (1, 2))
    assert one.decision["scores"] == two.decision["scores"]
    assert one.state == two.state
    assert (one.metrics["scan_workers"], two.metrics["scan_workers"]) == (1, 2)
    assert one.decision["settings"]["workers"] == 1  # logged, though not part of the key
    for result in (one, two):  # the decision's time is its features' and its scan's
        m = result.metrics
        assert m["feature_seconds"] > 0 and m["scan_seconds"] > 0
        assert m["feature_seconds"] + m["scan_seconds"] == pytest.approx(m["decision_seconds"])


def test_workers_is_not_part_of_the_sweep_cell_or_the_sls_settings_matched():
    def keys(sls_options):
        config = tiny_config(methods=["sls", "angular"])
        config.pruners["sls"] = sls_options
        cells = [cell_key(config, method, 0, "weights") for method in ("sls", "angular")]
        return cells, sls_settings(config)

    assert keys({"workers": 4}) == keys({"workers": 1}) == keys({})
    assert keys({"alpha": 0.5})[0][0] != keys({})[0][0]  # a setting that decides does count
    assert keys({"alpha": 0.5})[0][1] != keys({})[0][1]  # angular's budget is SLS's k
