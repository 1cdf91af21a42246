import subprocess
import sys

import pytest

from bench.cli import main
from tests.conftest import TINY_VIT


def _error_of(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--task", "cifar10"], "unknown task 'cifar10'. Did you mean 'cifar100'?"),
        (["--petl", "lorra"], "unknown PETL method 'lorra'. Did you mean 'lora'?"),
        (["--methods", "none,slss"], "unknown method 'slss'. Did you mean 'sls'?"),
        (["--preset", "dem"], "unknown preset 'dem'. Did you mean 'demo'?"),
        (["--checkpoint", "/nonexistent/ViT-B_16.npz"], "does not exist"),
        (["--set", "train.epochz=3"], "unknown setting 'train.epochz'"),
        (["--seeds", "one"], "seeds 'one': expected an integer"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(argv, expected, capsys):
    assert expected in _error_of(["bench", *argv], capsys)


def test_checkpoint_that_does_not_fit_is_reported(tmp_path, capsys):
    import torch

    from bench.models.backbone import create_backbone

    other = create_backbone("vit_tiny_patch16_224", 10, 16, kwargs={**TINY_VIT, "embed_dim": 48})
    torch.save(other.state_dict(), tmp_path / "other.pth")
    assert "does not fit the model" in _error_of(
        ["bench", "--checkpoint", str(tmp_path / "other.pth")], capsys
    )


@pytest.mark.slow
def test_entry_point_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "bench", "--task", "nosuchtask"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown task 'nosuchtask'")
    assert "Traceback" not in result.stderr
