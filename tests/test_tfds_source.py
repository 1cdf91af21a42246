"""The tfds source, offline and without TensorFlow, plus `make prepare` / `make tasks` helpers.

Two kinds of data: `tfds.testing.mock_data` for the 16 real VTAB builders (random examples; it
ignores split slicing), and a tiny builder with tensor features that tfds can prepare in
array_record without TensorFlow, so the real read path (split strings, status, export) runs too.

Mock policy for clevr_count, clevr_dist and kitti: mock `objects` sequences have random,
inconsistent lengths, so their labels are meaningless. For them the test asserts that the images
come through and that labels are either valid or refused with an error naming the task and rule;
the rules themselves are tested on hand-made examples in test_labels.py.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bench.data.cache import cached_split, to_rgb_resized
from bench.data.folder import SOURCE as FOLDER
from bench.data.labels import LABEL_RULES
from bench.data.prepare import TENSORFLOW_HINT, format_task_table, prepare, task_table
from bench.data.sources import SOURCES
from bench.data.synthetic import make_vtab_folder
from bench.data.tfds_source import SOURCE, SplitReader
from bench.errors import UserError
from bench.tasks import SPLITS, VTAB_TASKS, TaskSpec, get_task

MOCK_EXAMPLES = 4
OBJECT_TASKS = {"clevr_count", "clevr_dist", "kitti"}


def test_tensorflow_is_not_needed():
    assert "tensorflow" not in sys.modules


def test_registered_under_tfds():
    assert SOURCES.get("tfds") is SOURCE
    assert (SOURCE.name, SOURCE.format) == ("tfds", "tensor")


def test_all_sixteen_builders_are_covered():
    assert len({task.tfds_name for task in VTAB_TASKS}) == 16


@pytest.mark.parametrize("name", [task.name for task in VTAB_TASKS])
def test_mock_examples_read_through_data_source(name, tmp_path):
    task = get_task(name)
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        raw = SOURCE.read_split(task, "train800val200", str(tmp_path))
        assert len(raw.labels) == MOCK_EXAMPLES
        assert task.tfds_name.split(":")[0] in raw.fingerprint
        assert task.split_string("train800val200") in raw.fingerprint
        try:
            images = list(raw.images)
            labels = np.asarray(raw.labels)
        except ValueError as error:
            assert name in OBJECT_TASKS, error
            assert name in str(error) and task.label_rule in str(error)
            return
    assert len(images) == MOCK_EXAMPLES
    for image in images:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] in (1, 3)
        assert to_rgb_resized(image, 8, "bilinear").shape == (3, 8, 8)
    assert labels.dtype == np.int64 and labels.shape == (MOCK_EXAMPLES,)
    assert ((labels >= 0) & (labels < task.num_classes)).all()


@pytest.mark.parametrize("name", ["dsprites_ori", "smallnorb_azi", "cifar"])
def test_rules_applied_to_the_same_examples(name, tmp_path):
    task = get_task(name)
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        raw = SOURCE.read_split(task, "test", str(tmp_path))
        images = list(raw.images)
        examples = tfds.data_source(task.tfds_name, split="test", data_dir=str(tmp_path))
        for i, image in enumerate(images):
            example = examples[i]
            assert raw.labels[i] == LABEL_RULES[task.label_rule](example)
            if name.startswith("dsprites"):
                np.testing.assert_array_equal(image, np.where(example["image"] > 0, 255, 0))
            else:  # smallnorb: `image`, never `image2`
                np.testing.assert_array_equal(image, example["image"])


def test_labels_cost_nothing_until_used(tmp_path, monkeypatch):
    reads = []
    monkeypatch.setattr(SplitReader, "label_of", counting(SplitReader.label_of, reads))
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        raw = SOURCE.read_split(get_task("svhn"), "test", str(tmp_path))
        assert len(raw.labels) == MOCK_EXAMPLES and reads == []
        images = list(raw.images)  # one pass: images and labels together
        assert len(images) == MOCK_EXAMPLES and len(reads) == MOCK_EXAMPLES
        assert raw.labels.max() < 10 and len(reads) == MOCK_EXAMPLES  # no second pass


def test_labels_alone_take_one_pass(tmp_path):
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        raw = SOURCE.read_split(get_task("eurosat"), "val200", str(tmp_path))
        labels = np.asarray(raw.labels, dtype=np.int32)
    assert labels.dtype == np.int32 and labels.shape == (MOCK_EXAMPLES,)


def test_cache_hit_reads_no_record(tmp_path, monkeypatch):
    reads = []
    monkeypatch.setattr(SplitReader, "label_of", counting(SplitReader.label_of, reads))
    task, cache = get_task("smallnorb_ele"), tmp_path / "cache"
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        first = cached_split(SOURCE, task, "test", str(tmp_path), 16, "bicubic", cache, False)
        assert len(reads) == MOCK_EXAMPLES
        second = cached_split(SOURCE, task, "test", str(tmp_path), 16, "bicubic", cache, False)
    assert len(reads) == MOCK_EXAMPLES
    assert second.images.shape == (MOCK_EXAMPLES, 3, 16, 16)
    np.testing.assert_array_equal(first.labels, second.labels)


def test_missing_data_is_a_user_error_with_the_command(tmp_path):
    with pytest.raises(UserError) as error:
        SOURCE.read_split(get_task("eurosat"), "test", str(tmp_path))
    message = str(error.value)
    assert str(tmp_path / "eurosat" / "rgb" / "2.0.0") in message
    assert f"make prepare TASK=eurosat DATA={tmp_path}" in message


@pytest.mark.parametrize("name", [task.name for task in VTAB_TASKS])
def test_status_missing_says_where_and_how(name, tmp_path):
    task = get_task(name)
    status = SOURCE.status(task, str(tmp_path))
    assert not status.found
    assert status.where.startswith(str(tmp_path / task.tfds_name.split(":")[0]))
    assert status.how_to_prepare.startswith(f"make prepare TASK={name} DATA={tmp_path}")
    if task.manual_download:
        assert str(tmp_path / "downloads" / "manual") in status.how_to_prepare


def test_pets_has_no_version_constraint(tmp_path):
    assert SOURCE.status(get_task("pets"), str(tmp_path)).where.endswith("oxford_iiit_pet/4.0.0")


# --- the real array_record path, on a tiny builder tfds prepares without TensorFlow -----------


class BenchTinyVtab(tfds.core.GeneratorBasedBuilder):
    """830 train + 8 test examples; the image's first two channels spell the example id."""

    VERSION = tfds.core.Version("1.0.0")
    # A one-part module name: tfds then skips probing `tests` as a package resource (which
    # would import the optional importlib_resources).
    __module__ = "bench_tiny_vtab"

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "image": tfds.features.Tensor(shape=(4, 4, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 830), "test": self._generate_examples(1000, 8)}

    def _generate_examples(self, start: int, count: int):
        for i in range(start, start + count):
            image = np.zeros((4, 4, 3), np.uint8)
            image[..., 0], image[..., 1] = i // 256, i % 256
            yield i, {"image": image, "label": i % 10}


