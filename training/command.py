"""`tokenpacker train --config RECIPE [--KEY VALUE ...]`: both training stages from a recipe.

Every recipe field is an option: `--scale_factor 3`, `--output_dir runs/s3`,
`--learning_rate 1e-4` (both stages) or `--stage2.learning_rate 1e-4` (one stage).
"""

from __future__ import annotations

import argparse
import types
import typing

from training.recipe import overridable_keys


def type_name(annotation: object) -> str:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    names = [getattr(kind, "__name__", str(kind)) for kind in options if kind is not type(None)]
    return "|".join(names) + ("|null" if type(None) in options else "")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML, e.g. training/recipes/tiny.yaml")
    overrides = parser.add_argument_group(
        "recipe overrides",
        "any recipe field; a bare stage field sets every stage, stage0.KEY / stage0_anneal.KEY / stage1.KEY / stage2.KEY one",
    )
    for key, annotation in overridable_keys().items():
        overrides.add_argument(
            f"--{key}", dest=key, default=argparse.SUPPRESS, metavar=type_name(annotation).upper()
        )


def run(args: argparse.Namespace) -> int:
    from training.api import train_two_stages  # torch, transformers: only once the arguments parsed

    overrides = {key: value for key, value in vars(args).items() if key != "config"}
    final = train_two_stages(args.config, overrides)
    print(f"final checkpoint: {final}")
    return 0
