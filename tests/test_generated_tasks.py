"""The generated tasks (bench.data.generated): VTAB-1k-shaped balanced splits, deterministic from
the seed, each label recoverable from its image by a hand computation; the data checks every
offline task passes; and one run end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.data.cache import cached_split
from bench.data.generated import SIZE, generate
from bench.data.sources import resolve_source
from bench.errors import UserError
from bench.tasks import GENERATED_TASKS, get_task, tasks_in
from tests.conftest import (
    READ_LABEL,
    blobs,
    direction_bin,
    runs_of_suite,
    shape_weight,
    tiny_cli_options,
    x_bin,
)

NAMES = [task.name for task in GENERATED_TASKS]
SIZES = {"train800": 800, "val200": 200, "train800val200": 1000, "test": 2000}


@pytest.fixture(scope="module")
def splits() -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(task, split) -> (labels, images) at the default seed."""
    return {(n, s): generate(get_task(n), s) for n in NAMES for s in SIZES}


def test_three_generated_tasks_apart_from_vtab():
    assert NAMES == ["gen_shape_loc", "gen_shape_ori", "gen_count"]
    vtab = {t.name for t in tasks_in("all")}
    for task in GENERATED_TASKS:
        assert task.group == "generated" and task.name not in vtab
        assert task.num_classes == 8 and task.tfds_name is None
        assert "generated" in task.notes and "no evidence about the VTAB tasks" in task.notes
        assert task.val200 is task.test is None and task.label_rule == "label"
    # a version is part of the cache key: gen_count's 2 (shapes anywhere) must not read v1 entries
    assert [task.version for task in GENERATED_TASKS] == ["1", "1", "2"]


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_vtab_1k_shaped_and_balanced(splits, name):
    classes = get_task(name).num_classes
    for split, size in SIZES.items():
        labels, images = splits[name, split]
        assert labels.dtype == np.int64 and labels.shape == (size,)
        assert images.dtype == np.uint8 and images.shape == (size, SIZE, SIZE, 3)
        assert np.bincount(labels, minlength=classes).tolist() == [size // classes] * classes
    joined = [
        np.concatenate([splits[name, "train800"][i], splits[name, "val200"][i]]) for i in (0, 1)
    ]
    np.testing.assert_array_equal(splits[name, "train800val200"][0], joined[0])
    np.testing.assert_array_equal(splits[name, "train800val200"][1], joined[1])


@pytest.mark.parametrize("name", NAMES)
def test_no_image_in_two_splits(splits, name):
    seen = [
        {image.tobytes() for image in splits[name, s][1]} for s in ("train800", "val200", "test")
    ]
    assert sum(len(s) for s in seen) == len(set().union(*seen)) == 3000


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_arrays_other_seed_different(splits, name):
    task = get_task(name)
    labels, images = generate(task, "val200", seed=0)
    np.testing.assert_array_equal(labels, splits[name, "val200"][0])
    np.testing.assert_array_equal(images, splits[name, "val200"][1])
    other_labels, other_images = generate(task, "val200", seed=1)
    assert (other_labels != labels).mean() > 0.5
    assert np.bincount(other_labels).tolist() == np.bincount(labels).tolist()
    assert not any(np.array_equal(a, b) for a, b in zip(images, other_images, strict=True))


# --- the label, read off the pixels ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split", ["train800val200", "test"])
def test_the_label_is_read_off_the_pixels(splits, name, split):
    labels, images = splits[name, split]
    classes = get_task(name).num_classes
    read = np.array([READ_LABEL[name](image, classes) for image in images])
    np.testing.assert_array_equal(read, labels)


def test_gen_count_is_not_read_off_the_amount_of_ink(splits):
    """Shape sizes spread enough that a classifier on the ink alone (the shape pixels and their
    square root) is far from reading the count: the task needs the shapes counted."""
    from sklearn.linear_model import LogisticRegression

    def ink(images: np.ndarray) -> np.ndarray:
        pixels = np.array([(shape_weight(image) > 0).sum() for image in images], dtype=float)
        return np.stack([pixels / 100, np.sqrt(pixels) / 10], axis=1)

    train_labels, train_images = splits["gen_count", "train800val200"]
    test_labels, test_images = splits["gen_count", "test"]
    probe = LogisticRegression(max_iter=5000).fit(ink(train_images), train_labels)
    assert (probe.predict(ink(test_images)) == test_labels).mean() < 0.55


def test_the_hand_readings_on_known_drawings():
    """The readings themselves, on drawings whose answer is known."""
    from bench.data.shapes import Canvas, arrow, bounding_box, convex_polygon, disc

    def drawn(*shapes) -> np.ndarray:
        canvas = Canvas(SIZE, np.array([10, 20, 30]))
        for inside, box in shapes:
            canvas.draw(inside, box, np.array([200, 220, 240]))
        return canvas.image()

    assert x_bin(drawn((disc(7.0, 16.0, 3.0), (4, 13, 10, 19))), 8) == 0  # bins 2.5 px from 6
    assert x_bin(drawn((disc(25.0, 9.0, 4.0), (21, 5, 29, 13))), 8) == 7
    up = arrow(16.0, 16.0, 15.0, 9.0, math.pi / 2 + 0.1)  # points up, a little to the left
    assert direction_bin(drawn((convex_polygon(up), bounding_box(up))), 8) == 2
    down_right = arrow(16.0, 16.0, 15.0, 9.0, -math.pi / 4 + 0.1)
    assert direction_bin(drawn((convex_polygon(down_right), bounding_box(down_right))), 8) == 7
    three = [(disc(x, 6.0, 2.0), (x - 2, 4, x + 2, 8)) for x in (5.0, 13.0, 21.0)]
    assert blobs(drawn(*three)) == 3


# --- the data checks of every offline task -----------------------------------------------------


def test_auto_finds_each_offline_task_its_source():
    assert resolve_source(get_task("digits"), "auto", None).name == "digits"
    for name in NAMES:
        assert resolve_source(get_task(name), "auto", None).name == "generated"
    with pytest.raises(UserError, match="only gen_shape_loc, gen_shape_ori, gen_count"):
        resolve_source(get_task("digits"), "generated", None)


@pytest.mark.parametrize("name", ["digits", *NAMES])
def test_offline_task_through_source_and_cache(name, tmp_path):
    """What the tfds and folder sources are held to: int64 labels in range, one uint8 image per
    label; then the cache's (N, 3, S, S) split, its labels the source's."""
    task = get_task(name)
    source = resolve_source(task, "auto", None)
    sizes = {}
    for split in SIZES:
        raw = source.read_split(task, split, None)
        labels, images = np.asarray(raw.labels), list(raw.images)
        assert labels.dtype == np.int64 and labels.ndim == 1 and len(images) == len(labels)
        assert ((labels >= 0) & (labels < task.num_classes)).all()
        assert set(labels.tolist()) == set(range(task.num_classes))
        assert all(image.dtype == np.uint8 and image.ndim in (2, 3) for image in images)
        sizes[split] = len(labels)
    assert sizes["train800"] == 800 and sizes["val200"] == 200 and sizes["train800val200"] == 1000
    cached = cached_split(source, task, "val200", None, 16, "bicubic", tmp_path, progress=False)
    assert cached.images.shape == (200, 3, 16, 16) and cached.images.dtype == np.uint8
    np.testing.assert_array_equal(cached.labels, source.read_split(task, "val200", None).labels)


def test_demo_sweep_covers_the_generated_tasks_and_bench_stays_on_digits():
    from bench.config import load_config

    config = load_config("demo", {})
    assert [t.name for t in tasks_in(config.sweep.tasks)] == ["digits", *NAMES]
    assert config.data.task == "digits"


def test_prepare_has_nothing_to_do_for_them(capsys, tmp_path):
    from bench.data.prepare import prepare

    prepare([get_task("gen_count"), get_task("digits")], str(tmp_path), None)
    assert capsys.readouterr().out.splitlines() == [
        "gen_count: nothing to prepare (generated in numpy)",
        "digits: nothing to prepare (bundled with scikit-learn)",
    ]


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("gen_shape_position", "gen_shape_loc"),
        ("gen_shape_x", "gen_shape_loc"),
        ("gen_shape_orientation", "gen_shape_ori"),
        ("gen_shape_count", "gen_count"),
        ("GEN_COUNT", "gen_count"),
    ],
)
def test_aliases_resolve(alias, name):
    assert get_task(alias).name == name


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("gen_shape_pos", "gen_shape_loc"),
        ("gen_shap_loc", "gen_shape_loc"),
        ("gen_shape_orient", "gen_shape_ori"),
        ("gen_shape_cnt", "gen_count"),
        ("gen_cout", "gen_count"),
        ("gen_shape_scale", None),  # an attribute no generated task has: no guess
        ("gen_shape", None),
    ],
)
def test_did_you_mean_never_offers_another_attribute(typo, expected):
    with pytest.raises(UserError) as raised:
        get_task(typo)
    message = str(raised.value)
    if expected is None:
        assert "Did you mean" not in message
    else:
        assert f"Did you mean {expected!r}?" in message


# --- end to end --------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_bench_on_gen_count_finishes():
    from bench import record as R
    from bench.cli import main

    suite = "tests-gen-count"
    argv = ["bench", *tiny_cli_options(), "--task", "gen_count", "--methods", "none,sls"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--suite", suite])
    assert exit_info.value.code == 0
    runs = runs_of_suite(suite)
    assert sorted(r.data.params[R.PRUNER] for r in runs) == ["none", "sls"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params[R.P_TASK] == "gen_count"
        assert run.data.params[R.P_SOURCE] == "generated"
        assert 0.0 <= run.data.metrics[R.ACC] <= 1.0


def test_make_tasks_lists_the_offline_tasks_apart_from_vtab(capsys):
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["tasks"])
    assert exit_info.value.code == 0
    vtab, offline = capsys.readouterr().out.split("Offline tasks, no data needed")
    assert "19 tasks" in vtab and not any(name in vtab for name in ["digits", *NAMES])
    rows = {line.split()[0]: line for line in offline.splitlines()[1:] if line.strip()}
    assert list(rows) == ["digits", *NAMES]
    for name in NAMES:
        assert rows[name].split()[1:3] == ["8", "classes"]
        assert "not that dataset" in rows[name]
