"""`tokenpacker efficiency`: efficiency metrics of a checkpoint, or the paper-scale cost of a projector cell.

tokenpacker efficiency --model runs/tp_s2 [--device cuda] [--image-size 672x1008] [--json out.json]
tokenpacker efficiency --projector tokenpacker --scale-factor 2 [--patch-num 9] [--image-size 672x1008]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

from evaluation.efficiency.architectures import PAPER_SIZES, llava15_config
from evaluation.efficiency.flops import (
    DEFAULT_TEXT_TOKENS,
    FLOPS_CONVENTION,
    PAPER_IMAGE_SIZE,
    paper_scale_prefill_tflops,
    projector_flops,
    projector_params,
)
from evaluation.efficiency.probes import DEFAULT_NEW_TOKENS, load_checkpoint_config, measure
from evaluation.efficiency.tokens import ImageSize, check_image_size, visual_tokens

DEFAULT_SCALE_FACTOR = 2


def parse_image_size(text: str) -> ImageSize:
    """Read an image size written HEIGHTxWIDTH in pixels, e.g. 672x1008."""
    try:
        height, width = (int(side) for side in text.lower().split("x"))
        return check_image_size((height, width))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an image size; write HEIGHTxWIDTH in pixels, e.g. 672x1008"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        f"Visual tokens, projector size and FLOPs, prefill FLOPs, latency and memory. {FLOPS_CONVENTION}."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="suite checkpoint folder: measure everything on it")
    source.add_argument(
        "--projector", help="projector type: report the paper-scale (LLaVA-1.5 7B/13B) cost only"
    )
    parser.add_argument(
        "--scale-factor", type=int, default=None, help=f"with --projector (default: {DEFAULT_SCALE_FACTOR})"
    )
    parser.add_argument(
        "--patch-num", type=int, default=None, help="with --projector: TokenPacker-HD crops (9, 16, 25)"
    )
    parser.add_argument(
        "--image-size",
        type=parse_image_size,
        default=None,
        help="HEIGHTxWIDTH of the probe image (model pixels with --model, 336 px cells with --projector); "
        "default: one square cell",
    )
    parser.add_argument("--text-tokens", type=int, default=DEFAULT_TEXT_TOKENS, help="default: %(default)s")
    parser.add_argument(
        "--device", default="cpu", help="with --model: cpu or cuda[:N] (default: %(default)s)"
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="timed runs, median reported (default: %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=8, help="batch for throughput (default: %(default)s)")
    parser.add_argument("--new-tokens", type=int, default=DEFAULT_NEW_TOKENS, help="default: %(default)s")
    parser.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")


def model_metrics(args: argparse.Namespace) -> dict[str, float]:
    """measure() plus the projector FLOPs of the checkpoint's own architecture."""
    metrics = measure(
        args.model,
        device=args.device,
        image_size=args.image_size,
        runs=args.runs,
        warmup=args.warmup,
        batch=args.batch,
        text_tokens=args.text_tokens,
        new_tokens=args.new_tokens,
    )
    config = load_checkpoint_config(args.model)
    return {**metrics, "projector_gflops": projector_flops(config, args.image_size) / 1e9}


def paper_scale_metrics(args: argparse.Namespace) -> dict[str, float]:
    """Tokens, projector size and FLOPs, and prefill FLOPs of the cell at LLaVA-1.5 7B and 13B."""
    image_size = args.image_size or PAPER_IMAGE_SIZE
    scale_factor = args.scale_factor or DEFAULT_SCALE_FACTOR
    metrics: dict[str, float] = {}
    for size in PAPER_SIZES:
        config = llava15_config(size, args.projector, scale_factor, args.patch_num)
        metrics["visual_tokens"] = float(visual_tokens(config, image_size))
        metrics[f"projector_params_{size}"] = float(projector_params(config))
        metrics[f"projector_gflops_{size}"] = projector_flops(config, image_size) / 1e9
        metrics[f"prefill_tflops_{size}"] = paper_scale_prefill_tflops(
            args.projector, scale_factor, args.patch_num, size, args.text_tokens, image_size
        )
    return metrics


def format_value(value: float) -> str:
    """Counts in full with thousands separators, measurements to four significant digits."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.4g}"


def format_table(metrics: Mapping[str, float]) -> str:
    width = max(len(name) for name in metrics)
    return "\n".join(f"{name:<{width}}  {format_value(value):>14}" for name, value in metrics.items())


def run(args: argparse.Namespace) -> int:
    if args.model is not None and (args.scale_factor is not None or args.patch_num is not None):
        raise ValueError(
            "--scale-factor and --patch-num go with --projector; a --model checkpoint brings its own, drop them"
        )
    if args.model is not None:
        metrics = model_metrics(args)
        source = {"model": str(args.model), "device": args.device}
        title = (
            f"efficiency of {args.model} on {args.device} (batch-1 latency; throughput at batch {args.batch})"
        )
    else:
        metrics = paper_scale_metrics(args)
        scale_factor = args.scale_factor or DEFAULT_SCALE_FACTOR
        source = {"projector": args.projector, "scale_factor": scale_factor, "patch_num": args.patch_num}
        hd = f"TokenPacker-HD patch_num {args.patch_num}" if args.patch_num else "no HD"
        title = f"paper-scale (LLaVA-1.5) cost of {args.projector}, scale_factor {scale_factor}, {hd}"
    print(title)
    print(f"{FLOPS_CONVENTION}; {args.text_tokens} text tokens")
    print(format_table(metrics))
    if args.json is not None:
        report = {
            **source,
            "text_tokens": args.text_tokens,
            "flops_convention": FLOPS_CONVENTION,
            "metrics": metrics,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
