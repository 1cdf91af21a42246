"""Where images come from. A source yields decoded images at native size; the cache does the rest.

A source implements the `Source` protocol and registers under its name in `SOURCES`. `auto`
picks the first source that has the task on this machine and says which one it used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from bench.errors import UserError
from bench.registry import Registry
from bench.tasks import TaskSpec


@dataclass
class RawSplit:
    """One split as the source has it: labels up front, images decoded lazily (HWC or HW uint8)."""

    labels: np.ndarray  # int64, after the task's label rule
    images: Iterable[np.ndarray]  # len(labels) arrays, RGB HxWx3 or grayscale HxW / HxWx1
    fingerprint: str  # identifies the bytes read (list-file hash, builder version, ...)


@dataclass
class SourceStatus:
    found: bool
    where: str  # the path that was (or would be) read
    how_to_prepare: str = ""  # the command that prepares the data when it is missing


class Source(Protocol):
    name: str
    format: str  # how images are stored: "tensor" (decoded arrays) or "jpeg"

    def status(self, task: TaskSpec, data_dir: str | None) -> SourceStatus: ...

    def read_split(self, task: TaskSpec, split: str, data_dir: str | None) -> RawSplit: ...


SOURCES: Registry[Source] = Registry("data source")


class DigitsSource:
    """scikit-learn's bundled digits (1797 real 8x8 images) laid out like a VTAB-1k task.

    A fixed permutation (seed 0) gives train800, val200 and the remaining 797 images as test.
    """

    name = "digits"
    format = "tensor"
    _PERMUTATION_SEED = 0

    def status(self, task: TaskSpec, data_dir: str | None) -> SourceStatus:
        found = task.name == "digits"
        return SourceStatus(found, "scikit-learn (bundled)", "" if found else "digits only")

    def read_split(self, task: TaskSpec, split: str, data_dir: str | None) -> RawSplit:
        from sklearn.datasets import load_digits

        if task.name != "digits":
            raise UserError(f"the digits source only has the task 'digits', not {task.name!r}")
        digits = load_digits()
        order = np.random.RandomState(self._PERMUTATION_SEED).permutation(len(digits.target))
        ranges = {
            "train800": order[:800],
            "val200": order[800:1000],
            "train800val200": order[:1000],
            "test": order[1000:],
        }
        if split not in ranges:
            raise UserError(f"unknown split {split!r}; expected one of {list(ranges)}")
        index = ranges[split]
        images = np.round(digits.images[index] * (255.0 / 16.0)).astype(np.uint8)
        fingerprint = f"sklearn-digits:perm{self._PERMUTATION_SEED}:{split}"
        return RawSplit(digits.target[index].astype(np.int64), list(images), fingerprint)


SOURCES.register("digits", DigitsSource())
SOURCES.register("folder", "bench.data.folder:SOURCE")
SOURCES.register("tfds", "bench.data.tfds_source:SOURCE")
SOURCES.register("generated", "bench.data.generated:SOURCE")


_OFFLINE_SOURCES = {"offline": ["digits"], "generated": ["generated"]}  # task group -> source


def resolve_source(task: TaskSpec, name: str, data_dir: str | None) -> Source:
    """The source named `name` (or the first that has the task, for `auto`), checked to have it."""
    if name == "auto":
        candidates = _OFFLINE_SOURCES.get(task.group, ["folder", "tfds"])
    else:
        candidates = [SOURCES.canonical(name)]
    statuses = []
    for candidate in candidates:
        source = SOURCES.get(candidate)
        status = source.status(task, data_dir)
        if status.found:
            return source
        statuses.append((candidate, status))
    raise UserError(_missing_message(task, data_dir, statuses))


def _missing_message(task: TaskSpec, data_dir: str | None, statuses) -> str:
    where = "; ".join(
        f"{name}: expected {s.where}"
        + (f" (prepare with: {s.how_to_prepare})" if s.how_to_prepare else "")
        for name, s in statuses
    )
    hint = "" if data_dir else " Pass DATA=<path> (--data) to say where the data lives."
    return f"no data for task {task.name!r} found. {where}.{hint}"


def data_root(data_dir: str | None) -> Path | None:
    return Path(data_dir).expanduser() if data_dir else None
