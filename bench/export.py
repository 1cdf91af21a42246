"""The model a run measured, as a user deploys it: rebuilt from the run's per-task state file on
the shared backbone (pruned, and merged where the PETL method merges), then written out.

`make export RUN=<run id> OUT=<dir>` writes
- `model.pt2`: the deployed model as a `torch.export` program (`torch.export.load(f).module()`
  needs neither this suite nor timm), taking a batch of normalised `3 × S × S` images;
- `model.safetensors`: its tensors by name;
- `config.json`: the run's resolved config; `export.json`: the run, its preprocessing and the
  accuracy the exported model gives on the run's evaluation split next to the run's `test/acc`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

import bench.plugins  # noqa: F401  (the pruners whose decisions a state file re-applies)
from bench import record as R
from bench.config import RunConfig, apply_values
from bench.data.loader import normalization_stats
from bench.data.task_data import data_loaders, load_data
from bench.errors import UserError
from bench.models.build import build_petl_model, weights_id
from bench.models.petl import PetlSettings, merged_copy
from bench.state import read_task_state, rebuild
from bench.tasks import get_task
from bench.tracking import client
from bench.train import autocast

STATE_ARTIFACT = "task_state.safetensors"
CONFIG_ARTIFACT = "config.json"
MODEL_FILE = "model.pt2"


def deployed_model(state_path: Path, config: RunConfig, device: torch.device) -> nn.Module:
    """The run's model rebuilt on the shared backbone named by `config.model`, merged where its
    PETL modules merge, in eval mode."""
    _, meta = read_task_state(state_path)
    if (have := weights_id(config.model)) != meta["weights"]:
        raise UserError(
            f"the run used backbone weights {meta['weights']}, but {have} is given: pass the "
            "run's checkpoint (CHECKPOINT=<file>)"
        )

    def fresh(meta: dict) -> nn.Module:
        return build_petl_model(config.model, config.data, meta["num_classes"],
                                PetlSettings(**meta["petl"]), meta["seed"], device)  # fmt: skip

    model = rebuild(state_path, fresh)
    return (merged_copy(model) or model).eval()


def export_run(run_id: str, out: Path, checkpoint: str | None = None,
               device: torch.device | None = None, verify: bool = True) -> dict:  # fmt: skip
    """Write the deployed model of a FINISHED run to `out`; returns what `export.json` says."""
    device = device or torch.device("cpu")
    run = _finished_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(client().download_artifacts(run_id, STATE_ARTIFACT, tmp))
        config_path = Path(client().download_artifacts(run_id, CONFIG_ARTIFACT, tmp))
        config = run_config(json.loads(config_path.read_text()), checkpoint)
        model = deployed_model(state, config, device)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(config_path, out / CONFIG_ARTIFACT)
    size = config.data.image_size
    example = torch.zeros(2, 3, size, size, device=device)
    batch = {0: torch.export.Dim("batch", min=1)}
    program = torch.export.export(model, (example,), dynamic_shapes=(batch,))
    torch.export.save(program, str(out / MODEL_FILE))
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out / "model.safetensors"))
    mean, std = normalization_stats(config.data.normalization)
    summary = {"run_id": run_id, "task": run.data.tags.get(R.TASK),
               "method": run.data.params.get(R.P_METHOD), "image_size": size,
               "normalization": {"mean": list(mean), "std": list(std)},
               "run_test_acc": run.data.metrics.get(R.ACC)}  # fmt: skip
    if verify:
        summary["exported_test_acc"] = accuracy_of(out / MODEL_FILE, config, device)
    (out / "export.json").write_text(json.dumps(summary, indent=2))
    return summary


def accuracy_of(model_file: Path, config: RunConfig, device: torch.device) -> float:
    """The exported file's accuracy on the run's evaluation split, loaded as a user would."""
    model = torch.export.load(str(model_file)).module().to(device)  # eval mode as exported
    data = load_data(config.data, get_task(config.data.task), progress=False)
    _, eval_loader = data_loaders(data, config.train, device, seed=0)
    correct = total = 0
    with torch.no_grad(), autocast(device, config.train.dtype):
        for images, labels in eval_loader:
            correct += int((model(images).argmax(dim=-1) == labels).sum())
            total += labels.numel()
    return correct / max(total, 1)


def run_config(values: dict, checkpoint: str | None) -> RunConfig:
    """A run's logged config (`config.json`), with the backbone checkpoint given here if any."""
    config = RunConfig()
    apply_values(config, values)
    if checkpoint:
        config.model.checkpoint = checkpoint
    return config


def _finished_run(run_id: str):
    try:
        run = client().get_run(run_id)
    except Exception as err:  # MLflow raises its own error for an unknown id
        raise UserError(
            f"no run {run_id!r} in the tracking store: copy a run id from make ui"
        ) from err
    if run.info.status != "FINISHED":
        raise UserError(f"run {run_id} is {run.info.status}: only a FINISHED run can be exported")
    return run
