"""One GPU per local sweep worker: the assignment, the GPU listing, the notes (no GPU needed)."""

import pytest
import torch

from bench import gpus


def test_each_worker_gets_gpu_i_mod_g_and_none_without_gpus():
    assert gpus.worker_devices(2, ["0", "1"]) == ["0", "1"]
    assert gpus.worker_devices(4, ["0", "1"]) == ["0", "1", "0", "1"]
    assert gpus.worker_devices(2, ["2", "3"]) == ["2", "3"]
    assert gpus.worker_devices(1, ["0", "1"]) == ["0"]
    assert gpus.worker_devices(3, []) == [None, None, None]


@pytest.mark.parametrize(
    ("count", "parent", "expected"),
    [(0, None, []), (2, None, ["0", "1"]), (2, "2,3", ["2", "3"]), (1, "3, 1", ["3"]),
     (0, "", [])],
)  # fmt: skip
def test_gpu_ids_respect_the_parents_cuda_visible_devices(monkeypatch, count, parent, expected):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if parent is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", parent)
    assert gpus.gpu_ids() == expected


def test_assign_spreads_auto_and_cuda_only_and_says_how(monkeypatch, capsys):
    monkeypatch.setattr(gpus, "gpu_ids", lambda: ["2", "3"])
    assert gpus.assign("auto", 2) == ["2", "3"]
    assert capsys.readouterr().out == "2 workers, one GPU each (2,3)\n"
    assert gpus.assign("cuda", 4) == ["2", "3", "2", "3"]
    assert "4 workers share 2 GPUs round robin (2,3,2,3)" in capsys.readouterr().out
    assert gpus.assign("auto", 1) == ["2"]
    assert "GPUs 3 stay idle" in capsys.readouterr().out
    assert gpus.assign("cpu", 2) == [None, None]
    assert capsys.readouterr().out == ""
    assert gpus.assign("cuda:1", 2) == [None, None]  # the user's GPU, for every worker
    assert "all 2 workers use that GPU" in capsys.readouterr().out
    monkeypatch.setattr(gpus, "gpu_ids", lambda: [])
    assert gpus.assign("auto", 2) == [None, None]
    assert capsys.readouterr().out == ""
