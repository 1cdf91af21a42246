"""tensorflow-datasets read through `tfds.data_source`: array_record, random access, no TensorFlow.

Preparing the data needs TensorFlow once (see bench.data.prepare); reading it here does not.
`tfds.data_source` takes the VTAB split strings as they are, slices and `+` included
("train[:800]+train[45000:45200]"), and returns examples as dicts of numpy values; the task's
label and image rules (bench.data.labels) turn each into (image, label).

Labels come lazily: `len()` is free, the values cost a pass over the records. The image iterator
fills them as it goes, so a cache miss reads every record once, and a cache hit, which only needs
the fingerprint, reads none.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from bench.data.labels import IMAGE_RULES, LABEL_RULES
from bench.data.sources import RawSplit, SourceStatus
from bench.errors import UserError
from bench.tasks import SPLITS, TaskSpec


class TfdsSource:
    """Reads prepared tfds data under DATA (tfds's default data dir when DATA is not set)."""

    name = "tfds"
    format = "tensor"

    def status(self, task: TaskSpec, data_dir: str | None) -> SourceStatus:
        if task.tfds_name is None:
            return SourceStatus(False, "(no tensorflow-datasets builder for this task)")
        prepare = prepare_command(task, data_dir)
        with quiet_absl():  # tfds warns about every dataset it does not find: the usual answer
            try:
                builder = tfds.builder(task.tfds_name, data_dir=data_dir)
            except Exception as error:  # tfds raises many types here; status must not crash
                where = expected_dir(task, data_dir)
                return SourceStatus(False, where, f"{prepare} (tfds: {error})")
            prepared = builder.is_prepared()
        where = str(builder.data_dir)
        if not prepared:
            return SourceStatus(False, where, prepare)
        formats = {str(f.value) for f in builder.info.available_file_formats()}
        if not formats & RANDOM_ACCESS_FORMATS:
            return SourceStatus(False, where, reformat_hint(where, formats))
        return SourceStatus(True, where)

    def read_split(self, task: TaskSpec, split: str, data_dir: str | None) -> RawSplit:
        if task.tfds_name is None:
            raise UserError(f"task {task.name!r} has no tensorflow-datasets builder")
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        split_string = task.split_string(split)
        source = self._open(task, split_string, data_dir)
        info = source.dataset_info
        fingerprint = f"tfds:{info.full_name}:{split_string}:{os.path.abspath(info.data_dir)}"
        reader = SplitReader(source, task, split)
        return RawSplit(LazyLabels(reader), reader, fingerprint)

    def _open(self, task: TaskSpec, split_string: str, data_dir: str | None) -> Sequence[Any]:
        try:
            return tfds.data_source(
                task.tfds_name, split=split_string, data_dir=data_dir, download=False
            )
        except (ValueError, NotImplementedError, tfds.core.registered.DatasetNotFoundError) as err:
            status = self.status(task, data_dir)
            if not status.found:
                raise UserError(
                    f"no tfds data for task {task.name!r}: expected {status.where} "
                    f"(prepare with: {status.how_to_prepare})"
                ) from err
            raise UserError(
                f"tfds cannot read {task.tfds_name} split {split_string!r} at {status.where}: {err}"
            ) from err


class SplitReader:
    """One split's examples, turned into images and labels by the task's rules."""

    def __init__(self, source: Sequence[Any], task: TaskSpec, split: str) -> None:
        self.source, self.task, self.split = source, task, split
        self.label_rule = LABEL_RULES[task.label_rule]
        self.image_rule = IMAGE_RULES[task.image_rule]
        self.labels: np.ndarray | None = None  # set once a full pass has computed them all

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Images (HxWxC uint8) in order; records the labels on the way."""
        labels = np.empty(len(self), dtype=np.int64)
        for index, example in self.examples():
            labels[index] = self.label_of(index, example)
            yield self.image_rule(example[self.task.image_key])
        self.labels = labels

    def all_labels(self) -> np.ndarray:
        """Every label, checked against the task's classes (a pass over the records if needed)."""
        if self.labels is None:
            self.labels = np.array([self.label_of(i, ex) for i, ex in self.examples()], np.int64)
        return self.labels

    def examples(self) -> Iterator[tuple[int, Mapping[str, Any]]]:
        # One record at a time: the image decode dominates, and tfds's mock (used by the tests)
        # does not support batched __getitems__.
        for index in range(len(self)):
            yield index, self.source[index]

    def label_of(self, index: int, example: Mapping[str, Any]) -> int:
        where = f"{self.task.name}/{self.split} example {index} ({self.task.tfds_name})"
        try:
            label = self.label_rule(example)
        except (KeyError, ValueError, IndexError) as error:
            raise ValueError(
                f"{where}: label rule {self.task.label_rule!r} failed: {error}"
            ) from error
        if not 0 <= label < self.task.num_classes:
            raise ValueError(
                f"{where}: label rule {self.task.label_rule!r} gave {label}, "
                f"outside [0, {self.task.num_classes})"
            )
        return label


class LazyLabels:
    """An int64 label array computed on first use; `len()` never reads a record.

    Works wherever the labels are used as an array: `np.asarray(labels)`, and any ndarray
    attribute (`labels.max()`, `labels.shape`) materialises them.
    """

    def __init__(self, reader: SplitReader) -> None:
        self._reader = reader

    def __len__(self) -> int:
        return len(self._reader)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        labels = self._reader.all_labels()
        return labels if dtype is None else labels.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[int]:
        return iter(self._reader.all_labels())

    def __getitem__(self, index: Any) -> Any:
        return self._reader.all_labels()[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._reader.all_labels(), name)


RANDOM_ACCESS_FORMATS = {"array_record", "parquet"}


@contextlib.contextmanager
def quiet_absl() -> Iterator[None]:
    """Hide absl's (tfds's) warnings for the duration of a probe."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def expected_dir(task: TaskSpec, data_dir: str | None) -> str:
    """`<DATA>/<builder>[/<config>]/<version pattern>`: where a prepared builder would live."""
    name, _, version = (task.tfds_name or "").partition(":")
    root = data_dir if data_dir else "<tfds default data dir>"
    return str(Path(root, name, version or "<version>"))


def manual_dir(data_dir: str | None) -> str:
    """Where tfds looks for manually downloaded files (its default: <DATA>/downloads/manual)."""
    return str(Path(data_dir, "downloads", "manual")) if data_dir else "<DATA>/downloads/manual"


def prepare_command(task: TaskSpec, data_dir: str | None) -> str:
    command = f"make prepare TASK={task.name} DATA={data_dir if data_dir else '<DATA>'}"
    if task.manual_download:
        manual = task.manual_download.replace("<DATA>/downloads/manual", manual_dir(data_dir))
        command += f"; first: {manual}"
    return command


def reformat_hint(where: str, formats: set[str]) -> str:
    return (
        f"prepared as {'/'.join(sorted(formats))}, which tfds.data_source cannot read: "
        f"convert with `tfds convert_format --dataset_dir={where} --out_file_format=array_record` "
        "(needs tensorflow) or prepare into another DATA dir"
    )


def split_ranges(split_string: str, num_examples: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """(split, start, stop) ranges a tfds split string selects, by tfds's own split parser.

    Pure: needs only the number of examples per tfds split, so the VTAB split arithmetic can be
    checked without data (tfds.testing.mock_data ignores slicing).
    """
    infos = {name: SimpleNamespace(num_examples=n) for name, n in num_examples.items()}
    instruction = tfds.core.ReadInstruction.from_spec(split_string)
    ranges = []
    for absolute in instruction.to_absolute(infos):
        total = num_examples[absolute.splitname]
        start = 0 if absolute.from_ is None else absolute.from_
        stop = total if absolute.to is None else absolute.to
        ranges.append((absolute.splitname, start, stop))
    return ranges


def split_size(split_string: str, num_examples: Mapping[str, int]) -> int:
    """Number of examples a tfds split string selects."""
    return sum(stop - start for _, start, stop in split_ranges(split_string, num_examples))


SOURCE = TfdsSource()