TINY = TaskSpec("tiny", "offline", 10, "bench_tiny_vtab:1.*.*", "train[800:810]", "test")


def ids(images) -> list[int]:
    return [int(image[0, 0, 0]) * 256 + int(image[0, 0, 1]) for image in images]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
    data_dir = tmp_path_factory.mktemp("tfds")
    BenchTinyVtab(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
    return str(data_dir)


def test_tiny_status_found(tiny_data):
    status = SOURCE.status(TINY, tiny_data)
    assert status.found and status.where == f"{tiny_data}/bench_tiny_vtab/1.0.0"


def test_split_strings_are_sliced_by_data_source(tiny_data):
    read = {split: SOURCE.read_split(TINY, split, tiny_data) for split in SPLITS}
    got = {split: ids(raw.images) for split, raw in read.items()}
    assert {split: len(v) for split, v in got.items()} == {
        "train800": 800, "val200": 10, "train800val200": 810, "test": 8
    }  # fmt: skip
    assert got["train800val200"] == got["train800"] + got["val200"]
    assert len(set(got["train800val200"])) == 810 and max(got["train800val200"]) < 830
    assert sorted(got["test"]) == list(range(1000, 1008))
    for split, raw in read.items():
        np.testing.assert_array_equal(raw.labels, [i % 10 for i in got[split]])
    assert read["val200"].fingerprint == (
        f"tfds:bench_tiny_vtab/1.0.0:train[800:810]:{tiny_data}/bench_tiny_vtab/1.0.0"
    )


def test_added_split_strings_keep_their_order(tiny_data):
    whole = ids(SOURCE.read_split(replace(TINY, val200="train"), "val200", tiny_data).images)
    task = replace(TINY, val200="train[825:]+train[:3]")
    assert ids(SOURCE.read_split(task, "val200", tiny_data).images) == whole[825:] + whole[:3]


@pytest.mark.parametrize(
    ("val200", "message"),
    [("train[900:1100]", "incompatible with 830 examples"), ("validation[:200]", "Unknown split")],
)
def test_bad_split_strings_are_clear_errors(tiny_data, val200, message):
    with pytest.raises(UserError, match=message):
        SOURCE.read_split(replace(TINY, val200=val200), "val200", tiny_data)


def test_prepare_exports_a_folder_the_folder_source_reads(tiny_data, tmp_path, capsys):
    export = tmp_path / "vtab-1k"
    prepare([TINY], tiny_data, str(export))
    assert "tfds data found" in capsys.readouterr().out
    assert FOLDER.status(TINY, str(export)).found
    lines = {s: (export / "tiny" / f"{s}.txt").read_text().splitlines() for s in SPLITS}
    assert lines["train800val200"] == lines["train800"] + lines["val200"]
    assert lines["val200"][0].startswith("images/val200/000000.jpg ")
    for split in SPLITS:
        from_tfds = SOURCE.read_split(TINY, split, tiny_data)
        from_folder = FOLDER.read_split(TINY, split, str(export))
        np.testing.assert_array_equal(from_folder.labels, from_tfds.labels)
        if split != "train800":  # the JPEGs hold the same pictures, up to compression
            for a, b in zip(from_folder.images, from_tfds.images, strict=True):
                assert np.abs(a.astype(int) - b.astype(int)).max() <= 3
    prepare([TINY], tiny_data, str(export))
    assert "already" in capsys.readouterr().out


# --- prepare and the task table ------------------------------------------------------------


def test_prepare_needs_a_data_dir():
    with pytest.raises(UserError, match="DATA="):
        prepare([get_task("eurosat")], "", None)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="would download")
