"""A damaged cache entry is set aside with one line naming its file and rebuilt as a first run
would: the run finishes with the accuracy of a run on a fresh cache. One test per cache kind
(decoded images, transfer) and damage (truncated, garbled, one file of a pair missing, a record
that does not parse), and an older version's entry (no manifest) kept after its checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.cache_entry import DAMAGED_DIR
from bench.run import run_benchmark
from bench.tracking import client
from tests.conftest import tiny_config

# whole benchmark runs (2 to 5 s each): in `make test`, not in `make test-fast` or `make mutate`
pytestmark = pytest.mark.slow

METHODS = ["none", "retrained"]  # `retrained` trains and evaluates on the (rebuilt) entry
SUITE = "tests-cache-damage"


def _run(cache: Path, monkeypatch) -> dict:
    monkeypatch.setenv("SLSBENCH_CACHE", str(cache))
    outcomes = run_benchmark(tiny_config(suite=SUITE, methods=METHODS, seeds=[5]), False)
    assert [o.status for o in outcomes] == ["FINISHED"] * len(METHODS), outcomes
    return {o.method: o for o in outcomes}


def _numbers(outcomes: dict) -> dict:
    return {m: (o.metrics["test/acc"], o.metrics["transfer/test_acc"]) for m, o in outcomes.items()}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> tuple[Path, dict]:
    """A cache written by a first run, and that run's numbers."""
    cache = tmp_path_factory.mktemp("healthy") / "cache"
    with pytest.MonkeyPatch.context() as monkeypatch:
        return cache, _numbers(_run(cache, monkeypatch))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path) -> None:
    """64 random bytes over the end of the file: the data, past any header."""
    data = bytearray(path.read_bytes())
    data[-80:-16] = np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _unparseable(path: Path) -> None:
    path.write_text('{"final_acc": 0.5, "history": [')


DAMAGES = {
    "truncated": _truncate,
    "garbled": _garble,
    "missing": Path.unlink,
    "unparseable": _unparseable,
}
# which file of each entry each damage hits
IMAGE_FILES = {"truncated": ".images.npy", "garbled": ".images.npy", "missing": ".labels.npy",
               "unparseable": ".manifest.json"}  # fmt: skip
TRANSFER_FILES = {"truncated": "state.safetensors", "garbled": "state.safetensors",
                  "missing": "state.safetensors", "unparseable": "result.json"}  # fmt: skip


def _one_warning(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if "cache entry" in line]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_decoded_split_is_decoded_again(damage, healthy, tmp_path, monkeypatch, capsys):
    cache, numbers = healthy
    shutil.copytree(cache / "data", tmp_path / "cache" / "data")  # no transfer: it retrains
    (file,) = (tmp_path / "cache" / "data" / "digits").glob(
        f"train800val200-*{IMAGE_FILES[damage]}"
    )
    DAMAGES[damage](file)
    capsys.readouterr()
    outcomes = _run(tmp_path / "cache", monkeypatch)
    warning = _one_warning(capsys)
    assert str(file) in warning and "rebuilding" in warning
    assert _numbers(outcomes) == numbers
    assert file.exists() and (tmp_path / "cache" / DAMAGED_DIR).is_dir()
    _run(tmp_path / "cache", monkeypatch)  # the rebuilt entry reads without a warning
    assert "cache entry" not in capsys.readouterr().err


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_transfer_is_trained_again(damage, healthy, tmp_path, monkeypatch, capsys):
    cache, numbers = healthy
    shutil.copytree(cache, tmp_path / "cache")
    (folder,) = (tmp_path / "cache" / "transfer").iterdir()
    file = folder / TRANSFER_FILES[damage]
    DAMAGES[damage](file)
    capsys.readouterr()
    outcomes = _run(tmp_path / "cache", monkeypatch)
    warning = _one_warning(capsys)
    assert str(file) in warning and "rebuilding" in warning
    assert _numbers(outcomes) == numbers
    assert client().get_run(outcomes["none"].run_id).data.tags["transfer.cached"] == "False"
    assert file.exists() and (tmp_path / "cache" / DAMAGED_DIR).is_dir()


def test_an_unparseable_manifest_is_named(healthy, tmp_path, monkeypatch, capsys):
    cache, numbers = healthy
    shutil.copytree(cache, tmp_path / "cache")
    (folder,) = (tmp_path / "cache" / "transfer").iterdir()
    (folder / "manifest.json").write_text("{not json")
    capsys.readouterr()
    outcomes = _run(tmp_path / "cache", monkeypatch)
    warning = _one_warning(capsys)
    assert str(folder / "manifest.json") in warning and "does not parse" in warning
    assert _numbers(outcomes) == numbers


def test_an_older_versions_entries_are_checked_and_kept(healthy, tmp_path, monkeypatch, capsys):
    """No manifest: every check but the checksums, then the entry gets its manifest."""
    cache, numbers = healthy
    shutil.copytree(cache, tmp_path / "cache")
    manifests = sorted((tmp_path / "cache").rglob("*manifest.json"))
    assert len(manifests) == 3  # train800val200, test, the transfer
    for manifest in manifests:
        manifest.unlink()
    capsys.readouterr()
    outcomes = _run(tmp_path / "cache", monkeypatch)
    assert "cache entry" not in capsys.readouterr().err
    assert _numbers(outcomes) == numbers
    assert client().get_run(outcomes["none"].run_id).data.tags["transfer.cached"] == "True"
    assert all(json.loads(m.read_text())["files"] for m in manifests)
    # an older entry whose record does not parse is still caught, naming the file
    (folder,) = (tmp_path / "cache" / "transfer").iterdir()
    (folder / "manifest.json").unlink()
    _unparseable(folder / "result.json")
    outcomes = _run(tmp_path / "cache", monkeypatch)
    warning = _one_warning(capsys)
    assert str(folder / "result.json") in warning and "does not parse" in warning
    assert _numbers(outcomes) == numbers
