"""The mutation score per module after `mutmut run` (`make mutate`), and the survivors' diffs.

Reads mutmut's results under mutants/ for the modules of `[tool.mutmut] only_mutate` in
pyproject.toml (or the module paths given as arguments). A mutant is killed when a test failed
(or it timed out, or crashed the test process); it survives when every test covering it passed
or no fast test covers it. Survivors listed in tests/mutation/equivalent.md, each with its
reason, are left out of the score: score = killed / (mutants - listed). The strict score leaves
out only those of its section "Equivalent" (no input can tell them from the code) and counts the
rest (GPU-only, display-only, ...) as survivors. A listed name that is no longer a survivor is
reported as stale, so the list follows the code.

    python tests/mutation/report.py [bench/budget.py ...]

Exits 1 when a module given on the command line is not configured, or has unchecked mutants.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from mutmut.configuration import config
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent.md")
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
SURVIVED = {"survived", "no tests"}


def configured_modules() -> list[str]:
    return config().only_mutate  # read from pyproject.toml as mutmut reads it


def listed_mutants(text: str) -> dict[str, str]:
    """The mutant names listed in equivalent.md's text, each with the title of its section: a
    list item starting with the backticked name (`*` for every number: all the mutants of a
    function)."""
    listed, section = {}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:]
        elif match := re.match(r"- `([\w.ǁ]+__mutmut_(?:\d+|\*))`", line):
            listed[match.group(1)] = section
    return listed


def is_equivalent(section: str) -> bool:
    return section.startswith("Equivalent")


def section_of(name: str, listed: dict[str, str]) -> str | None:
    return next((s for pattern, s in listed.items() if fnmatch.fnmatchcase(name, pattern)), None)


@dataclass
class Row:
    module: str
    mutants: int
    listed: int  # listed survivors, left out of the score
    equivalent: int  # of those, the ones in the section "Equivalent"
    killed: int

    @property
    def score(self) -> float | None:
        counted = self.mutants - self.listed
        return 100 * self.killed / counted if counted else None

    @property
    def strict(self) -> float | None:
        counted = self.mutants - self.equivalent
        return 100 * self.killed / counted if counted else None


def tally(module: str, status: dict[str, str], listed: dict[str, str]) -> Row:
    sections = [section_of(n, listed) for n, s in status.items() if s in SURVIVED]
    return Row(
        module,
        mutants=len(status),
        listed=sum(s is not None for s in sections),
        equivalent=sum(s is not None and is_equivalent(s) for s in sections),
        killed=sum(s in KILLED for s in status.values()),
    )


def statuses(module: str) -> dict[str, str]:
    data = SourceFileMutationData(path=module)
    data.load()
    return {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}


def changed_lines(name: str, module: str) -> str:
    diff = get_diff_for_mutant(name, path=module).splitlines()
    return "\n".join(f"      {line}" for line in diff[2:] if line[:1] in "+-")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    configured = configured_modules()
    modules = argv or configured
    unknown = [m for m in modules if m not in configured]
    if unknown:
        print(f"not in [tool.mutmut] only_mutate of pyproject.toml: {', '.join(unknown)}")
        return 1
    listed = listed_mutants(EQUIVALENT.read_text())
    rows, failed = [], False
    for module in modules:
        status = statuses(module)
        if not status:
            print(f"{module}: no results under mutants/ (run `make mutate MODULES={module}`)")
            failed = True
            continue
        excused = {n for n in status if section_of(n, listed) is not None}
        survived = sorted(n for n, s in status.items() if s in SURVIVED and n not in excused)
        stale = sorted(n for n, s in status.items() if s not in SURVIVED and n in excused)
        unchecked = sorted(n for n, s in status.items() if s not in KILLED | SURVIVED)
        failed |= bool(unchecked)
        rows.append(tally(module, status, listed))
        for name in survived:
            print(f"  survived ({status[name]}): {name}\n{changed_lines(name, module)}")
        for name in stale:
            print(f"  listed in equivalent.md but {status[name]}: {name} (update equivalent.md)")
        for name in unchecked:
            print(f"  {status[name]}: {name}")
    print(f"\n{'module':<28} {'mutants':>8} {'listed':>7} {'equivalent':>11} {'killed':>7} "
          f"{'score':>8} {'strict':>8}")  # fmt: skip
    for r in rows:
        print(f"{r.module:<28} {r.mutants:>8} {r.listed:>7} {r.equivalent:>11} {r.killed:>7} "
              f"{percent(r.score):>8} {percent(r.strict):>8}")  # fmt: skip
    return int(failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
