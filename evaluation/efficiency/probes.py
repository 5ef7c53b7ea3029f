"""`measure`: every efficiency metric of one suite checkpoint, as the sweep records them per cell.

The probe prompt is one image plus exactly `text_tokens` text tokens (BOS included; the text is a
fixed filler, since only its length matters for cost), so `prefill_tflops_model` of a real LLaVA-1.5-7B
checkpoint equals `prefill_tflops_7b`. Conventions of each metric: flops.py, latency.py, memory.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForCausalLM

from evaluation.efficiency.architectures import PAPER_SIZES
from evaluation.efficiency.flops import (
    DEFAULT_TEXT_TOKENS,
    decoder_prefill_flops,
    paper_scale_prefill_tflops,
    projector_params,
)
from evaluation.efficiency.latency import generate_exactly, time_generation
from evaluation.efficiency.memory import PeakMemoryMeter, kv_cache_mb_per_1k_tokens
from evaluation.efficiency.tokens import (
    ImageSize,
    check_image_size,
    paper_image_size,
    resolve_image_size,
    visual_tokens,
)
from evaluation.records import EFFICIENCY_METRICS
from tokenpacker.checkpoints import check_suite_checkpoint
from tokenpacker.conversation import IMAGE_PLACEHOLDER
from tokenpacker.modeling import TokenPackerConfig, TokenPackerForCausalLM, default_attn_implementation
from tokenpacker.processing import ImageInput, TokenPackerProcessor

PROBE_TEXT = "Describe the image in detail. "
PROBE_FILL = (128, 128, 128)  # pixel values do not change the cost
DEFAULT_NEW_TOKENS = 16


def resolve_device(device: str) -> torch.device:
    """A usable torch device, or a ValueError naming what to pass instead."""
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device={device!r} is not a torch device; use cpu or cuda[:N]") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use cpu or cuda[:N]")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for, but torch sees no CUDA GPU here; use --device cpu")
    return resolved


def load_checkpoint_config(model_path: Path) -> TokenPackerConfig:
    """The config of a folder checked to be a suite (TokenPacker LLaVA) checkpoint."""
    return AutoConfig.from_pretrained(check_suite_checkpoint(model_path))


def probe_input_ids(processor: TokenPackerProcessor, image: ImageInput, text_tokens: int) -> list[int]:
    """The image's ids (after BOS) and filler text: exactly len(image ids) + text_tokens ids (text_tokens >= 1)."""
    ids = processor.tokenize(IMAGE_PLACEHOLDER + PROBE_TEXT * text_tokens, [image])
    return ids[: len(image.token_ids) + text_tokens]


def probe_batch(
    ids: list[int], image: ImageInput, batch: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """`batch` copies of one prompt (no padding needed) with their image crops, on `device`."""
    input_ids = torch.tensor([ids] * batch, device=device)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": image.crops.repeat(batch, 1, 1, 1).to(device),
    }


# the least value of each option, and why when it is not plain
OPTION_MINIMUMS = {
    "runs": (1, ""),
    "warmup": (0, ""),
    "batch": (1, ""),
    "new_tokens": (2, ""),
    "text_tokens": (1, " (the BOS token at least)"),
}


def check_options(options: Mapping[str, Any]) -> None:
    """The values of measure()'s options that are given, checked on their own so a sweep can refuse
    bad ones before it trains."""
    for name, (least, why) in OPTION_MINIMUMS.items():
        if name in options and options[name] < least:
            raise ValueError(f"{name}={options[name]!r} must be >= {least}{why}")
    if options.get("image_size") is not None:
        check_image_size(options["image_size"])


def measure(
    model_path: Path,
    *,
    device: str = "cpu",
    image_size: ImageSize | None = None,
    runs: int = 5,
    warmup: int = 2,
    batch: int = 8,
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    new_tokens: int = DEFAULT_NEW_TOKENS,
) -> dict[str, float]:
    """All `EFFICIENCY_METRICS` of the checkpoint in `model_path`, in that order.

    `image_size` is (height, width) in the model's own pixels (default: one square vision input); the
    7B/13B figures use the same image scaled to 336 px cells. Latency is batch 1 except throughput,
    which runs `batch` copies of the probe; `new_tokens` are generated per request.
    """
    check_options(
        {"image_size": image_size, "runs": runs, "warmup": warmup, "batch": batch}
        | {"text_tokens": text_tokens, "new_tokens": new_tokens}
    )
    target = resolve_device(device)
    config = load_checkpoint_config(model_path)
    height, width = resolve_image_size(config, image_size)

    meter = PeakMemoryMeter.start(target)
    model: TokenPackerForCausalLM = AutoModelForCausalLM.from_pretrained(
        model_path, dtype="auto", attn_implementation=default_attn_implementation(target)
    )
    model.to(target).eval()
    processor = TokenPackerProcessor.from_pretrained(model_path)
    image = processor.preprocess_image(Image.new("RGB", (width, height), PROBE_FILL))
    ids = probe_input_ids(processor, image, text_tokens)
    single = probe_batch(ids, image, 1, target)

    timings = time_generation(
        model,
        single,
        probe_batch(ids, image, batch, target),
        new_tokens=new_tokens,
        runs=runs,
        warmup=warmup,
        device=target,
    )
    peak_memory = meter.measure(lambda: generate_exactly(model, single, new_tokens))
    paper_size = paper_image_size(config, (height, width))
    paper = {
        size: paper_scale_prefill_tflops(
            config.projector_type, config.scale_factor, config.patch_num, size, text_tokens, paper_size
        )
        for size in PAPER_SIZES
    }
    metrics = {
        "visual_tokens": float(visual_tokens(config, (height, width))),
        "projector_params": float(projector_params(config)),
        "prefill_tflops_7b": paper["7b"],
        "prefill_tflops_13b": paper["13b"],
        "prefill_tflops_model": decoder_prefill_flops(config.text_config, len(ids)) / 1e12,
        "ttft_ms": timings.ttft_ms,
        "tpot_ms": timings.tpot_ms,
        "throughput_samples_per_s": timings.throughput_samples_per_s,
        "peak_memory_mb": peak_memory,
        "kv_cache_mb_per_1k_tokens": kv_cache_mb_per_1k_tokens(
            config.text_config, model.language_model.dtype
        ),
    }
    return {name: metrics[name] for name in EFFICIENCY_METRICS}
