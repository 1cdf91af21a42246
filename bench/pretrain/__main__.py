"""python -m bench.pretrain [--out FILE] [--classes N] ...: pretrain the demo ViT on fractals."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from bench.models.shipped import SHIPPED
from bench.pretrain.pretrain import PretrainConfig, pretrain, save

DEFAULT_OUT = SHIPPED["demo-fractal"].path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pretrain", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="the safetensors file (its .json record beside it)")  # fmt: skip
    for field in dataclasses.fields(PretrainConfig):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default),
                            default=field.default)  # fmt: skip
    args = parser.parse_args(argv)
    config = PretrainConfig(**{f.name: getattr(args, f.name)
                               for f in dataclasses.fields(PretrainConfig)})  # fmt: skip
    model, result = pretrain(config)
    command = ["python", "-m", "bench.pretrain", *(sys.argv[1:] if argv is None else argv)]
    record = save(model, result, config, args.out, command)
    print(f"wrote {args.out} (sha256 {record['sha256']})")


if __name__ == "__main__":
    main()
