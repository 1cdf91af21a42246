"""The VTAB-1k task table against the facts it follows: Google's task_adaptation data classes
(builder versions, split strings: see bench/tasks.py and the README's "Data" section) and the tfds
catalogue sizes below; plus names, aliases and did-you-mean."""

from __future__ import annotations

import pytest

from bench.data.labels import IMAGE_RULES, LABEL_RULES
from bench.data.tfds_source import split_size
from bench.errors import UserError
from bench.tasks import GROUPS, SPLITS, VTAB_TASKS, get_task, tasks_in

# name: (group, classes, tfds spec, val200, test, test size), in VTAB's order (bench/tasks.py).
SPEC = {
    "cifar": ("natural", 100, "cifar100:3.*.*", "train[45000:45200]", "test", 10_000),
    "caltech101": ("natural", 102, "caltech101:3.*.*", "train[2754:2954]", "test", 6_084),
    "dtd": ("natural", 47, "dtd:3.*.*", "validation[:200]", "test", 1_880),
    "oxford_flowers102": (
        "natural", 102, "oxford_flowers102:2.*.*", "validation[:200]", "test", 6_149
    ),
    # task_adaptation pins 3.*.*; tfds 4.x builds only 4.0.0 (same classes and splits).
    "oxford_iiit_pet": (
        "natural", 37, "oxford_iiit_pet:4.*.*", "train[2944:3144]", "test", 3_669
    ),
    "svhn": ("natural", 10, "svhn_cropped:3.*.*", "train[65931:66131]", "test", 26_032),
    "sun397": ("natural", 397, "sun397/tfds:4.*.*", "validation[:200]", "test", 21_750),
    "patch_camelyon": (
        "specialized", 2, "patch_camelyon:2.*.*", "validation[:200]", "test", 32_768
    ),
    "eurosat": (
        "specialized", 10, "eurosat/rgb:2.*.*", "train[16200:16400]", "train[21600:]", 5_400
    ),
    "resisc45": (
        "specialized", 45, "resisc45:3.*.*", "train[18900:19100]", "train[25200:]", 6_300
    ),
    "diabetic_retinopathy": (
        "specialized", 5, "diabetic_retinopathy_detection/btgraham-300:3.*.*",
        "validation[:200]", "test", 42_670,
    ),
    "clevr_count": ("structured", 8, "clevr:3.*.*", "train[63000:63200]", "validation", 15_000),
    "clevr_dist": ("structured", 6, "clevr:3.*.*", "train[63000:63200]", "validation", 15_000),
    "dmlab": ("structured", 6, "dmlab:2.0.1", "validation[:200]", "test", 22_735),
    "kitti": ("structured", 4, "kitti:3.2.0", "validation[:200]", "test", 711),
    "dsprites_loc": (
        "structured", 16, "dsprites:2.*.*", "train[589824:590024]", "train[663552:]", 73_728
    ),
    "dsprites_ori": (
        "structured", 16, "dsprites:2.*.*", "train[589824:590024]", "train[663552:]", 73_728
    ),
    "smallnorb_azi": ("structured", 18, "smallnorb:2.*.*", "test[:200]", "test[50%:]", 12_150),
    "smallnorb_ele": ("structured", 9, "smallnorb:2.*.*", "test[:200]", "test[50%:]", 12_150),
}  # fmt: skip

# Examples per tfds split of each builder (tfds catalogue), to check the split arithmetic.
TFDS_SIZES = {
    "cifar100": {"train": 50_000, "test": 10_000},
    "caltech101": {"train": 3_060, "test": 6_084},
    "dtd": {"train": 1_880, "validation": 1_880, "test": 1_880},
    "oxford_flowers102": {"train": 1_020, "validation": 1_020, "test": 6_149},
    "oxford_iiit_pet": {"train": 3_680, "test": 3_669},
    "svhn_cropped": {"train": 73_257, "test": 26_032, "extra": 531_131},
    "sun397": {"train": 76_128, "validation": 10_875, "test": 21_750},
    "patch_camelyon": {"train": 262_144, "validation": 32_768, "test": 32_768},
    "eurosat": {"train": 27_000},
    "resisc45": {"train": 31_500},
    "diabetic_retinopathy_detection": {"train": 35_126, "validation": 10_906, "test": 42_670},
    "clevr": {"train": 70_000, "validation": 15_000, "test": 15_000},
    "dmlab": {"train": 65_550, "validation": 22_628, "test": 22_735},
    "kitti": {"train": 6_347, "validation": 423, "test": 711},
    "dsprites": {"train": 737_280},
    "smallnorb": {"train": 24_300, "test": 24_300},
}


def builder_name(task) -> str:
    return task.tfds_name.split(":")[0].split("/")[0]


def test_the_nineteen_tasks_in_order():
    assert [task.name for task in VTAB_TASKS] == list(SPEC)


