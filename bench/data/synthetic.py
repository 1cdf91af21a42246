"""Valid vtab-1k folders of generated JPEGs: for tests, end-to-end checks and benchmarks
(`benchmarks/task_wall.py`), never for results.

`make_vtab_folder(tmp_path)` returns the DATA root: pass it as DATA=<root> with SOURCE=folder.
The task folder is `<root>/<task>` with the four list files (train800val200 = train800 lines
then val200 lines) and `images/{train800,val200,test}/<i:06d>.jpg`. Each class has its own mean
colour plus noise, so a model can learn the task a little.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bench.tasks import get_task

SPLIT_FILES = ("train800", "val200", "train800val200", "test")


def make_vtab_folder(
    root: str | Path,
    task: str = "eurosat",
    n_train: int = 40,
    n_test: int = 20,
    size: int = 32,
    num_classes: int | None = None,
    seed: int = 0,
    n_val: int | None = None,
) -> Path:
    """Write `<root>/<task>` in the vtab-1k layout and return `root` (the DATA directory).

    Labels cycle through the classes (i % num_classes), so every class is in train800 as soon
    as n_train >= num_classes. `num_classes` defaults to the task's.
    """
    root = Path(root)
    folder = root / get_task(task).name
    classes = num_classes if num_classes is not None else get_task(task).num_classes
    n_val = max(1, n_train // 4) if n_val is None else n_val
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(classes, 3))
    lines = {}
    for split, count in (("train800", n_train), ("val200", n_val), ("test", n_test)):
        lines[split] = write_split(folder, split, count, classes, colours, size, rng)
    lines["train800val200"] = lines["train800"] + lines["val200"]
    for split in SPLIT_FILES:
        (folder / f"{split}.txt").write_text("".join(f"{line}\n" for line in lines[split]))
    return root


def write_split(
    folder: Path,
    split: str,
    count: int,
    classes: int,
    colours: np.ndarray,
    size: int,
    rng: np.random.Generator,
) -> list[str]:
    (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        label = i % classes
        noise = rng.normal(0, 25, size=(size, size, 3))
        pixels = np.clip(colours[label] + noise, 0, 255).astype(np.uint8)
        relative = f"images/{split}/{i:06d}.jpg"
        Image.fromarray(pixels).save(folder / relative, format="JPEG", quality=75)
        lines.append(f"{relative} {label}")
    return lines
