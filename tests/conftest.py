"""Shared test helpers: one MLflow store and results folder per test session; builders of a tiny
ViT, a PETL model on it, a calibration loader and a tiny config (plain functions, since tests ask
for variants); a pruner registered for one test; the generated tasks' labels read off their pixels."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("TQDM_DISABLE", "1")

TINY_VIT = {"patch_size": 4, "embed_dim": 32, "depth": 4, "num_heads": 2}
# 4 stages of 2 blocks on a 16 px input: grids 8x8 (window 4, shifted in its second block), 4x4,
# 2x2, 1x1; widths 16, 32, 64, 128
TINY_SWIN = {"patch_size": 2, "embed_dim": 16, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 2, 4),
             "window_size": 4}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    """Under `make mutate`, a mutant's covering tests run fastest first: mutmut stops at the
    first failure, so a mutant some quick test kills costs that test, not the slow ones before it
    in name order. The durations are those mutmut recorded (mutants/mutmut-stats.json)."""
    durations = mutmut_durations()
    if durations:
        items.sort(key=lambda item: durations.get(item.nodeid, math.inf))


def mutmut_durations() -> dict[str, float]:
    """Seconds per test id while mutmut runs a mutant (its working directory is mutants/)."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return {}
    stats = Path("mutmut-stats.json")
    return json.loads(stats.read_text())["duration_by_test"] if stats.is_file() else {}


@pytest.fixture(scope="session", autouse=True)
def isolated_results(tmp_path_factory):
    """Every test writes under a temporary results/ and one SQLite store (created once), which
    MLFLOW_TRACKING_URI names at another path than the default."""
    root = tmp_path_factory.mktemp("results")
    saved = {
        k: os.environ.get(k) for k in ("SLSBENCH_RESULTS", "SLSBENCH_CACHE", "MLFLOW_TRACKING_URI")
    }
    os.environ["SLSBENCH_RESULTS"] = str(root)
    os.environ["SLSBENCH_CACHE"] = str(root / "cache")
    # not the default store (results/mlflow.db): a tracking module that ignored the variable
    # would write elsewhere and tests/test_tracking.py would see it
    (root / "tracking").mkdir()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'tracking' / 'store.db'}"
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def restore_sigterm():
    """`bench.cli.main` turns SIGTERM into `Terminated` for good (`raise_on_sigterm`); a test that
    calls it in-process must not leave that handler to the tests after it, nor to the process
    running them (mutmut forks its workers from the process that ran the suite)."""
    import signal

    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def module_from_path(path: Path, name: str):
    """Import a script that is no package module (benchmarks/, tests/mutation/) by its path; it is
    registered in sys.modules under `name`, where dataclasses look their module up."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_vit(num_classes: int = 10, depth: int = 4, seed: int = 0):
    from bench.models.backbone import create_backbone

    torch.manual_seed(seed)
    kwargs = {**TINY_VIT, "depth": depth}
    return create_backbone("vit_tiny_patch16_224", num_classes, 16, 0.0, kwargs=kwargs)


def tiny_swin(num_classes: int = 10, seed: int = 0):
    from bench.models.backbone import create_backbone

    torch.manual_seed(seed)
    return create_backbone("swin_tiny_patch4_window7_224", num_classes, 16, 0.0, kwargs=TINY_SWIN)


def petl_model(petl: str = "convpass", seed: int = 0, backbone=tiny_vit) -> torch.nn.Module:
    """A tiny PETL model with non-zero PETL weights (as after training), in eval mode, on the
    backbone `backbone(seed=seed)` builds."""
    from bench.models.petl import attach_petl, resolve_settings

    model = attach_petl(backbone(seed=seed), resolve_settings(petl, "digits"))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model.eval()


def calibration_loader(n: int = 96):
    """`n` random 16x16 images of the 10 digits classes, in batches of 48 (not shuffled)."""
    from bench.data import BatchLoader, ImageSplit

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 3, 16, 16), dtype=np.uint8)
    return BatchLoader(ImageSplit(images, np.arange(n) % 10), 48)


def tiny_config(**overrides):
    """The random-init demo preset shrunk to seconds: 4-block width-32 ViT, 2 epochs, few timing
    iterations."""
    from bench.config import load_config

    values = {
        "model.kwargs": {**TINY_VIT},
        "train.epochs": 2,
        "train.warmup_epochs": 1,
        "train.eval_every": 1,
        "measure.warmup_iters": 1,
        "measure.timed_iters": 2,
        "measure.rounds": 1,
        "measure.ratio_target": None,
        "measure.batch_sizes": [1, 8],
        "suite": "tests",
        **overrides,
    }
    return load_config("demo-random", values)


@pytest.fixture
def register_pruner():
    """`register_pruner(name, cls)` adds a pruner to the registry for this test only."""
    from bench.pruning import PRUNERS

    registered = []

    def register(name: str, cls):
        registered.append((name, cls, cls.__dict__.get("name")))
        PRUNERS.register(name, cls)
        return cls

    yield register
    for name, cls, own_name in reversed(registered):
        PRUNERS.unregister(name)
        if own_name is None:  # registering named the class: a real pruner keeps its own name
            del cls.name
        else:
            cls.name = own_name


@pytest.fixture
def exploding_pruner(register_pruner):
    """The pruner "test_exploding", whose prune always raises."""
    from bench.pruning import Pruner

    @dataclass
    class Exploding(Pruner):
        name = "test_exploding"

        def prune(self, ctx):
            raise RuntimeError("this pruner always fails")

    register_pruner("test_exploding", Exploding)


def runs_of_suite(suite, status=None):
    """The runs of a suite's experiment (pruner-tagged), optionally of one status."""
    from bench.tracking import client

    experiment = client().get_experiment_by_name(suite)
    runs = client().search_runs([experiment.experiment_id], "tags.pruner != ''")
    return [r for r in runs if status is None or r.info.status == status]


