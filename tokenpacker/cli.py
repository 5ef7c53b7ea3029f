"""The `tokenpacker` command: one subcommand per capability, each imported only when chosen.

A subcommand module provides `add_arguments(parser)` and `run(args) -> int`. Modules are
named by string so that `tokenpacker --help` imports no torch-heavy code and this package
never imports the training, evaluation or reports packages at module level.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "sweep": (
        "evaluation.sweep.command",
        "run a sweep of train/evaluate/measure cells (default: the tiny sweep)",
    ),
    "synth": (
        "evaluation.synthetic.command",
        "generate the synthetic world: training data and evaluation sets",
    ),
    "synth-tower": (
        "evaluation.synthetic.tower",
        "pretrain the tiny CLIP tower on synthetic scenes, as the shipped one was",
    ),
    "synth-llm": (
        "evaluation.sweep.language",
        "train the tiny sweep's shared LLM in words (stage 0 and its anneal), as the shipped one was",
    ),
    "train": (
        "training.command",
        "two-stage training (alignment pretraining, instruction tuning) from a recipe",
    ),
    "eval": ("evaluation.command", "evaluate a checkpoint on lmms-eval tasks"),
    "efficiency": ("evaluation.efficiency.command", "visual tokens, FLOPs, latency and memory of a model"),
    "report": ("reports.command", "paper tables and plots from results files"),
    "tiny": ("tokenpacker.tiny", "write a tiny randomly initialised checkpoint (tests, CPU demos)"),
}


def top_level_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenpacker",
        description="TokenPacker suite: train, evaluate and compare visual projectors.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n"
        + "\n".join(f"  {name:<12}{text}" for name, (_, text) in COMMANDS.items())
        + "\n\n'tokenpacker COMMAND --help' shows a command's options.",
    )
    parser.add_argument(
        "command", metavar="COMMAND", choices=list(COMMANDS), help="one of: " + ", ".join(COMMANDS)
    )
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def run_command(name: str, argv: Sequence[str]) -> int:
    """Parse `argv` for subcommand `name` and run it; bad input becomes one line and exit code 2."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"tokenpacker {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(list(argv))
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"tokenpacker {name}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            f"tokenpacker {name}: interrupted; finished work is kept, run the same command to resume",
            file=sys.stderr,
        )
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = top_level_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    return run_command(args.command, args.arguments)


if __name__ == "__main__":
    sys.exit(main())
