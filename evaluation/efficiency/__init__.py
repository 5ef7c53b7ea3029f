"""Efficiency probes: visual tokens, projector size and FLOPs, LLM prefill FLOPs (the model at hand and
paper-scale LLaVA-1.5 7B/13B on the `meta` device), latency, throughput and memory.

FLOPs everywhere are 2 x MACs; see flops.py for exactly what a prefill count includes.
"""

from evaluation.efficiency.architectures import PAPER_SIZES, llava15_config
from evaluation.efficiency.flops import (
    FLOPS_CONVENTION,
    decoder_prefill_flops,
    paper_scale_prefill_tflops,
    projector_flops,
    projector_params,
)
from evaluation.efficiency.memory import kv_cache_mb_per_1k_tokens
from evaluation.efficiency.probes import check_options, measure
from evaluation.efficiency.tokens import crops_per_image, visual_tokens

__all__ = [
    "FLOPS_CONVENTION",
    "PAPER_SIZES",
    "check_options",
    "crops_per_image",
    "decoder_prefill_flops",
    "kv_cache_mb_per_1k_tokens",
    "llava15_config",
    "measure",
    "paper_scale_prefill_tflops",
    "projector_flops",
    "projector_params",
    "visual_tokens",
]
