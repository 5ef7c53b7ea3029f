"""`tokenpacker sweep`: arguments, --dry-run, --only, the printed summary, and the --check gate."""

from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from evaluation.records import read_results_table
from evaluation.sweep import command
from evaluation.sweep.check import BaselineEntry, BaselineError, check_results, read_baseline, write_baseline
from evaluation.sweep.spec import SweepSpecError, load_spec

HERE = Path(__file__).resolve().parent
GROUPS = [{"projector": "mlp2x_gelu"}, {"projector": "tokenpacker", "scale_factor": [2, 4]}]


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    return importlib.import_module("sweep_fakes")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenpacker sweep")
    command.add_arguments(parser)
    return parser.parse_args(argv)


def write_spec(folder: Path) -> Path:
    spec = {
        "name": "t",
        "recipe": "tiny",
        "world": {"preset": "smoke"},
        "tasks": ["syn_a", "syn_b"],
        "groups": GROUPS,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def write_baseline_file(folder: Path, value: float, **extra) -> Path:
    entry = {
        "cell": "tokenpacker-s4-seed0",
        "task": "syn_a",
        "metric": "exact_match",
        "value": value,
        **extra,
    }
    path = folder / "baseline.yaml"
    path.write_text(yaml.safe_dump({"tolerance": 0.02, "metrics": [entry]}), encoding="utf-8")
    return path


def test_no_spec_means_the_builtin_tiny_sweep_into_runs_tiny(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = parse("--dry-run")
    assert (args.spec, args.out, args.launcher) == ("tiny", None, "local")
    assert command.run(args) == 0
    printed = capsys.readouterr().out
    assert ["tokenpacker-s4-hd9-seed0-recipe.stage2.max_steps=400", "train+evaluate", "pending", "run"] in [
        line.split() for line in printed.splitlines()
    ]
    assert "0 of 8 cells done; the next run runs 8" in printed
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_dry_run_shows_what_is_done_and_what_only_selects(tmp_path, fakes, capsys):
    out, spec = tmp_path / "out", str(write_spec(tmp_path))
    assert (
        command.run(
            parse(spec, "--out", str(out), "--only", "mlp*"), stages=fakes.make_stages(tmp_path / "log")
        )
        == 0
    )
    capsys.readouterr()
    assert command.run(parse(spec, "--out", str(out), "--dry-run", "--only", "tokenpacker-s2-*")) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["mlp2x_gelu-seed0", "train+evaluate", "done", "skip"]
    assert lines[2].split() == ["tokenpacker-s2-seed0", "train+evaluate", "pending", "run"]
    assert lines[3].split() == ["tokenpacker-s4-seed0", "train+evaluate", "pending", "skip"]
    assert lines[-1] == "1 of 3 cells done; the next run runs 1"


def test_a_dry_run_refuses_a_recipe_that_is_not_yaml_in_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n", encoding="utf-8")
    spec = yaml.safe_load(write_spec(tmp_path).read_text()) | {"recipe": str(tmp_path / "bad.yaml")}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(SweepSpecError, match=r"cell mlp2x_gelu-seed0: recipe .*bad.yaml is not valid YAML"):
        command.run(parse(str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"), "--dry-run"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("tolerance", ["-1", "nan", "inf", "x"])
def test_a_bad_tolerance_is_refused_while_parsing(tolerance, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--write-baseline", "b.yaml", "--tolerance", tolerance)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"tokenpacker sweep: error: argument --tolerance: {tolerance!r} is not a tolerance; "
        "give a number >= 0, e.g. 0.05"
    )


def test_a_dry_run_checks_scale_factor_on_the_tiny_recipes_grid(tmp_path):
    spec = yaml.safe_load(write_spec(tmp_path).read_text()) | {
        "groups": [{"projector": "tokenpacker", "scale_factor": 8}]  # divides 24, not the recipe's 12
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(
        SweepSpecError,
        match=r"cell tokenpacker-s8-seed0: model: scale_factor=8 does not divide the 12x12 patch grid",
    ):
        command.run(parse(str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out"), "--dry-run"))
    assert not (tmp_path / "out").exists()


def test_a_run_prints_the_report_a_short_table_and_the_stage_timings(tmp_path, fakes, capsys):
    out = tmp_path / "out"
    assert (
        command.run(
            parse(str(write_spec(tmp_path)), "--out", str(out)), stages=fakes.make_stages(tmp_path / "log")
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"Report:  {out / 'report' / 'index.html'}" in printed
    assert f"Results: {out / 'results.parquet'}" in printed
    table_rows = [line.split() for line in printed.splitlines() if line.startswith(("mlp2x", "tokenpacker"))]
    assert table_rows[0][:3] == ["mlp2x_gelu-seed0", "ok", "576"] and table_rows[2][:3] == [
        "tokenpacker-s4-seed0",
        "ok",
        "36",
    ]
    assert "scores: syn_a: exact_match, syn_b: exact_match" in printed
    stages = [line.split()[0] for line in printed.split("Seconds per stage:")[1].splitlines()[2:8]]
    assert stages == ["generation", "pretraining", "training", "evaluation", "efficiency", "report"]


def test_a_failed_cell_makes_the_exit_status_non_zero_and_is_named(tmp_path, fakes, capsys):
    args = parse(str(write_spec(tmp_path)), "--out", str(tmp_path / "out"))
    assert command.run(args, stages=fakes.make_stages(tmp_path / "log", fail="mlp*")) == 1
    assert "mlp2x_gelu-seed0: RuntimeError: loss is nan at step 3" in capsys.readouterr().out


def test_the_check_gate_fails_on_a_regression_and_names_the_cell_and_metric(tmp_path, fakes, capsys):
    spec, out, stages = str(write_spec(tmp_path)), str(tmp_path / "out"), fakes.make_stages(tmp_path / "log")
    actual = 0.505  # fake_score of tokenpacker s=4 on syn_a
    assert (
        command.run(
            parse(spec, "--out", out, "--check", str(write_baseline_file(tmp_path, actual + 0.03))),
            stages=stages,
        )
        == 1
    )
    printed = capsys.readouterr().out
    assert (
        "CHECK FAILED cell tokenpacker-s4-seed0: syn_a/exact_match: 0.505 is below baseline 0.535 by more"
        in printed
    )
    assert (
        command.run(
            parse(spec, "--out", out, "--check", str(write_baseline_file(tmp_path, actual + 0.01))),
            stages=stages,
        )
        == 0
    )
    assert "passed (1 metrics)" in capsys.readouterr().out


def test_a_written_baseline_passes_its_own_run(tmp_path, fakes, capsys):
    spec, out, stages = str(write_spec(tmp_path)), str(tmp_path / "out"), fakes.make_stages(tmp_path / "log")
    baseline = tmp_path / "smoke_baseline.yaml"
    assert (
        command.run(
            parse(spec, "--out", out, "--write-baseline", str(baseline), "--tolerance", "0.1"), stages=stages
        )
        == 0
    )
    entries = read_baseline(baseline)
    assert len(entries) == 6 and {e.tolerance for e in entries} == {0.1}  # fake scores are all below 1
    assert command.run(parse(spec, "--out", out, "--check", str(baseline)), stages=stages) == 0


def test_a_bad_baseline_is_refused_before_the_sweep_runs(tmp_path, fakes):
    log = tmp_path / "log"
    bad = tmp_path / "baseline.yaml"
    bad.write_text(yaml.safe_dump({"metrics": [{"cell": "x", "task": "t", "metric": "m", "valu": 1}]}))
    with pytest.raises(
        BaselineError, match=r"metrics\[0\]: unknown keys \['valu'\], missing keys \['value'\]"
    ):
        command.run(
            parse(str(write_spec(tmp_path)), "--out", str(tmp_path / "out"), "--check", str(bad)),
            stages=fakes.make_stages(log),
        )
    with pytest.raises(FileNotFoundError, match="no such baseline file"):
        command.run(parse(str(write_spec(tmp_path)), "--check", str(tmp_path / "missing.yaml")))
    assert not log.exists()


def results(rows: list[tuple[str, str, str, float | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cell_id", "task", "metric", "value", "error"]).assign(
        status=lambda f: ["failed" if isinstance(e, str) else "ok" for e in f["error"]]
    )


def test_check_results_tolerance_direction_and_missing_metrics():
    table = results(
        [
            ("a", "syn_a", "exact_match", 0.80, None),
            ("a", "efficiency", "visual_tokens", 64.0, None),
            ("b", "syn_a", "exact_match", None, "RuntimeError: boom"),
        ]
    )
    baseline = [
        BaselineEntry("a", "syn_a", "exact_match", 0.84, 0.05),  # within tolerance
        BaselineEntry(
            "a", "efficiency", "visual_tokens", 36.0, 0.0, higher_is_better=False
        ),  # grew: regression
        BaselineEntry("b", "syn_a", "exact_match", 0.5, 0.05),  # cell failed
        BaselineEntry("c", "syn_a", "exact_match", 0.5, 0.05),  # never ran
    ]
    found = [r.describe() for r in check_results(table, baseline)]
    assert found == [
        "cell a: efficiency/visual_tokens: 64 is above baseline 36 by more than the tolerance 0",
        "cell b: syn_a/exact_match: missing: cell failed (RuntimeError: boom); baseline 0.5",
        "cell c: syn_a/exact_match: missing: not in the results; baseline 0.5",
    ]


def test_write_baseline_takes_only_successful_scores(tmp_path):
    table = results(
        [
            ("a", "syn_a", "exact_match", 0.8, None),
            ("a", "syn_mme", "mme_perception_score", 250.0, None),
            ("a", "efficiency", "ttft_ms", 3.0, None),
            ("b", "syn_a", "exact_match", None, "x"),
        ]
    )
    assert write_baseline(table, tmp_path / "b.yaml", 0.05) == 2
    assert read_baseline(tmp_path / "b.yaml") == [
        BaselineEntry("a", "syn_a", "exact_match", 0.8, 0.05),
        BaselineEntry("a", "syn_mme", "mme_perception_score", 250.0, 12.5),
    ]
    with pytest.raises(BaselineError, match="no successful scores"):
        write_baseline(table.iloc[2:], tmp_path / "c.yaml", 0.05)


def test_the_committed_smoke_baseline_names_cells_of_the_smoke_spec():
    from evaluation.sweep.spec import load_spec, resolve_spec_path

    cells = {cell.cell_id for cell in load_spec("smoke").cells}
    baseline = read_baseline(resolve_spec_path("smoke").parent / "smoke_baseline.yaml")
    assert baseline and {entry.cell for entry in baseline} <= cells


def test_results_table_on_disk_matches_the_outcome(tmp_path, fakes):
    out = tmp_path / "out"
    command.run(
        parse(str(write_spec(tmp_path)), "--out", str(out)), stages=fakes.make_stages(tmp_path / "log")
    )
    assert read_results_table(out / "results.csv").equals(read_results_table(out / "results.parquet"))


def test_the_slurm_launcher_needs_a_slurm_machine(tmp_path, monkeypatch, fakes):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    args = parse(str(write_spec(tmp_path)), "--out", str(tmp_path / "out"), "--launcher", "slurm")
    with pytest.raises(FileNotFoundError, match="no sbatch on PATH"):
        command.run(args, stages=fakes.make_stages(tmp_path / "log"))
    assert not (tmp_path / "log").exists()


def test_jobs_below_one_are_refused_before_the_sweep_runs(tmp_path, fakes):
    args = parse(str(write_spec(tmp_path)), "--out", str(tmp_path / "out"), "--jobs", "0")
    with pytest.raises(ValueError, match="--jobs must be at least 1, got 0"):
        command.run(args, stages=fakes.make_stages(tmp_path / "log"))
    assert not (tmp_path / "log").exists() and not (tmp_path / "out").exists()


def test_jobs_run_the_cells_in_worker_processes(tmp_path, fakes, capsys):
    log = tmp_path / "log"
    args = parse(str(write_spec(tmp_path)), "--out", str(tmp_path / "out"), "--jobs", "2")
    assert command.run(args, stages=fakes.make_stages(log)) == 0
    assert sorted(c for c in fakes.calls(log) if c.startswith("train")) == sorted(
        f"train {cell.cell_id}" for cell in load_spec(write_spec(tmp_path)).cells
    )
    assert "Report:" in capsys.readouterr().out
