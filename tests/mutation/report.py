"""The mutation score per module after `mutmut run` (`make mutate`), and the survivors' diffs.

Reads mutmut's results under mutants/ for the modules of `[tool.mutmut] only_mutate` in
pyproject.toml (or the module paths given as arguments). A mutant is killed when a test failed
(or it timed out, or crashed the test process); it survives when every test covering it passed
or no fast test covers it. Survivors listed in tests/mutation/equivalent.md (the mutants that
cannot change behaviour, each with its reason) are left out of the score:
score = killed / (mutants - equivalent). A listed name that is no longer a survivor is reported
as stale, so the list follows the code.

    python tests/mutation/report.py [bench/budget.py ...]

Exits 1 when a module given on the command line is not configured, or has unchecked mutants.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
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


def equivalent_mutants() -> list[str]:
    """The mutant names listed in equivalent.md: a list item starting with the backticked name
    (`*` for every number: all the mutants of a function)."""
    pattern = r"^- `([\w.ǁ]+__mutmut_(?:\d+|\*))`"
    return re.findall(pattern, EQUIVALENT.read_text(), re.MULTILINE)


def listed(name: str, equivalent: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in equivalent)


def statuses(module: str) -> dict[str, str]:
    data = SourceFileMutationData(path=module)
    data.load()
    return {name: status_by_exit_code[code] for name, code in data.exit_code_by_key.items()}


def changed_lines(name: str, module: str) -> str:
    diff = get_diff_for_mutant(name, path=module).splitlines()
    return "\n".join(f"      {line}" for line in diff[2:] if line[:1] in "+-")


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    configured = configured_modules()
    modules = argv or configured
    unknown = [m for m in modules if m not in configured]
    if unknown:
        print(f"not in [tool.mutmut] only_mutate of pyproject.toml: {', '.join(unknown)}")
        return 1
    equivalent = equivalent_mutants()
    rows, failed = [], False
    for module in modules:
        status = statuses(module)
        if not status:
            print(f"{module}: no results under mutants/ (run `make mutate MODULES={module}`)")
            failed = True
            continue
        killed = [n for n, s in status.items() if s in KILLED]
        excused = {n for n in status if listed(n, equivalent)}
        survived = sorted(n for n, s in status.items() if s in SURVIVED and n not in excused)
        equal = [n for n, s in status.items() if s in SURVIVED and n in excused]
        stale = sorted(n for n, s in status.items() if s not in SURVIVED and n in excused)
        unchecked = sorted(n for n, s in status.items() if s not in KILLED | SURVIVED)
        failed |= bool(unchecked)
        rows.append((module, len(status), len(equal), len(killed), len(status) - len(equal)))
        for name in survived:
            print(f"  survived ({status[name]}): {name}\n{changed_lines(name, module)}")
        for name in stale:
            print(f"  listed as equivalent but {status[name]}: {name} (update equivalent.md)")
        for name in unchecked:
            print(f"  {status[name]}: {name}")
    print(f"\n{'module':<28} {'mutants':>8} {'equivalent':>11} {'killed':>7} {'score':>7}")
    for module, total, equal, killed, counted in rows:
        score = f"{100 * killed / counted:.1f} %" if counted else "-"
        print(f"{module:<28} {total:>8} {equal:>11} {killed:>7} {score:>7}")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
