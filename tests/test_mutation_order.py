"""`make mutate` runs a mutant's covering tests fastest first (tests/conftest.py's collection
hook, from the durations mutmut recorded); outside mutmut, pytest's order is kept."""

from __future__ import annotations

import json
from types import SimpleNamespace

from tests.conftest import pytest_collection_modifyitems

DURATIONS = {"t.py::slow": 9.0, "t.py::quick": 0.1, "t.py::middle": 2.0}


def collected() -> list[SimpleNamespace]:
    return [SimpleNamespace(nodeid=n) for n in ["t.py::slow", "t.py::unknown", "t.py::quick",
                                                 "t.py::middle"]]  # fmt: skip


def ordered(monkeypatch, tmp_path, mutant: str | None) -> list[str]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": DURATIONS}))
    if mutant is None:
        monkeypatch.delenv("MUTANT_UNDER_TEST", raising=False)
    else:
        monkeypatch.setenv("MUTANT_UNDER_TEST", mutant)
    items = collected()
    pytest_collection_modifyitems(None, items)
    return [item.nodeid for item in items]


def test_a_mutant_runs_its_tests_fastest_first_unknown_last(monkeypatch, tmp_path):
    order = ordered(monkeypatch, tmp_path, "bench.train.x_make_scheduler__mutmut_3")
    assert order == ["t.py::quick", "t.py::middle", "t.py::slow", "t.py::unknown"]


def test_outside_a_mutant_the_order_is_pytests(monkeypatch, tmp_path):
    for mutant in (None, "stats", "list_all_tests"):
        assert ordered(monkeypatch, tmp_path, mutant) == [i.nodeid for i in collected()]
