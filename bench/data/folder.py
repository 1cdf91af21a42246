"""The vtab-1k folder layout (NOAH format) most PyTorch PETL repositories ship and read.

    <DATA>/<task>/train800.txt  val200.txt  train800val200.txt  test.txt
    <DATA>/<task>/images/<split>/<i:06d>.jpg

Each list line is `<image path relative to the task folder> <integer label>`. List files are
checked up front (every problem names the file and line); images decode lazily, once, into the
cache. The fingerprint hashes the list file and the folder path: an image replaced in place
without a change to its list file is not detected (clear the cache after editing images).
"""

from __future__ import annotations

import hashlib
import posixpath
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.sources import RawSplit, SourceStatus, data_root
from bench.errors import UserError
from bench.tasks import SPLITS, TaskSpec

REQUIRED_LISTS = ("train800val200.txt", "test.txt")
LINE_FORMAT = "'<image path relative to the task folder> <integer label>'"


@dataclass(frozen=True)
class ListEntry:
    path: Path  # the image file
    label: int
    where: str  # "<list file>:<line>", for messages


class DecodedImages:
    """The listed images as RGB uint8 arrays, decoded with PIL on iteration (re-iterable)."""

    def __init__(self, entries: list[ListEntry]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[np.ndarray]:
        for entry in self.entries:
            yield decode_image(entry.path, entry.where)


class FolderSource:
    """Reads `<DATA>/<task>/<split>.txt` and the JPEGs it lists."""

    name = "folder"
    format = "jpeg"

    def status(self, task: TaskSpec, data_dir: str | None) -> SourceStatus:
        root = data_root(data_dir)
        prepare = prepare_command(task, data_dir)
        if root is None:
            return SourceStatus(False, f"<DATA>/{task.name}/ (DATA not set)", prepare)
        folder = root / task.name
        missing = [str(folder / name) for name in REQUIRED_LISTS if not (folder / name).is_file()]
        if not missing:
            return SourceStatus(True, str(folder))
        if all((root / name).is_file() for name in REQUIRED_LISTS):
            prepare = f"DATA points at a task folder; pass the folder above it: DATA={root.parent}"
        return SourceStatus(False, " and ".join(missing), prepare)

    def read_split(self, task: TaskSpec, split: str, data_dir: str | None) -> RawSplit:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
        root = data_root(data_dir)
        if root is None:
            raise UserError(
                "the folder source needs DATA=<folder holding the vtab-1k task folders>"
            )
        folder = root / task.name
        list_file = folder / f"{split}.txt"
        if not list_file.is_file():
            raise UserError(
                f"{list_file}: list file not found (vtab-1k layout <DATA>/<task>/<split>.txt; "
                f"prepare with: {prepare_command(task, data_dir)})"
            )
        content = list_file.read_bytes()
        entries = parse_list(content, list_file, folder, task.num_classes)
        for entry in entries:
            if not entry.path.is_file():
                raise UserError(f"{entry.where}: image not found: {entry.path}")
        labels = np.array([entry.label for entry in entries], dtype=np.int64)
        if split == "train800val200":
            warn_missing_classes(labels, task.num_classes, list_file)
        return RawSplit(labels, DecodedImages(entries), fingerprint(content, folder))


def prepare_command(task: TaskSpec, data_dir: str | None) -> str:
    export = data_dir if data_dir else "<folder root>"
    return f"make prepare TASK={task.name} DATA=<tfds data dir> EXPORT={export}"


def fingerprint(list_bytes: bytes, folder: Path) -> str:
    """sha256 of the list file and the folder path: a changed list invalidates the cache."""
    digest = hashlib.sha256(list_bytes)
    digest.update(b"\0" + str(folder.resolve()).encode())
    return f"folder:{digest.hexdigest()}"


def parse_list(content: bytes, list_file: Path, folder: Path, num_classes: int) -> list[ListEntry]:
    """All entries of a list file; a UserError naming file and line for the first bad one."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{list_file}: not a UTF-8 text file ({error})") from error
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            entries.append(parse_line(line, f"{list_file}:{number}", folder, num_classes))
    if not entries:
        raise UserError(f"{list_file}: lists no images (expected lines {LINE_FORMAT})")
    return entries


def parse_line(line: str, where: str, folder: Path, num_classes: int) -> ListEntry:
    parts = line.strip().rsplit(maxsplit=1)
    if len(parts) != 2:
        raise UserError(f"{where}: malformed line {line.strip()!r}; expected {LINE_FORMAT}")
    relative, label_text = parts
    try:
        label = int(label_text)
    except ValueError:
        raise UserError(f"{where}: label {label_text!r} is not an integer") from None
    if not 0 <= label < num_classes:
        raise UserError(f"{where}: label {label} outside [0, {num_classes}) for this task")
    return ListEntry(folder / inside_path(relative, where), label, where)


def inside_path(relative: str, where: str) -> str:
    """`relative`, normalised, if it stays inside the task folder; a UserError otherwise."""
    if posixpath.isabs(relative) or Path(relative).is_absolute():
        raise UserError(f"{where}: absolute image path {relative!r}; paths must be relative")
    normal = posixpath.normpath(relative)
    if normal == ".." or normal.startswith("../"):
        raise UserError(f"{where}: image path {relative!r} leaves the task folder")
    return normal


def decode_image(path: Path, where: str) -> np.ndarray:
    """The image as an RGB HxWx3 uint8 array; a UserError naming the file if PIL cannot read it."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise UserError(f"{where}: cannot decode image {path}: {error}") from error


def warn_missing_classes(labels: np.ndarray, num_classes: int, list_file: Path) -> None:
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        warnings.warn(
            f"{list_file}: {len(missing)} of {num_classes} classes have no training image: {shown}",
            stacklevel=3,
        )


SOURCE = FolderSource()
