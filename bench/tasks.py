"""The VTAB-1k tasks as data (plus the offline tasks: `digits` and the generated `gen_*`),
following Google's task_adaptation.

Each task names its tfds builder, the split strings of the 1k protocol, its label rule and its
number of classes. Split arithmetic (val200 / test carved out of `train` for some tasks) is here,
as data, so it can be tested without any dataset on disk.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from bench.registry import Registry

SPLITS = ("train800", "val200", "train800val200", "test")
GROUPS = ("natural", "specialized", "structured")


@dataclass(frozen=True)
class TaskSpec:
    name: str  # the vtab-1k folder name
    group: str  # natural | specialized | structured | offline
    num_classes: int
    tfds_name: str | None  # builder[/config][:version] as tfds.data_source takes it
    val200: str | None  # tfds split string of the 200 validation images
    test: str | None  # tfds split string of the test split
    label_rule: str = "label"  # name of a function in bench.data.labels
    image_key: str = "image"
    aliases: tuple[str, ...] = ()
    manual_download: str | None = None  # instructions when tfds cannot download it
    version: str = "1"  # bump when the task's definition changes (cache keys include it)
    notes: str = ""
    extra: dict = field(default_factory=dict)
    image_rule: str = "as_is"  # name of an image rule in bench.data.labels (tfds examples)

    @property
    def train800(self) -> str:
        return "train[:800]"

    def split_string(self, split: str) -> str:
        """The tfds split string for one of SPLITS."""
        if split == "train800":
            return self.train800
        if split == "val200":
            return self.val200
        if split == "train800val200":
            return f"{self.train800}+{self.val200}"
        if split == "test":
            return self.test
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


_RESISC_MANUAL = (
    "resisc45 needs a manual download: get NWPU-RESISC45.rar (from the dataset authors' OneDrive "
    "link on the tfds resisc45 catalogue page) and extract it so that the folder "
    "<DATA>/downloads/manual/NWPU-RESISC45/ holds the 45 class folders"
)
_DR_MANUAL = (
    "diabetic_retinopathy needs a manual download from Kaggle (competition "
    "'diabetic-retinopathy-detection'): unpack train.zip, test.zip and sample.zip into the folders "
    "train/, test/ and sample/ and put trainLabels.csv next to them, all under "
    "<DATA>/downloads/manual/ (tfds also fetches the test labels, and needs opencv-python)"
)

VTAB_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "cifar",
        "natural",
        100,
        "cifar100:3.*.*",
        "train[45000:45200]",
        "test",
        aliases=("cifar100", "cifar-100"),
    ),
    TaskSpec(
        "caltech101",
        "natural",
        102,
        "caltech101:3.*.*",
        "train[2754:2954]",
        "test",
        aliases=("caltech", "caltech_101"),
    ),
    TaskSpec("dtd", "natural", 47, "dtd:3.*.*", "validation[:200]", "test"),
    TaskSpec(
        "oxford_flowers102",
        "natural",
        102,
        "oxford_flowers102:2.*.*",
        "validation[:200]",
        "test",
        aliases=("flowers102", "flowers", "oxford_flowers"),
    ),
    TaskSpec(
        "oxford_iiit_pet",
        "natural",
        37,
        "oxford_iiit_pet:4.*.*",
        "train[2944:3144]",
        "test",
        aliases=("pets", "pet", "oxford_pet", "oxford_pets"),
        notes=(
            "task_adaptation used oxford_iiit_pet:3.*.*; tfds 4.x builds only 4.0.0 (adds head "
            "bounding boxes, fixes corrupt images, new download URL; same 37 classes and splits)"
        ),
    ),
    TaskSpec(
        "svhn",
        "natural",
        10,
        "svhn_cropped:3.*.*",
        "train[65931:66131]",
        "test",
        aliases=("svhn_cropped",),
    ),
    TaskSpec("sun397", "natural", 397, "sun397/tfds:4.*.*", "validation[:200]", "test"),
    TaskSpec(
        "patch_camelyon",
        "specialized",
        2,
        "patch_camelyon:2.*.*",
        "validation[:200]",
        "test",
        aliases=("camelyon", "pcam"),
    ),
    TaskSpec(
        "eurosat", "specialized", 10, "eurosat/rgb:2.*.*", "train[16200:16400]", "train[21600:]"
    ),
    TaskSpec(
        "resisc45",
        "specialized",
        45,
        "resisc45:3.*.*",
        "train[18900:19100]",
        "train[25200:]",
        manual_download=_RESISC_MANUAL,
        extra={"manual_files": ("NWPU-RESISC45",)},
    ),
    TaskSpec(
        "diabetic_retinopathy",
        "specialized",
        5,
        "diabetic_retinopathy_detection/btgraham-300:3.*.*",
        "validation[:200]",
        "test",
        aliases=("retinopathy", "diabetic_retinopathy_detection"),
        manual_download=_DR_MANUAL,
        extra={"manual_files": ("train", "test", "sample", "trainLabels.csv")},
    ),
    TaskSpec(
        "clevr_count",
        "structured",
        8,
        "clevr:3.*.*",
        "train[63000:63200]",
        "validation",
        aliases=("clevr_count_all",),
        label_rule="clevr_count",
        notes="test = validation: tfds test has no labels",
    ),
    TaskSpec(
        "clevr_dist",
        "structured",
        6,
        "clevr:3.*.*",
        "train[63000:63200]",
        "validation",
        aliases=("clevr_distance", "clevr_closest_object_distance"),
        label_rule="clevr_dist",
        notes="test = validation: tfds test has no labels",
    ),
    TaskSpec("dmlab", "structured", 6, "dmlab:2.0.1", "validation[:200]", "test"),
    TaskSpec(
        "kitti",
        "structured",
        4,
        "kitti:3.2.0",
        "validation[:200]",
        "test",
        label_rule="kitti_dist",
        aliases=("kitti_dist",),
        notes="3.1.0 in task_adaptation; same data",
    ),
    TaskSpec(
        "dsprites_loc",
        "structured",
        16,
        "dsprites:2.*.*",
        "train[589824:590024]",
        "train[663552:]",
        aliases=("dsprites_position", "dsprites_location", "dsprites_x_position", "dsprites_xpos"),
        label_rule="dsprites_loc",
        image_rule="binary_to_255",
    ),
    TaskSpec(
        "dsprites_ori",
        "structured",
        16,
        "dsprites:2.*.*",
        "train[589824:590024]",
        "train[663552:]",
        aliases=("dsprites_orientation", "dsprites_orient"),
        label_rule="dsprites_ori",
        image_rule="binary_to_255",
    ),
    TaskSpec(
        "smallnorb_azi",
        "structured",
        18,
        "smallnorb:2.*.*",
        "test[:200]",
        "test[50%:]",
        aliases=("smallnorb_azimuth",),
        label_rule="smallnorb_azi",
    ),
    TaskSpec(
        "smallnorb_ele",
        "structured",
        9,
        "smallnorb:2.*.*",
        "test[:200]",
        "test[50%:]",
        aliases=("smallnorb_elevation",),
        label_rule="smallnorb_ele",
    ),
)

# Offline smoke task: scikit-learn's bundled 8x8 digits arranged like a VTAB-1k task.
DIGITS = TaskSpec(
    "digits",
    "offline",
    10,
    tfds_name=None,
    val200=None,
    test=None,
    notes="scikit-learn digits: a pipeline smoke check, not evidence about the methods",
)


# Offline tasks drawn in numpy (bench.data.generated), shaped like VTAB's structured group: name,
# what the label is, the VTAB task it is in the spirit of, aliases, version. (A table built at
# import, not in a function: mutmut could not switch a mutant of one on; the tests pin each entry.)
_GENERATED = (
    ("gen_shape_loc", "the x position of one shape, 8 bins", "dsprites_loc",
     ("gen_shape_position", "gen_shape_location", "gen_shape_x"), "1"),
    ("gen_shape_ori", "the direction of one arrow, 8 bins of 45 degrees", "dsprites_ori",
     ("gen_shape_orientation",), "1"),
    # 2: shapes anywhere, sizes spread so the ink does not give the count
    ("gen_count", "the number of shapes, 1 to 8 (label = count - 1)", "clevr_count",
     ("gen_shape_count", "gen_counting"), "2"),
)  # fmt: skip
GENERATED_TASKS: tuple[TaskSpec, ...] = tuple(
    TaskSpec(name, "generated", 8, None, None, None, version=version, aliases=aliases,
             notes=f"generated offline in numpy (bench.data.generated): {what}, in the spirit of "
             f"{like}; not that dataset, and its numbers are no evidence about the VTAB tasks")
    for name, what, like, aliases, version in _GENERATED
)  # fmt: skip

# Builders whose tasks differ only in the attribute they predict: a misspelt name is matched on
# its attribute word, so "did you mean" never offers the sibling task of another attribute.
FAMILIES = ("dsprites", "smallnorb", "clevr", "gen_shape")


def _attribute_words(family: str) -> dict[str, str]:
    """Attribute word (from the name and aliases, after `<family>_`) -> task name."""
    words = {}
    for task in (*VTAB_TASKS, *GENERATED_TASKS):
        for key in (task.name, *task.aliases):
            if key.startswith(family + "_"):
                words[key[len(family) + 1 :]] = task.name
    return words


def suggest_task(name: str, known: list[str]) -> str | None:
    """The did-you-mean guess for an unknown task name, or None."""
    query = name.strip().lower().replace("-", "_")
    for family in FAMILIES:
        parts, size = query.split("_"), family.count("_") + 1
        head, attribute = "_".join(parts[:size]), "_".join(parts[size:])
        if difflib.SequenceMatcher(None, head, family).ratio() < 0.75:
            continue
        words = _attribute_words(family)
        close = difflib.get_close_matches(attribute, list(words), n=3, cutoff=0.6)
        if attribute:
            close += [w for w in words if w.startswith(attribute) or attribute.startswith(w)]
        tasks = {words[w] for w in close}
        return tasks.pop() if len(tasks) == 1 else None  # no guess between attributes
    close = difflib.get_close_matches(query, known, n=1, cutoff=0.6)
    return close[0] if close else None


TASKS: Registry[TaskSpec] = Registry("task", suggest=suggest_task)
for _spec in (*VTAB_TASKS, DIGITS, *GENERATED_TASKS):
    TASKS.register(_spec.name, _spec, aliases=_spec.aliases)


def get_task(name: str) -> TaskSpec:
    return TASKS.get(name)


def tasks_in(selection: str) -> list[TaskSpec]:
    """Tasks named by `all`, a group name, or a comma-separated list of task names/aliases."""
    selection = selection.strip().lower()
    if selection == "all":
        return list(VTAB_TASKS)
    if selection in GROUPS:
        return [t for t in VTAB_TASKS if t.group == selection]
    return [get_task(name) for name in selection.split(",") if name.strip()]
