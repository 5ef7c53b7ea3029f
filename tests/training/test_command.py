"""`tokenpacker train`: every recipe field is an option; a run prints its final checkpoint."""

from __future__ import annotations

import argparse

import pytest
import yaml

from training import command
from training.recipe import RecipeError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenpacker train")
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_only_given_overrides_reach_the_namespace():
    args = parse(
        "--config", "r.yaml", "--scale_factor", "3", "--stage2.learning_rate", "1e-4", "--max_steps", "5"
    )
    assert vars(args) == {
        "config": "r.yaml",
        "scale_factor": "3",
        "stage2.learning_rate": "1e-4",
        "max_steps": "5",
    }


def test_unknown_option_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        parse("--config", "r.yaml", "--scale_factr", "3")
    assert "unrecognized arguments: --scale_factr" in capsys.readouterr().err


def test_run_trains_both_stages(llava, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(llava.recipe(max_steps=1)))
    assert command.run(parse("--config", str(recipe), "--output_dir", str(tmp_path / "run"))) == 0
    final = tmp_path / "run" / "stage2" / "final"
    assert f"final checkpoint: {final}" in capsys.readouterr().out
    assert (final / "model.safetensors").is_file()


def test_bad_value_is_a_value_error_for_the_cli(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  source: tiny\n")
    with pytest.raises(RecipeError, match="model.scale_factor='x' is not an integer"):
        command.run(parse("--config", str(recipe), "--scale_factor", "x"))
    with pytest.raises(RecipeError, match="no output folder"):
        command.run(parse("--config", str(recipe)))
