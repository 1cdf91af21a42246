"""What every PETL method builds on: the `PetlModule` base class and the settings record.

Its own module so that a method kept in its own file (bench/models/splora.py) and the registry of
methods (bench/models/petl.py) both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn


class PetlModule(nn.Module):
    """Base class: parameters inside PetlModules train and are stored per task, except those of
    the frozen backbone layers (or its own frozen backbone parameters) it names in
    `frozen_children`."""

    frozen_children: tuple[str, ...] = ()


@dataclass(frozen=True)
class PetlSettings:
    """A PETL method's settings after per-task defaults are filled in (logged with every run)."""

    method: str
    dim: int = 8  # bottleneck width / LoRA rank
    scale: float = 1.0
    xavier_init: bool = False
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)
