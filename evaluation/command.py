"""`tokenpacker eval`: evaluate a checkpoint on lmms-eval tasks and write lmms-eval's results files."""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.evaluate import evaluate
from evaluation.model import DTYPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a suite checkpoint folder")
    parser.add_argument(
        "--tasks",
        required=True,
        help="comma-separated lmms-eval task or group names, e.g. syn_count,mme,pope",
    )
    parser.add_argument("--output", type=Path, required=True, help="folder for the results files")
    parser.add_argument(
        "--limit", type=int, help="documents per task (smoke tests only; scores are not comparable)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="requests per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument(
        "--dtype", choices=list(DTYPES), default="float32", help="model weights dtype (default float32)"
    )
    parser.add_argument("--data-root", type=Path, help="where the suite's tasks find their data sets")
    parser.add_argument(
        "--include-path",
        type=Path,
        help="folder of extra lmms-eval task definitions (default: the suite's tasks)",
    )


def run(args: argparse.Namespace) -> int:
    tasks = [name.strip() for name in args.tasks.split(",") if name.strip()]
    folder = evaluate(
        args.model,
        tasks,
        args.output,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        include_path=args.include_path,
        data_root=args.data_root,
    )
    print(f"results written to {folder}")
    return 0
