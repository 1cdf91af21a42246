"""Preparing VTAB-1k data (`make prepare`) and saying what is on this machine (`make tasks`).

Preparing runs tfds's download_and_prepare in array_record format, a one-time step that needs
TensorFlow (the optional extra); reading afterwards does not. Tasks whose files must be downloaded
by hand are reported with instructions and skipped, so any subset of tasks can be prepared.
`export_to` also writes each task in the vtab-1k folder layout (JPEG quality 75, native size).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.data.sources import SOURCES, Source
from bench.errors import UserError
from bench.tasks import VTAB_TASKS, TaskSpec

JPEG_QUALITY = 75
EXPORT_SPLITS = ("train800", "val200", "test")  # train800val200 lists the first two's images
TENSORFLOW_HINT = "install the optional extra: pip install -e '.[tensorflow]'"
# Libraries tfds imports while preparing some builders (module -> pip package).
PREPARE_MODULES = {
    "dsprites": {"h5py": "h5py"},
    "patch_camelyon": {"h5py": "h5py"},
    "kitti": {"cv2": "opencv-python-headless"},
    "sun397": {"cv2": "opencv-python-headless"},
    "diabetic_retinopathy_detection": {"cv2": "opencv-python-headless"},
    "oxford_flowers102": {"scipy": "scipy"},
    "svhn_cropped": {"scipy": "scipy"},
}


def prepare(tasks: list[TaskSpec], data_dir: str, export_to: str | None) -> None:
    """Prepare each task's tfds data under `data_dir` (and export it as folders to `export_to`)."""
    if not data_dir:
        raise UserError("make prepare needs DATA=<dir>: where tensorflow-datasets keeps its data")
    tfds_source = SOURCES.get("tfds")
    not_ready: list[str] = []
    for task in tasks:
        if task.tfds_name is None:
            where = (
                "generated in numpy" if task.group == "generated" else "bundled with scikit-learn"
            )
            print(f"{task.name}: nothing to prepare ({where})")
            continue
        status = tfds_source.status(task, data_dir)
        if not status.found:
            missing = missing_manual_files(task, data_dir)
            if missing:
                print(manual_message(task, data_dir, missing))
                not_ready.append(f"{task.name} (manual download)")
                continue
            download_and_prepare(task, data_dir, status.where)
        else:
            print(f"{task.name}: tfds data found at {status.where}")
        if export_to:
            export_folder(task, data_dir, Path(export_to), tfds_source)
    if not_ready:
        print(f"not prepared: {', '.join(not_ready)}")


def missing_manual_files(task: TaskSpec, data_dir: str) -> list[Path]:
    """The hand-downloaded files tfds needs for `task` that are not in its manual_dir."""
    manual = manual_dir(data_dir)
    return [
        manual / name for name in task.extra.get("manual_files", ()) if not (manual / name).exists()
    ]


def manual_dir(data_dir: str) -> Path:
    """tfds's default manual_dir for a data_dir."""
    return Path(data_dir) / "downloads" / "manual"


def manual_message(task: TaskSpec, data_dir: str, missing: list[Path]) -> str:
    instructions = (task.manual_download or "").replace("<DATA>", data_dir)
    shown = ", ".join(str(path) for path in missing)
    return (
        f"{task.name}: skipped, manual download needed. {instructions}\n"
        f"  put the files in: {manual_dir(data_dir)}\n  missing: {shown}"
    )


def download_and_prepare(task: TaskSpec, data_dir: str, where: str) -> None:
    """Download and prepare the task's builder in array_record format (needs TensorFlow)."""
    require_modules(task)
    import tensorflow_datasets as tfds

    builder = tfds.builder(task.tfds_name, data_dir=data_dir)
    if builder.is_prepared():  # prepared, but in a format tfds.data_source cannot read
        status = SOURCES.get("tfds").status(task, data_dir)
        raise UserError(f"{task.name}: {where}: {status.how_to_prepare}")
    print(f"{task.name}: preparing {task.tfds_name} into {builder.data_dir}")
    builder.download_and_prepare(file_format="array_record")