def test_prepare_without_tensorflow_says_what_to_install(tmp_path):
    with pytest.raises(UserError, match=re.escape(TENSORFLOW_HINT)):
        prepare([get_task("eurosat")], str(tmp_path), None)


def test_prepare_skips_manual_downloads_and_goes_on(tiny_data, tmp_path, capsys):
    prepare([get_task("resisc45"), get_task("retinopathy"), TINY], tiny_data, None)
    out = capsys.readouterr().out
    manual = f"{tiny_data}/downloads/manual"
    assert "resisc45: skipped, manual download needed" in out
    assert f"{manual}/NWPU-RESISC45" in out and f"{manual}/trainLabels.csv" in out
    assert "tiny: tfds data found" in out  # the next task was still handled
    assert "not prepared: resisc45 (manual download), diabetic_retinopathy" in out


def test_task_table_rows(tmp_path):
    data = make_vtab_folder(tmp_path, "eurosat", n_train=10, n_test=4, size=8)
    rows = task_table(str(data))
    assert [row["name"] for row in rows] == [task.name for task in VTAB_TASKS]
    eurosat = next(row for row in rows if row["name"] == "eurosat")
    assert eurosat["folder"] == {
        "found": True,
        "where": str(data / "eurosat"),
        "how_to_prepare": "",
    }
    cifar = rows[0]
    assert (cifar["group"], cifar["classes"], cifar["aliases"]) == (
        "natural",
        100,
        ["cifar100", "cifar-100"],
    )
    assert cifar["folder"]["found"] is False and cifar["tfds"]["found"] is False
    assert cifar["tfds"]["where"].startswith(str(data / "cifar100" / "3."))
    assert cifar["tfds"]["how_to_prepare"] == f"make prepare TASK=cifar DATA={data}"


def test_format_task_table(tmp_path):
    data = make_vtab_folder(tmp_path, "eurosat", n_train=10, n_test=4, size=8)
    text = format_task_table(task_table(str(data)))
    lines = text.splitlines()
    assert lines[0].split() == ["task", "group", "classes", "aliases", "folder", "tfds"]
    assert lines[1].split()[:3] == ["cifar", "natural", "100"]
    eurosat = next(line for line in lines if line.startswith("eurosat "))
    assert eurosat.split()[-2:] == ["yes", "no"]
    assert "19 tasks; found: folder 1, tfds 0" in text
    details = text.split("No data")[1]
    assert "eurosat" not in details
    assert f"expected {data}/cifar/train800val200.txt" in details
    assert f"prepare: make prepare TASK=cifar DATA={data}" in details
    assert "NWPU-RESISC45" in details


def counting(method, calls: list):
    def wrapper(self, *args, **kwargs):
        calls.append(args)
        return method(self, *args, **kwargs)

    return wrapper
