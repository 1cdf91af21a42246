"""Whether a cache entry holds what was written, and what to do when it does not.

An entry (a decoded split, a transfer) is written with a manifest, written last: each file's size
and a SHA-256 of its bytes. Every read checks the files against it, then what they hold (shapes,
dtypes, names). A file that fails raises `Damaged`; the caller sets the entry aside
(`<cache>/damaged/`, one line on stderr) and rebuilds it as a first run would. The store of runs
is never touched.

Hashing is what a read can afford: a file up to `WHOLE_HASH_BYTES` (every transfer, the decoded
training splits up to 224 px) is hashed whole; a larger one (a decoded test split: 1.5 GB for
10,000 images at 224 px, 11 GB for dsprites) by `SAMPLE_BLOCKS` blocks spread evenly over it, so
a read costs 16 MiB, not the whole file, and still catches a truncation, a damaged header or a
damaged range of pages; its size is always checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

MANIFEST_FORMAT = 1
WHOLE_HASH_BYTES = 256 << 20
SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES = 256, 64 << 10
DAMAGED_DIR = "damaged"


class Damaged(Exception):
    """A cache file that is not what was written: which one, and why."""

    def __init__(self, file: Path, why: str):
        super().__init__(f"{file}: {why}")
        self.file, self.why = file, why


def digest(path: Path) -> dict:
    """The file's size and checksum, as a manifest records them."""
    size = path.stat().st_size
    sha = hashlib.sha256()
    with path.open("rb") as file:
        if size <= WHOLE_HASH_BYTES:
            while block := file.read(1 << 20):
                sha.update(block)
            return {"bytes": size, "sha256": sha.hexdigest()}
        step = (size - SAMPLE_BLOCK_BYTES) // (SAMPLE_BLOCKS - 1)
        for i in range(SAMPLE_BLOCKS):
            file.seek(i * step)
            sha.update(file.read(SAMPLE_BLOCK_BYTES))
    return {"bytes": size, "sha256_sampled": sha.hexdigest()}


def write_manifest(path: Path, files: list[Path], **fields) -> None:
    """The manifest of `files` (by name) plus `fields`, under a temporary name, then renamed."""
    record = {"format": MANIFEST_FORMAT, "files": {f.name: digest(f) for f in files}, **fields}
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(record, indent=1, sort_keys=True))
    os.replace(partial, path)


def read_manifest(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
        if record["format"] != MANIFEST_FORMAT or not isinstance(record["files"], dict):
            raise ValueError(f"format {record['format']!r}, expected {MANIFEST_FORMAT}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise Damaged(path, f"the manifest does not parse ({_short(err)})") from err
    return record


def check_files(manifest: dict, files: list[Path]) -> None:
    """Every file present, of the size and checksum the manifest recorded."""
    for path in files:
        recorded = manifest["files"].get(path.name)
        if not path.exists():
            raise Damaged(path, "missing")
        if not isinstance(recorded, dict):
            raise Damaged(path, "not in the entry's manifest")
        found = digest(path)
        if found["bytes"] != recorded.get("bytes"):
            raise Damaged(path, f"{found['bytes']} bytes, {recorded.get('bytes')} were written")
        if found != recorded:
            raise Damaged(path, "its checksum differs from the one written")


def require(paths: list[Path]) -> None:
    for path in paths:
        if not path.exists():
            raise Damaged(path, "missing")


def set_aside(damage: Damaged, entry: list[Path], cache_root: Path) -> None:
    """Move the entry's files (or folder) to `<cache>/damaged/<time>/`, or delete them where they
    cannot move, and say so in one line. Another process may have moved them first."""
    where = cache_root / DAMAGED_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    moved = False
    for path in entry:
        if not path.exists():
            continue
        target = where / _relative(path, cache_root)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved = True
        except FileNotFoundError:
            pass
        except OSError:
            _delete(path)
    done = f"moved to {where}" if moved else "removed"
    print(f"warning: cache entry unreadable, {damage.file}: {damage.why}; {done}, rebuilding it",
          file=sys.stderr, flush=True)  # fmt: skip


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return Path(path.name)


def _delete(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."
