"""Wall-clock timing of HF `generate` (greedy, KV cache on): medians of runs after warm-up.

- Time to first token (TTFT): from calling `generate` on the prompt tensors to the first new token
  reaching the host (vision tower, projector, LLM prefill, first sampling step; image preprocessing
  excluded), batch 1.
- Time per output token (TPOT): the time between the first and the last new token of the same run,
  divided by the decode steps between them, batch 1. Both are read off a streamer that `generate`
  hands every new token to (after the device has produced it).
- Throughput: requests (prefill + n new tokens) finished per second at a larger batch.
`min_new_tokens = max_new_tokens`, so every run makes exactly n tokens whatever the model predicts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from tqdm.auto import tqdm
from transformers import GenerationMixin
from transformers.generation.streamers import BaseStreamer

Result = TypeVar("Result")


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock sees it (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def repeated_runs(run: Callable[[], Result], *, runs: int, warmup: int, desc: str) -> list[Result]:
    """Results of `runs` calls of `run`, after `warmup` calls whose results are dropped."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs={runs!r} must be >= 1 and warmup={warmup!r} >= 0")
    results = [run() for _ in tqdm(range(warmup + runs), desc=desc, unit="run", leave=False)]
    return results[warmup:]


def wall_seconds(run: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of `run`, device work included."""
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def median_seconds(
    run: Callable[[], object], *, runs: int, warmup: int, device: torch.device, desc: str = "timing"
) -> float:
    """Median wall time of `run()` over `runs` calls after `warmup` untimed ones."""
    times = repeated_runs(lambda: wall_seconds(run, device), runs=runs, warmup=warmup, desc=desc)
    return statistics.median(times)


class TokenClock(BaseStreamer):
    """Notes the time each `put` arrives; `generate` puts the prompt first, then each new token."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        """Nothing to flush."""


def generate_exactly(
    model: GenerationMixin,
    inputs: Mapping[str, torch.Tensor],
    new_tokens: int,
    streamer: BaseStreamer | None = None,
) -> torch.Tensor:
    """Greedy generation of exactly `new_tokens` tokens per sequence (EOS is held back until then)."""
    return model.generate(
        **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=streamer
    )


@dataclass(frozen=True)
class GenerationTimings:
    ttft_ms: float
    tpot_ms: float
    throughput_samples_per_s: float


def first_and_per_token_seconds(
    model: GenerationMixin, inputs: Mapping[str, torch.Tensor], new_tokens: int
) -> tuple[float, float]:
    """(TTFT, TPOT) in seconds of one generate run."""
    clock = TokenClock()
    start = time.perf_counter()
    generate_exactly(model, inputs, new_tokens, streamer=clock)
    first, last = clock.times[1], clock.times[-1]  # times[0] is the prompt
    return first - start, (last - first) / (new_tokens - 1)


def time_generation(
    model: GenerationMixin,
    single: Mapping[str, torch.Tensor],
    batched: Mapping[str, torch.Tensor],
    *,
    new_tokens: int,
    runs: int,
    warmup: int,
    device: torch.device,
) -> GenerationTimings:
    """Batch-1 TTFT and TPOT from `single`, throughput from `batched` (see the module docstring)."""
    if new_tokens < 2:
        raise ValueError(f"new_tokens={new_tokens!r} must be >= 2: time per output token needs decode steps")
    streamed = repeated_runs(
        lambda: first_and_per_token_seconds(model, single, new_tokens),
        runs=runs,
        warmup=warmup,
        desc="latency",
    )
    batch = batched["input_ids"].shape[0]
    batched_seconds = median_seconds(
        lambda: generate_exactly(model, batched, new_tokens),
        runs=runs,
        warmup=warmup,
        device=device,
        desc=f"throughput at batch {batch}",
    )
    return GenerationTimings(
        ttft_ms=statistics.median(ttft for ttft, _ in streamed) * 1e3,
        tpot_ms=statistics.median(tpot for _, tpot in streamed) * 1e3,
        throughput_samples_per_s=batch / batched_seconds,
    )
