"""`make config PRESET=paper`: the resolved settings, the authors' choices among them."""

from bench.show_config import config_lines


def _values(preset: str) -> dict[str, str]:
    section, values = "", {}
    for line in config_lines(preset):
        if line.startswith("["):
            section = line.strip("[]") + "."
        elif " = " in line:
            key, value = line.split(" = ", 1)
            values[section + key] = value
    return values


def test_the_paper_preset_shows_the_authors_choices():
    paper = _values("paper")
    assert paper["transfer.checkpoint"] == "'best_of_evals'"
    assert paper["train.lr_step"] == "'after_epoch'"
    assert paper["model.drop_path"] == "0.1"
    assert paper["pruners.block_benefit.gate_lr"] == "'constant'"
    assert paper["pruners.block_benefit.aux_lr"] == "0.0005"
    assert paper["pruners.pear.share"] == "'important'"
    assert paper["pruners.pear.knowledge"] == "'distil'"
    assert paper["pruners.depgraph_sls.keep_scale"] == "True"


def test_a_presets_own_values_show_over_the_defaults():
    demo = _values("demo")
    assert demo["transfer.checkpoint"] == "'last'"
    assert demo["data.image_size"] == "16"
    assert _values("demo-swin")["pruners.sls.full_curve"] == "True"
    assert _values("demo")["pruners.sls.full_curve"] == "False"
