"""`tokenpacker report`: the CLI contract, one-line errors, and no torch import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tokenpacker.cli import run_command


def test_report_command_end_to_end_without_torch(fixtures: Path, tmp_path: Path) -> None:
    """In a fresh interpreter: import every reports module, run `tokenpacker report`, and prove that
    nothing imported along the way pulled in torch."""
    out = tmp_path / "out"
    argv = [
        "report",
        str(fixtures / "lmms_eval"),
        "--out",
        str(out),
        "--no-reference",
        "--bootstrap-resamples",
        "200",
    ]
    code = (
        "import sys\n"
        "import reports.build, reports.command, reports.load, reports.page, reports.plots\n"
        "import reports.reference, reports.render, reports.scores, reports.tables, reports.uncertainty\n"
        "from tokenpacker.cli import main\n"
        f"rc = main({argv!r})\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "index.html")
    assert (out / "tables" / "main_table.tex").is_file() and (out / "plots" / "benchmarks.pdf").is_file()


def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, capsys) -> None:
    rc = run_command("report", [str(tmp_path / "missing"), "--out", str(tmp_path / "out"), "--no-reference"])
    err = capsys.readouterr().err
    assert rc == 2
    assert (
        err.count("\n") == 1
        and err.startswith("tokenpacker report: error: ")
        and "no such file or folder" in err
    )
    assert not (tmp_path / "out").exists()


def test_missing_reference_file(fixtures: Path, tmp_path: Path, capsys) -> None:
    rc = run_command(
        "report",
        [str(fixtures / "suite"), "--out", str(tmp_path / "out"), "--reference", str(tmp_path / "x.csv")],
    )
    assert rc == 2 and "no such reference CSV" in capsys.readouterr().err


def test_too_few_resamples(fixtures: Path, tmp_path: Path, capsys) -> None:
    rc = run_command(
        "report", [str(fixtures / "suite"), "--out", str(tmp_path / "out"), "--bootstrap-resamples", "5"]
    )
    assert rc == 2 and "--bootstrap-resamples 5" in capsys.readouterr().err
