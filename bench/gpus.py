"""The run's device, and one GPU per local sweep worker.

With device `auto` or `cuda` and G visible GPUs, worker i of a local sweep sees only GPU i % G:
its CUDA_VISIBLE_DEVICES is set in the pool initializer, before torch is imported in that
process (this module imports torch only inside functions), so its `cuda` is that one GPU. IDs
are taken from the parent's own CUDA_VISIBLE_DEVICES where it is set ("2,3" → "2" and "3").
`cpu` and an explicit `cuda:N` are left as the user said: no worker's CUDA_VISIBLE_DEVICES is
changed, so every worker of `cuda:N` uses that one GPU. Runs log the variable as the tag
`worker.cuda_visible_devices` (`bench.measure.compute_tags`).
"""

from __future__ import annotations

import os

SPREAD_DEVICES = ("auto", "cuda")


def gpu_ids() -> list[str]:
    """The GPUs this process can use, as CUDA_VISIBLE_DEVICES would name them; [] without any."""
    import torch

    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count)]
    return [name.strip() for name in visible.split(",")][:count]


def worker_devices(workers: int, visible: list[str]) -> list[str | None]:
    """Each worker's CUDA_VISIBLE_DEVICES: GPU i % G, round robin; None (leave it) without GPUs."""
    if not visible:
        return [None] * workers
    return [visible[i % len(visible)] for i in range(workers)]


def gpu_note(workers: int, visible: list[str]) -> str:
    """One line on how `workers` workers sit on the GPUs `visible` ("" without GPUs)."""
    if not visible:
        return ""
    each = ",".join(str(d) for d in worker_devices(workers, visible))
    if workers > len(visible):
        return f"note: {workers} workers share {len(visible)} GPUs round robin ({each})"
    if workers < len(visible):
        idle = ",".join(visible[workers:])
        return (f"note: {workers} workers on {workers} of {len(visible)} GPUs ({each}); GPUs "
                f"{idle} stay idle (WORKERS={len(visible)} uses them all)")  # fmt: skip
    return f"{workers} workers, one GPU each ({each})"


def assign(device: str, workers: int) -> list[str | None]:
    """What each local worker's CUDA_VISIBLE_DEVICES is set to for the run device `device`."""
    if device.startswith("cuda:"):
        print(f"note: device {device}: all {workers} workers use that GPU; --device cuda gives "
              "each its own", flush=True)  # fmt: skip
    if device not in SPREAD_DEVICES:
        return [None] * workers
    visible = gpu_ids()
    note = gpu_note(workers, visible)
    if note:
        print(note, flush=True)
    return worker_devices(workers, visible)


def worker_init(threads: int, devices: list[str | None], started) -> None:
    """Pool initializer: take the next worker index from the shared counter `started`, set that
    worker's GPU before CUDA starts (it reads CUDA_VISIBLE_DEVICES once), then split threads."""
    with started.get_lock():
        index = started.value
        started.value = index + 1
    device = devices[index % len(devices)]
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    import torch

    torch.set_num_threads(threads)


def resolve_device(name: str) -> torch.device:  # noqa: F821  (torch is imported inside)
    """The run's device: `auto` is CUDA where there is one; a clear error for an absent GPU."""
    import torch

    from bench.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {name!r} asked for, but CUDA is not available here; use --device cpu"
        )
    return device
