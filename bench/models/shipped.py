"""Backbone weights made by the suite itself and committed with it, selected by name as the
checkpoint (`model.checkpoint = "demo-fractal"`), each checked against the sha256 recorded here.

`demo-fractal`: the demo ViT pretrained on generated fractals (`make pretrain-demo`). Another
file of the same name (a new `make pretrain-demo` run: its bits differ across machines) is
refused unless its hash is passed as `demo-fractal@<sha256>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.errors import UserError
from bench.models.backbone import weights_sha256

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
HASH_SEPARATOR = "@"


@dataclass(frozen=True)
class ShippedWeights:
    file: str
    sha256: str
    remake: str  # the command that makes the file

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


SHIPPED = {
    "demo-fractal": ShippedWeights(
        "demo_vit_fractal.safetensors",
        "d431bc42a990daaccc0e4f7af2b55bc82b35971cf0d4af03bf9694a0c4e7b002",
        "make pretrain-demo",
    ),
}


def is_shipped(checkpoint: str | None) -> bool:
    return bool(checkpoint) and checkpoint.split(HASH_SEPARATOR)[0] in SHIPPED


def resolve_checkpoint(checkpoint: str | None) -> str | None:
    """A checkpoint setting as a file path: a shipped name (optionally `name@<sha256>`) becomes
    its committed file once its hash is checked; a path is returned as it is."""
    if not is_shipped(checkpoint):
        return checkpoint
    name, _, expected = checkpoint.partition(HASH_SEPARATOR)
    weights = SHIPPED[name]
    expected = expected or weights.sha256
    if not weights.path.is_file():
        raise UserError(
            f"weights {name!r}: {weights.path} does not exist; make it with `{weights.remake}` "
            "(or git checkout it)"
        )
    actual = weights_sha256(weights.path)
    if actual != expected:
        raise UserError(
            f"weights {name!r}: {weights.path} has sha256 {actual}, not the expected {expected}. "
            f"Restore the committed file (git checkout {weights.path}) or remake it with "
            f"`{weights.remake}`; to use this file as it is, pass its hash: "
            f"CHECKPOINT={name}{HASH_SEPARATOR}{actual}"
        )
    return str(weights.path)