@pytest.mark.parametrize("name", list(SPEC))
def test_task_matches_spec(name):
    group, classes, tfds_name, val200, test, _ = SPEC[name]
    task = get_task(name)
    assert (task.group, task.num_classes, task.tfds_name) == (group, classes, tfds_name)
    assert task.split_string("train800") == "train[:800]"
    assert task.split_string("val200") == val200
    assert task.split_string("train800val200") == f"train[:800]+{val200}"
    assert task.split_string("test") == test
    assert task.label_rule in LABEL_RULES
    assert task.image_rule in IMAGE_RULES


@pytest.mark.parametrize("name", list(SPEC))
def test_split_arithmetic(name):
    task = get_task(name)
    sizes = TFDS_SIZES[builder_name(task)]
    assert split_size(task.split_string("train800"), sizes) == 800
    assert split_size(task.split_string("val200"), sizes) == 200
    assert split_size(task.split_string("train800val200"), sizes) == 1000
    assert split_size(task.split_string("test"), sizes) == SPEC[name][5]


def test_vtab_val200_never_overlaps_train800_or_test():
    from bench.data.tfds_source import split_ranges

    for task in VTAB_TASKS:
        sizes = TFDS_SIZES[builder_name(task)]
        ranges = {
            s: split_ranges(task.split_string(s), sizes) for s in ("train800", "val200", "test")
        }
        for a, b in (("train800", "val200"), ("val200", "test"), ("train800", "test")):
            for split_a, start_a, stop_a in ranges[a]:
                for split_b, start_b, stop_b in ranges[b]:
                    overlap = split_a == split_b and start_a < stop_b and start_b < stop_a
                    assert not overlap, f"{task.name}: {a} and {b} overlap"


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="unknown split"):
        get_task("cifar").split_string("train")
    assert SPLITS == ("train800", "val200", "train800val200", "test")


def test_groups_hold_7_4_8_tasks():
    counts = {group: len(tasks_in(group)) for group in GROUPS}
    assert counts == {"natural": 7, "specialized": 4, "structured": 8}
    assert len(tasks_in("all")) == 19


def test_sixteen_distinct_builders():
    assert len({task.tfds_name for task in VTAB_TASKS}) == 16


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("cifar100", "cifar"),
        ("CIFAR100", "cifar"),
        ("pets", "oxford_iiit_pet"),
        ("oxford_pet", "oxford_iiit_pet"),
        ("flowers102", "oxford_flowers102"),
        ("flowers", "oxford_flowers102"),
        ("retinopathy", "diabetic_retinopathy"),
        ("camelyon", "patch_camelyon"),
        ("pcam", "patch_camelyon"),
        ("kitti_dist", "kitti"),
        # names used by other repositories (VPT, NOAH, task_adaptation attributes)
        ("dsprites_position", "dsprites_loc"),
        ("dsprites_location", "dsprites_loc"),
        ("dsprites_orientation", "dsprites_ori"),
        ("clevr_distance", "clevr_dist"),
        ("smallnorb_azimuth", "smallnorb_azi"),
        ("smallnorb_elevation", "smallnorb_ele"),
        ("caltech", "caltech101"),
        ("pet", "oxford_iiit_pet"),
        ("svhn_cropped", "svhn"),
    ],
)
def test_aliases_resolve(alias, name):
    assert get_task(alias).name == name


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("dsprites_pos", "dsprites_loc"),
        ("dsprites_positon", "dsprites_loc"),
        ("dsprites_orientaton", "dsprites_ori"),
        ("dsprite_loc", "dsprites_loc"),
        ("smallnorb_azimut", "smallnorb_azi"),
        ("smallnorb_elev", "smallnorb_ele"),
        ("clevr_dis", "clevr_dist"),
        ("clevr_counts", "clevr_count"),
        ("dsprites_scale", None),  # an attribute VTAB does not use: no guess
        ("dsprites_shape", None),
        ("smallnorb_lighting", None),
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


def test_comma_list_with_aliases():
    assert [t.name for t in tasks_in("pets, cifar100,kitti")] == [
        "oxford_iiit_pet",
        "cifar",
        "kitti",
    ]


def test_unknown_task_suggests_the_closest_name():
    with pytest.raises(UserError, match="Did you mean 'eurosat'"):
        get_task("eurosta")
    with pytest.raises(UserError, match="unknown task 'imagenet'"):
        get_task("imagenet")


def test_manual_download_tasks_say_what_to_put_where():
    manual = {task.name for task in VTAB_TASKS if task.manual_download}
    assert manual == {"resisc45", "diabetic_retinopathy"}
    for name in manual:
        task = get_task(name)
        assert "<DATA>/downloads/manual" in task.manual_download
        assert task.extra["manual_files"]


def test_dsprites_images_are_scaled_and_others_kept():
    rules = {task.name: task.image_rule for task in VTAB_TASKS}
    assert {n for n, r in rules.items() if r != "as_is"} == {"dsprites_loc", "dsprites_ori"}
    assert all(task.image_key == "image" for task in VTAB_TASKS)  # smallnorb: not image2
