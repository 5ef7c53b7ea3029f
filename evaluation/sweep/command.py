"""`tokenpacker sweep [SPEC]`: run a sweep (default: the built-in `tiny` spec into runs/tiny/), resumably."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from evaluation.records import RESULTS_CSV, RESULTS_PARQUET
from evaluation.sweep.check import DEFAULT_TOLERANCE, check_results, read_baseline, write_baseline
from evaluation.sweep.launchers import LAUNCHERS, make_launcher, resolve_jobs
from evaluation.sweep.runner import SweepOutcome, cell_statuses, check_cells, run_sweep
from evaluation.sweep.spec import DEFAULT_SPEC, builtin_spec_names, load_spec, select_cells
from evaluation.sweep.stages import REAL_STAGES, Stages
from evaluation.sweep.summary import dry_run_listing, results_overview, timings_table

RUNS_FOLDER = Path("runs")


def parse_tolerance(text: str) -> float:
    """Read --tolerance while parsing, so a bad value is refused before a sweep of minutes runs."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a tolerance; give a number >= 0, e.g. 0.05")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec",
        nargs="?",
        default=DEFAULT_SPEC,
        metavar="SPEC",
        help=f"sweep spec YAML, or a built-in spec: {', '.join(builtin_spec_names())} (default: %(default)s)",
    )
    parser.add_argument("--out", type=Path, metavar="DIR", help="sweep folder (default: runs/<spec name>)")
    parser.add_argument(
        "--dry-run", action="store_true", help="list the cells and what is already done; run nothing"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="PATTERN",
        help="run only cells whose id matches (shell pattern, e.g. 'tokenpacker-*'; repeat or comma-separate)",
    )
    parser.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="local: cells on this machine (default; see --jobs); slurm: one Slurm job per cell via submitit",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="local launcher: cells at a time, each in its own process with its share of the CPU cores "
        "(default: the spec's `jobs`, 1 unless it says otherwise)",
    )
    parser.add_argument(
        "--check",
        type=Path,
        metavar="BASELINE",
        help="exit non-zero if a metric falls below its baseline by more than its tolerance",
    )
    parser.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="after the run, write its scores as a baseline for --check",
    )
    parser.add_argument(
        "--tolerance",
        type=parse_tolerance,
        default=DEFAULT_TOLERANCE,
        help="tolerance written by --write-baseline: absolute for scores up to 1, relative above (default: %(default)s)",
    )


def run(args: argparse.Namespace, *, stages: Stages = REAL_STAGES) -> int:
    """Run the sweep and print where the results and report are; 1 if a cell failed or the check did."""
    spec = load_spec(args.spec)
    out_dir = args.out or RUNS_FOLDER / spec.name
    baseline = read_baseline(args.check) if args.check is not None else None
    if args.dry_run:
        check_cells(spec, stages)  # a bad cell is refused here as in a real run, not deep in a fingerprint
        print(dry_run_listing(cell_statuses(spec, out_dir), select_cells(spec, args.only)))
        return 0
    jobs = resolve_jobs(args.jobs if args.jobs is not None else spec.jobs)
    launcher = make_launcher(args.launcher, spec.slurm, jobs)
    outcome = run_sweep(spec, out_dir, stages=stages, only=args.only, launcher=launcher)
    print_outcome(outcome)
    status = 1 if outcome.failed or outcome.report_error else 0
    if args.write_baseline is not None:
        count = write_baseline(outcome.results, args.write_baseline, args.tolerance)
        print(f"Baseline: {args.write_baseline} ({count} metrics, tolerance {args.tolerance:g})")
    if baseline is not None:
        regressions = check_results(outcome.results, baseline)
        for regression in regressions:
            print(f"CHECK FAILED {regression.describe()}")
        print(
            f"Check against {args.check}: {'FAILED' if regressions else 'passed'} ({len(baseline)} metrics)"
        )
        status = status or (1 if regressions else 0)
    return status


def print_outcome(outcome: SweepOutcome) -> None:
    print()
    print(results_overview(outcome.results))
    print()
    print("Seconds per stage:")
    print(timings_table(outcome.this_run, outcome.results))
    print()
    if not outcome.results.empty:
        print(f"Results: {outcome.out_dir / RESULTS_PARQUET} and {outcome.out_dir / RESULTS_CSV}")
    if outcome.report_page is not None:
        print(f"Report:  {outcome.report_page}")
    if outcome.report_error is not None:
        print(f"Report failed: {outcome.report_error}")
    if outcome.failed:
        errors = outcome.results.drop_duplicates("cell_id").set_index("cell_id")["error"]
        print(f"{len(outcome.failed)} cell(s) failed; run the same command again to retry them:")
        for cell_id in outcome.failed:
            print(f"  {cell_id}: {errors[cell_id]}")
