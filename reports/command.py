"""`tokenpacker report RESULTS... --out DIR`: `add_arguments` and `run`, as `tokenpacker.cli` expects.

The CLI owns the parser and prints a ReportInputError (a ValueError) as one line with exit code 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reports.build import build_report
from reports.errors import ReportInputError
from reports.reference import default_reference_csv
from reports.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the report's arguments to a (sub)parser."""
    parser.add_argument(
        "results",
        nargs="+",
        type=Path,
        metavar="RESULTS",
        help="results folder or results.parquet/.csv of the suite, or an lmms-eval output folder / *_results.json",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for tables/, plots/, report.md and index.html (new, empty, or an earlier report, which is replaced)",
    )
    reference = parser.add_mutually_exclusive_group()
    reference.add_argument(
        "--reference",
        type=Path,
        metavar="CSV",
        help="quoted paper results to print beside the measured rows (default: ../shared/reference/paper_results.csv "
        "beside the repository, when present)",
    )
    reference.add_argument("--no-reference", action="store_true", help="print no quoted reference rows")
    parser.add_argument(
        "--baseline",
        default="mlp2x_gelu",
        help="projector (with one config) or row label that 'Rel.' and the paired tests compare against (default: %(default)s)",
    )
    parser.add_argument(
        "--bootstrap-resamples", type=int, default=DEFAULT_RESAMPLES, help="default: %(default)s"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="bootstrap/permutation seed (default: %(default)s)"
    )


def run(args: argparse.Namespace) -> int:
    """Build the report from parsed arguments; prints the page path and returns 0.

    Raises ReportInputError (one-line message) for bad input; the CLI prints it and exits non-zero.
    """
    if args.no_reference:
        reference = None
    elif args.reference is not None:
        if not args.reference.is_file():
            raise ReportInputError(f"{args.reference}: no such reference CSV (or pass --no-reference)")
        reference = args.reference
    else:
        reference = default_reference_csv()
    if args.bootstrap_resamples < 100:
        raise ReportInputError(
            f"--bootstrap-resamples {args.bootstrap_resamples}: too few for a 95% interval; pass 100 or more (default 2000)"
        )
    page = build_report(
        args.results,
        args.out,
        reference_csv=reference,
        baseline=args.baseline,
        resamples=args.bootstrap_resamples,
        seed=args.seed,
    )
    print(page)
    return 0
