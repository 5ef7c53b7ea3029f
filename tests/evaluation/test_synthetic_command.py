"""`tokenpacker synth`: the command module's add_arguments/run contract."""

from __future__ import annotations

import argparse

import pytest

from evaluation.synthetic import command
from evaluation.synthetic.world import SHIPPED_TOWER


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenpacker synth")
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_generates_then_reuses_a_world(tmp_path, capsys):
    args = _parse("--out", str(tmp_path), "--preset", "smoke", "--seed", "2")
    assert command.run(args) == 0
    first = capsys.readouterr().out
    (folder,) = tmp_path.iterdir()
    assert f"world        {folder} (generated in" in first
    assert f"TOKENPACKER_DATA_ROOT={folder / 'eval'}" in first
    assert f"tower        {SHIPPED_TOWER} " in first
    assert command.run(args) == 0
    assert f"{folder} (reused)" in capsys.readouterr().out


def test_defaults():
    args = _parse("--out", "worlds")
    assert (args.preset, args.seed) == ("default", 0)


def test_unknown_preset_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse("--out", "worlds", "--preset", "huge")
    assert exit_info.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_negative_seed_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="seed=-1"):
        command.run(_parse("--out", str(tmp_path), "--preset", "smoke", "--seed", "-1"))
