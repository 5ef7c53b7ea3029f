"""The `tokenpacker` command: lazy subcommands and one-line errors."""

from __future__ import annotations

import subprocess
import sys

from tokenpacker.cli import COMMANDS


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tokenpacker.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_every_command_without_importing_torch():
    code = (
        "import sys; from tokenpacker.cli import top_level_parser; top_level_parser().format_help(); "
        "heavy = [m for m in ('torch', 'transformers', 'lmms_eval', 'deepspeed') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    help_text = run_cli("--help").stdout
    assert all(name in help_text for name in COMMANDS)


def test_unknown_command_is_rejected():
    result = run_cli("compress")
    assert result.returncode == 2 and "invalid choice: 'compress'" in result.stderr


def test_bad_value_is_one_line_and_exit_2(tmp_path):
    result = run_cli("tiny", "--out", str(tmp_path / "x"), "--scale-factor", "5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "tokenpacker tiny: error: scale_factor=5 does not divide the 24x24 patch grid; "
        "allowed: [1, 2, 3, 4, 6, 8, 12, 24]"
    )
    assert not (tmp_path / "x").exists()
    result = run_cli("tiny", "--out", str(tmp_path / "x"), "--patch-size", "5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "tokenpacker tiny: error: tiny patch_size 5 does not divide the 48 px image; use 2, 3, 4, 6 or 8"
    )
    assert not (tmp_path / "x").exists()


def test_tiny_writes_a_loadable_checkpoint(tmp_path):
    result = run_cli("tiny", "--out", str(tmp_path / "ckpt"), "--projector", "avgpool", "--scale-factor", "3")
    assert result.returncode == 0, result.stderr
    assert "64 visual tokens" in result.stdout
    result = run_cli("tiny", "--out", str(tmp_path / "ckpt4"), "--projector", "avgpool", "--patch-size", "4")
    assert result.returncode == 0, result.stderr
    assert "36 visual tokens" in result.stdout
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in (tmp_path / "ckpt").iterdir()
    }
