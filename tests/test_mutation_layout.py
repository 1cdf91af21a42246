"""`make mutate` runs the tests in the tree mutmut copies to mutants/: the source paths, the
`also_copy` paths, tests/ and pyproject.toml, nothing else. A test that reads a file from outside
that tree collects here but fails mutmut's first pass ("failed to collect stats"), and no mutant
runs. This builds that tree and collects the tests `make mutate` runs in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.config import tomllib

ROOT = Path(__file__).resolve().parents[1]


def mutmut_settings() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["tool"]["mutmut"]


def mutmut_tree(settings: dict, into: Path) -> None:
    """The copy mutmut makes (copied, not linked: a test's resolved path must lie in the copy)."""
    copied = [*settings["source_paths"], *settings["also_copy"], "tests", "pyproject.toml"]
    for name in copied:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, into / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, into / name)


@pytest.mark.slow
def test_the_tests_make_mutate_runs_collect_in_mutmuts_copy(tmp_path):
    settings = mutmut_settings()
    mutmut_tree(settings, tmp_path)
    args = [*settings["pytest_add_cli_args"], *settings["pytest_add_cli_args_test_selection"]]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
