"""`make export`: the deployed model of a finished run, rebuilt from its state file, gives the
run's accuracy when evaluated again as a user would load it."""

from __future__ import annotations

import json

import pytest
import torch

from bench.errors import UserError
from bench.export import export_run
from bench.run import run_benchmark
from tests.conftest import tiny_config


@pytest.mark.slow
@pytest.mark.parametrize("petl", ["convpass", "lora"])  # lora merges into the backbone
def test_an_exported_run_gives_the_runs_test_accuracy(tmp_path, petl):
    config = tiny_config(methods=["sls"], suite=f"tests-export-{petl}", **{"petl.method": petl})
    (outcome,) = run_benchmark(config, progress=False)
    assert outcome.status == "FINISHED", outcome.error
    summary = export_run(outcome.run_id, tmp_path / "out")
    assert summary["exported_test_acc"] == pytest.approx(outcome.metrics["test/acc"], abs=1e-9)
    program = torch.export.load(str(tmp_path / "out" / "model.pt2"))
    blocks = {n.split(".")[1] for n in program.state_dict if n.startswith("blocks.")}
    assert len(blocks) == int(outcome.metrics["sls/k"])  # the pruned depth, not the full one
    written = json.loads((tmp_path / "out" / "export.json").read_text())
    assert written["run_test_acc"] == outcome.metrics["test/acc"]


@pytest.mark.slow
def test_export_refuses_other_backbone_weights_and_unknown_runs(tmp_path):
    (outcome,) = run_benchmark(tiny_config(methods=["none"], suite="tests-export-bad"),
                               progress=False)  # fmt: skip
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not the run's weights")
    with pytest.raises(UserError, match="backbone weights"):
        export_run(outcome.run_id, tmp_path / "out", checkpoint=str(other))
    with pytest.raises(UserError, match="no run"):
        export_run("0123456789abcdef", tmp_path / "out2")


@pytest.mark.slow
def test_make_export_in_a_fresh_process_rebuilds_a_pruned_run(tmp_path):
    """The command a user runs: no pruner module is imported before the state file names one."""
    import subprocess
    import sys

    config = tiny_config(methods=["drop_last@keep:2"], suite="tests-export-cli")
    (outcome,) = run_benchmark(config, progress=False)
    out = tmp_path / "cli"
    done = subprocess.run([sys.executable, "-m", "bench", "export", "--run", outcome.run_id,
                           "--out", str(out)], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = json.loads((out / "export.json").read_text())
    assert written["exported_test_acc"] == outcome.metrics["test/acc"]
