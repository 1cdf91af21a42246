"""Runs that must not share a table cell: the transferred model they pruned (last epoch or best
test evaluation), the backbone, and a width pruner's softmax scale."""

import pandas as pd
import pytest

from bench.tables.runs import base_method, tidy_runs
from bench.tables.write import build_tables

VIT, SWIN = "vit_base_patch16_224", "swin_base_patch4_window7_224"


def _raw(method, acc, seed=0, checkpoint="last", backbone=VIT, scale=None, task="cifar") -> dict:
    row = {
        "status": "FINISHED", "start_time": pd.Timestamp(2026, 1, 1, seed),
        "tags.pruner": method, "tags.task": task, "tags.petl": "convpass",
        "params.budget": "none", "params.seed": str(seed), "params.data.source": "folder",
        "params.data.format": "jpeg", "params.model.backbone": backbone,
        "params.transfer.checkpoint": checkpoint, "metrics.test/acc": acc,
    }  # fmt: skip
    if scale:
        row["tags.softmax_scale"] = scale
    return row


def _accuracy(rows, tmp_path) -> pd.DataFrame:
    build_tables(tidy_runs(pd.DataFrame(rows)), tmp_path, tmp_path / "no-reference.csv")
    return pd.read_csv(tmp_path / "accuracy_numeric.csv").set_index(["petl", "method"])


def test_runs_of_the_two_transfer_selections_are_labelled_and_never_pooled(tmp_path):
    """The same cell from the last epoch's model (logged first) and from the best test
    evaluation's (logged later): both are kept, each in its own labelled row."""
    rows = [_raw("none", 0.80, seed=s) for s in (0, 1)]
    rows += [{**_raw("none", 0.90, seed=s, checkpoint="best_of_evals"),
              "start_time": pd.Timestamp(2026, 2, 1, s)} for s in (0, 1)]  # fmt: skip
    assert len(tidy_runs(pd.DataFrame(rows))) == 4
    accuracy = _accuracy(rows, tmp_path)
    assert accuracy.loc[("convpass", "none"), "cifar"] == pytest.approx(80.0)
    assert accuracy.loc[("convpass (best_of_evals)", "none"), "cifar"] == pytest.approx(90.0)
    assert "| convpass (best_of_evals) " in (tmp_path / "accuracy.md").read_text()


def test_best_of_evals_is_labelled_even_alone(tmp_path):
    accuracy = _accuracy([_raw("none", 0.9, checkpoint="best_of_evals")], tmp_path)
    assert list(accuracy.index) == [("convpass (best_of_evals)", "none")]


def test_two_backbones_in_one_suite_are_kept_apart(tmp_path):
    rows = [_raw("none", 0.80), _raw("none", 0.70, backbone=SWIN)]
    accuracy = _accuracy(rows, tmp_path)
    assert accuracy.loc[(f"convpass ({VIT})", "none"), "cifar"] == pytest.approx(80.0)
    assert accuracy.loc[(f"convpass ({SWIN})", "none"), "cifar"] == pytest.approx(70.0)


def test_one_backbone_needs_no_label(tmp_path):
    assert list(_accuracy([_raw("none", 0.8)], tmp_path).index) == [("convpass", "none")]


def test_a_width_pruners_softmax_scale_is_part_of_its_label(tmp_path):
    rows = [_raw("none", 0.8), _raw("depgraph_sls", 0.5, scale="pruned-head scale"),
            _raw("depgraph_sls", 0.6, scale="unpruned scale")]  # fmt: skip
    accuracy = _accuracy(rows, tmp_path)
    assert accuracy.loc[("convpass", "depgraph_sls (pruned-head scale)"), "cifar"] == 50.0
    assert accuracy.loc[("convpass", "depgraph_sls (unpruned scale)"), "cifar"] == 60.0
    assert base_method("taylor @ params:0.3 (unpruned scale)") == "taylor"
