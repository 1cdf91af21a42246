from bench.config import RunConfig, flatten, load_config


def test_precedence_defaults_then_preset_then_overrides():
    assert RunConfig().train.epochs == 100  # dataclass default: the literature's recipe
    demo = load_config("demo")
    assert demo.train.epochs == 30  # the preset's value
    assert demo.train.lr == 3e-3
    assert demo.train.weight_decay == 1e-4  # not in the preset: the default stays
    assert load_config("demo", {"train.epochs": "5"}).train.epochs == 5  # the command line wins


def test_command_line_strings_are_coerced_to_field_types():
    config = load_config(
        "demo",
        {"seeds": "0,1", "methods": "none,sls", "model.pretrained": "true", "petl.scale": "none",
         "model.kwargs": '{"depth": 6}'},
    )  # fmt: skip
    assert config.seeds == [0, 1]
    assert config.methods == ["none", "sls"]
    assert config.model.pretrained is True
    assert config.petl.scale is None
    assert config.model.kwargs == {"depth": 6}


def test_paper_preset_is_the_literature_recipe():
    paper = load_config("paper")
    assert paper.model.backbone == "vit_base_patch16_224.orig_in21k"
    assert (paper.train.lr, paper.train.weight_decay, paper.train.batch_size) == (1e-3, 1e-4, 64)
    assert (paper.train.epochs, paper.train.warmup_epochs, paper.train.min_lr) == (100, 10, 1e-5)
    assert paper.model.drop_path == 0.1
    assert paper.data.image_size == 224 and paper.data.normalization == "imagenet"


def test_flatten_gives_dotted_params():
    flat = flatten(load_config("demo").to_dict())
    assert flat["train.epochs"] == 30
    assert flat["data.task"] == "digits"