def require_modules(task: TaskSpec) -> None:
    """A UserError naming what to install, before a long download that would fail at the end."""
    if importlib.util.find_spec("tensorflow") is None:
        raise UserError(f"preparing {task.name} needs tensorflow: {TENSORFLOW_HINT}")
    builder_name = (task.tfds_name or "").split(":")[0].split("/")[0]
    for module, package in PREPARE_MODULES.get(builder_name, {}).items():
        if importlib.util.find_spec(module) is None:
            raise UserError(f"preparing {task.name} needs {module}: pip install {package}")


def export_folder(task: TaskSpec, data_dir: str, root: Path, tfds_source: Source) -> Path:
    """Write the task in the vtab-1k folder layout under root/<task> (list files written last)."""
    folder = root / task.name
    if SOURCES.get("folder").status(task, str(root)).found:
        print(f"{task.name}: vtab-1k folder already at {folder}")
        return folder
    lines = {
        split: export_split(task, split, data_dir, folder, tfds_source) for split in EXPORT_SPLITS
    }
    lines["train800val200"] = lines["train800"] + lines["val200"]
    # The folder source looks for train800val200.txt and test.txt: write them last.
    for split in ("train800", "val200", "train800val200", "test"):
        write_text_atomic(folder / f"{split}.txt", "".join(f"{line}\n" for line in lines[split]))
    print(f"{task.name}: exported to {folder}")
    return folder


def export_split(
    task: TaskSpec, split: str, data_dir: str, folder: Path, source: Source
) -> list[str]:
    raw = source.read_split(task, split, data_dir)
    (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(
        tqdm(raw.images, total=len(raw.labels), desc=f"export {task.name}/{split}")
    ):
        relative = f"images/{split}/{i:06d}.jpg"
        save_jpeg(image, folder / relative)
        paths.append(relative)
    labels = np.asarray(raw.labels, dtype=np.int64)
    return [f"{path} {int(label)}" for path, label in zip(paths, labels, strict=True)]


def save_jpeg(image: np.ndarray, path: Path) -> None:
    """HxWx3 or grayscale uint8 -> RGB JPEG at quality 75, native resolution."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    Image.fromarray(array).convert("RGB").save(path, format="JPEG", quality=JPEG_QUALITY)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def task_table(data_dir: str | None) -> list[dict]:
    """The 19 tasks with, per source, whether the data is here and, if not, how to get it."""
    sources = {name: SOURCES.get(name) for name in ("folder", "tfds")}
    rows = []
    for task in VTAB_TASKS:
        row = {
            "name": task.name,
            "group": task.group,
            "classes": task.num_classes,
            "aliases": list(task.aliases),
        }
        for name, source in sources.items():
            status = source.status(task, data_dir)
            row[name] = {
                "found": status.found,
                "where": status.where,
                "how_to_prepare": "" if status.found else status.how_to_prepare,
            }
        rows.append(row)
    return rows


def offline_task_lines() -> list[str]:
    """The tasks that need no data (the digits and the generated gen_*), apart from VTAB's."""
    from bench.tasks import DIGITS, GENERATED_TASKS

    lines = ["Offline tasks, no data needed (not VTAB: `make bench TASK=<name>`):"]
    for task in (DIGITS, *GENERATED_TASKS):
        lines.append(f"  {task.name:14}{task.num_classes:>3} classes  {task.notes}")
    return lines


def format_task_table(rows: list[dict]) -> str:
    """An aligned table for the terminal; what is missing, and how to prepare it, below it."""
    header = ("task", "group", "classes", "aliases", "folder", "tfds")
    body = [
        (
            row["name"],
            row["group"],
            str(row["classes"]),
            ", ".join(row["aliases"]) or "-",
            "yes" if row["folder"]["found"] else "no",
            "yes" if row["tfds"]["found"] else "no",
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in (header, *body)) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()
        for cells in (header, *body)
    ]
    counts = {s: sum(row[s]["found"] for row in rows) for s in ("folder", "tfds")}
    lines.append(f"{len(rows)} tasks; found: folder {counts['folder']}, tfds {counts['tfds']}")
    missing = [row for row in rows if not (row["folder"]["found"] or row["tfds"]["found"])]
    if missing:
        lines += ["", "No data (either source is enough for a task):"]
        for row in missing:
            lines.append(f"  {row['name']}")
            for source in ("folder", "tfds"):
                status = row[source]
                if not status["found"]:
                    lines.append(f"    {source + ':':8}expected {status['where']}")
                    lines.append(f"    {'':8}prepare: {status['how_to_prepare']}")
    return "\n".join(lines)