def tiny_cli_options():
    """`python -m bench` options for the tiny config (the CLI's spelling of `tiny_config`)."""
    kwargs = ",".join(f'"{k}":{v}' for k, v in TINY_VIT.items())
    return [
        "--preset", "demo-random", "--epochs", "2", "--no-progress",
        "--set", f"model.kwargs={{{kwargs}}}", "--set", "train.warmup_epochs=1",
        "--set", "train.eval_every=1", "--set", "measure.warmup_iters=1",
        "--set", "measure.timed_iters=2", "--set", "measure.rounds=1",
        "--set", "measure.batch_sizes=1,8", "--set", "measure.ratio_target=none",
    ]  # fmt: skip


# --- bad input caught before any data is read --------------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """Decoding data or training a transfer fails the test; returns the refusing function, to
    patch more entry points with."""
    import bench.run

    def refuse(*args, **kwargs):
        raise AssertionError("a run started: the bad input was not caught by the preflight")

    monkeypatch.setattr(bench.run, "load_data", refuse)
    monkeypatch.setattr(bench.run, "transfer", refuse)
    return refuse


def cli_error(argv: list[str], capsys, preset: str = "demo") -> str:
    """`make bench` with `argv` exits 2 with one line on stderr: that line, less `error: `."""
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--preset", preset, *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err.removeprefix("error: ")


# --- small fakes shared by test modules ---------------------------------------------------------


class FakeTimer:
    """Rounds of fixed ratios (reference 100 img/s), each taking `seconds` on a fake clock. More
    than MAX_ROUNDS rounds fail the test: a stopping rule broken by a mutant must not hang it."""

    MAX_ROUNDS = 100

    def __init__(self, ratios, seconds=1.0):
        self.ratios, self.seconds, self.now, self.calls = ratios, seconds, 0.0, 0

    def round(self):
        if self.calls >= self.MAX_ROUNDS:
            raise AssertionError(f"interleave ran past {self.MAX_ROUNDS} rounds")
        ratio = self.ratios[self.calls % len(self.ratios)]
        self.calls += 1
        self.now += self.seconds
        return 100.0, 100.0 * ratio

    def clock(self):
        return self.now


def linear_model_and_loader():
    """A seeded Linear classifier on 24 random 3x4x4 images of 3 classes, batches of 8."""
    from torch import nn

    from bench.data.loader import BatchLoader, ImageSplit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    rng = np.random.default_rng(0)
    split = ImageSplit(rng.integers(0, 256, size=(24, 3, 4, 4), dtype=np.uint8), np.arange(24) % 3)
    return model, BatchLoader(split, 8, shuffle=True, drop_last=True, seed=0)


# --- a generated task's label, read off the pixels (tests/test_generated_tasks.py) ----------


def shape_weight(image: np.ndarray) -> np.ndarray:
    """How much of each pixel the shapes cover, up to a factor: its distance from the
    background colour (the corner pixel, which no shape reaches)."""
    return np.abs(image.astype(float) - image[0, 0].astype(float)).sum(axis=-1)


def centroid_and_offsets(image: np.ndarray):
    """The shape's weight, centroid (x, y) and every pixel centre's offset from it."""
    weight = shape_weight(image)
    rows, cols = np.indices(weight.shape) + 0.5
    total = weight.sum()
    cx, cy = (weight * cols).sum() / total, (weight * rows).sum() / total
    return weight / total, (cx, cy), cols - cx, rows - cy


def x_bin(image: np.ndarray, classes: int) -> int:
    from bench.data.generated import LOC_RANGE

    _, (cx, _), _, _ = centroid_and_offsets(image)
    lo, hi = LOC_RANGE
    return math.floor((cx - lo) / ((hi - lo) / classes))


def direction_bin(image: np.ndarray, classes: int) -> int:
    """The arrow's long axis (second moments), pointed at its tip (the third moment along the
    axis is positive towards the tip), as an angle counter-clockwise from +x."""
    weight, _, dx, dy = centroid_and_offsets(image)
    covariance = [[(weight * dx * dx).sum(), (weight * dx * dy).sum()],
                  [(weight * dx * dy).sum(), (weight * dy * dy).sum()]]  # fmt: skip
    axis = np.linalg.eigh(covariance)[1][:, -1]
    if (weight * (dx * axis[0] + dy * axis[1]) ** 3).sum() < 0:
        axis = -axis
    angle = math.atan2(-axis[1], axis[0]) % (2 * math.pi)
    return math.floor(angle / (2 * math.pi / classes))


def blobs(image: np.ndarray) -> int:
    """Connected groups of shape pixels (8-connected)."""
    from scipy import ndimage

    return ndimage.label(shape_weight(image) > 0, structure=np.ones((3, 3)))[1]


READ_LABEL = {
    "gen_shape_loc": x_bin,
    "gen_shape_ori": direction_bin,
    "gen_count": lambda image, classes: blobs(image) - 1,
}
