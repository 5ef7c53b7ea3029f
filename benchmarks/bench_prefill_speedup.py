"""Does cutting visual tokens cut prefill time as much as it cuts FLOPs? (issue 6 benchmark)

Times the prefill of a mid-size LLaMA decoder (random weights, CPU, batch 1) at 576, 144, 64 and 36
visual tokens plus the text tokens, all in one run: rounds visit every token count in turn, so a
change in machine load hits all of them alike, and each time is the median over rounds. Prints each
count's speed-up over 576 tokens beside its FLOP ratio (FlopCounterMode, 2 FLOPs per MAC, decoder
without LM head, as in evaluation/efficiency/flops.py). Target: speed-up >= 80% of the FLOP ratio.
Exits 1 when a count misses the target.

  python benchmarks/bench_prefill_speedup.py [--width 1024 --layers 4 --threads 1 --rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import pandas as pd
import torch
from transformers import AutoModel, LlamaConfig

from evaluation.efficiency.flops import DEFAULT_TEXT_TOKENS, FLOPS_CONVENTION, decoder_prefill_flops
from evaluation.efficiency.latency import repeated_runs, wall_seconds

VISUAL_TOKENS = (576, 144, 64, 36)  # MLP baseline, then TokenPacker at scale_factor 2, 3, 4
TARGET = 0.8
HEAD_DIM = 128


def mid_size_llama(width: int, layers: int) -> LlamaConfig:
    """LLaMA shape at another size: 128-wide heads and LLaMA-7B's MLP ratio (11008 / 4096)."""
    if width % HEAD_DIM:
        raise ValueError(f"--width {width} must be a multiple of {HEAD_DIM} (the head size)")
    return LlamaConfig(
        hidden_size=width,
        intermediate_size=width * 11008 // 4096,
        num_hidden_layers=layers,
        num_attention_heads=width // HEAD_DIM,
        num_key_value_heads=width // HEAD_DIM,
        vocab_size=32000,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=1024, help="hidden size (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers (default: %(default)s)")
    parser.add_argument("--text-tokens", type=int, default=DEFAULT_TEXT_TOKENS, help="default: %(default)s")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed rounds, median kept (default: %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    config = mid_size_llama(args.width, args.layers)
    torch.manual_seed(0)
    decoder = AutoModel.from_config(config, attn_implementation="sdpa").eval()
    device = torch.device("cpu")
    lengths = {tokens: tokens + args.text_tokens for tokens in VISUAL_TOKENS}
    inputs = {tokens: torch.randn(1, length, args.width) for tokens, length in lengths.items()}

    def prefill_round() -> dict[int, float]:
        with torch.inference_mode():
            return {
                tokens: wall_seconds(lambda x=x: decoder(inputs_embeds=x), device)
                for tokens, x in inputs.items()
            }

    rounds = repeated_runs(prefill_round, runs=args.rounds, warmup=args.warmup, desc="prefill rounds")
    seconds = {tokens: statistics.median(r[tokens] for r in rounds) for tokens in VISUAL_TOKENS}
    flops = {tokens: decoder_prefill_flops(config, length) for tokens, length in lengths.items()}

    base = VISUAL_TOKENS[0]
    table = pd.DataFrame(
        {
            "visual_tokens": VISUAL_TOKENS,
            "sequence": [lengths[t] for t in VISUAL_TOKENS],
            "gflops": [flops[t] / 1e9 for t in VISUAL_TOKENS],
            "prefill_ms": [seconds[t] * 1e3 for t in VISUAL_TOKENS],
            "flop_ratio": [flops[base] / flops[t] for t in VISUAL_TOKENS],
            "time_ratio": [seconds[base] / seconds[t] for t in VISUAL_TOKENS],
        }
    )
    table["of_flop_ratio"] = table["time_ratio"] / table["flop_ratio"]
    table["reaches_80pct"] = table["of_flop_ratio"] >= TARGET
    print(
        f"prefill on CPU: LLaMA width {args.width}, {args.layers} layers, {config.intermediate_size} MLP, "
        f"fp32, batch 1, {args.threads} thread(s), {args.text_tokens} text tokens, "
        f"median of {args.rounds} interleaved rounds after {args.warmup} warm-up"
    )
    print(f"{FLOPS_CONVENTION}; ratios are against {base} visual tokens")
    print(table.to_string(index=False, float_format=lambda value: f"{value:.2f}"))
    met = bool(table["reaches_80pct"].all())
    print(f"target (speed-up >= {TARGET:.0%} of the FLOP ratio at every count): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
