"""`make mutate`'s report (tests/mutation/report.py): the score leaves out every survivor listed in
equivalent.md, the strict score only those of its section "Equivalent"."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import module_from_path

pytest.importorskip("mutmut")

report = module_from_path(Path(__file__).parent / "mutation" / "report.py", "mutation_report")

TEXT = """# Surviving mutants that are not counted

## Equivalent: no input can tell the mutant from the code

- `m.x_f__mutmut_1`: a reason
- `m.x_g__mutmut_*`: every mutant of g

## GPU only: the tests run on CPU

- `m.x_f__mutmut_2`: a reason
- `m.x_h__mutmut_1`: listed, but killed now (stale)
"""


def test_each_listed_mutant_carries_its_section():
    listed = report.listed_mutants(TEXT)
    assert listed == {
        "m.x_f__mutmut_1": "Equivalent: no input can tell the mutant from the code",
        "m.x_g__mutmut_*": "Equivalent: no input can tell the mutant from the code",
        "m.x_f__mutmut_2": "GPU only: the tests run on CPU",
        "m.x_h__mutmut_1": "GPU only: the tests run on CPU",
    }


def test_the_score_leaves_out_listed_survivors_the_strict_score_only_equivalent_ones():
    status = {
        "m.x_f__mutmut_1": "survived",  # equivalent
        "m.x_f__mutmut_2": "survived",  # GPU only
        "m.x_g__mutmut_7": "no tests",  # equivalent, by the pattern
        "m.x_f__mutmut_3": "killed",
        "m.x_f__mutmut_4": "timeout",
        "m.x_f__mutmut_5": "survived",  # not listed
        "m.x_h__mutmut_1": "killed",  # listed but killed: counted as killed
    }
    row = report.tally("m.py", status, report.listed_mutants(TEXT))
    assert (row.mutants, row.listed, row.equivalent, row.killed) == (7, 3, 2, 3)
    assert row.score == pytest.approx(100 * 3 / 4)
    assert row.strict == pytest.approx(100 * 3 / 5)
