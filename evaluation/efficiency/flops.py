"""FLOPs counted with torch.utils.flop_counter.FlopCounterMode on weightless `meta` models.

Convention (every table of the suite uses it): FLOPs = 2 x MACs. "Prefill FLOPs" are those of the LLM
decoder layers for one prompt of visual + text tokens, batch 1: the q/k/v/o projections, the attention
scores and weighted sum over the full L x L matrix (FlopCounterMode counts SDPA as two full matmuls,
ignoring the causal mask), and the gated MLP. Not counted: the token embedding lookup and the LM head
(that is, the decoder without the head), norms, rotary embeddings, softmax and other element-wise ops,
the vision tower and the projector (reported on their own). This is the convention that gives the
reference figures of DESIGN.md 5: LLaMA-7B with 64 text tokens counts 8.50 / 2.72 / 1.67 / 1.30 TFLOPs
at 576 / 144 / 64 / 36 visual tokens. Adding the LM head would give 8.67 at 576; FastV's formula counts
MACs with a two-matrix MLP and gives 3.33 / 1.06 / 0.65 / 0.51 T, so always quote the convention.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel, PreTrainedConfig

from evaluation.efficiency.architectures import llava15_config
from evaluation.efficiency.tokens import ImageSize, check_image_size, crops_per_image, visual_tokens
from tokenpacker.modeling import TokenPackerConfig
from tokenpacker.projectors import build_projector

FLOPS_CONVENTION = (
    "FLOPs = 2 x MACs; prefill = LLM decoder layers without LM head, batch 1, visual + text tokens, "
    "full-matrix attention (FlopCounterMode)"
)
DEFAULT_TEXT_TOKENS = 64
PAPER_IMAGE_SIZE = (336, 336)


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs (2 per MAC) FlopCounterMode sees while `run()` executes."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return counter.get_total_flops()


def decoder_prefill_flops(text_config: PreTrainedConfig, sequence_length: int) -> int:
    """Prefill FLOPs of the decoder built from `text_config` for one sequence, counted on `meta`."""
    if sequence_length < 1:
        raise ValueError(f"sequence_length={sequence_length!r} must be a positive number of tokens")
    with torch.device("meta"):
        # from_config writes dtype and attention settings into the config it gets: give it a copy.
        decoder = AutoModel.from_config(copy.deepcopy(text_config), attn_implementation="sdpa")
        embeddings = torch.empty(1, sequence_length, text_config.hidden_size)
    return count_flops(lambda: decoder(inputs_embeds=embeddings))


def _meta_projector(config: TokenPackerConfig) -> torch.nn.Module:
    with torch.device("meta"):
        return build_projector(config.projector_type, config.projector_spec())


def projector_params(config: TokenPackerConfig) -> int:
    """Trainable parameters of the config's projector (built weightless)."""
    return sum(parameter.numel() for parameter in _meta_projector(config).parameters())


def projector_flops(config: TokenPackerConfig, image_size: ImageSize | None = None) -> int:
    """Projector FLOPs for one image: every crop it is cut into (HD) goes through the projector."""
    spec = config.projector_spec()
    crops = crops_per_image(config, image_size)
    projector = _meta_projector(config)
    with torch.device("meta"):
        features = torch.empty(crops, spec.grid**2, spec.vision_width)
        multi_level = torch.empty(crops, spec.grid**2, spec.multi_level_width)
    return count_flops(lambda: projector(features, multi_level))


def paper_scale_prefill_tflops(
    projector_type: str,
    scale_factor: int,
    patch_num: int | None,
    size: str = "7b",
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    image_size: ImageSize = PAPER_IMAGE_SIZE,
) -> float:
    """LLM prefill TFLOPs of LLaVA-1.5 `size` ("7b" | "13b") for one image of `image_size` (height,
    width; 336 px cells) with this projector cell, plus `text_tokens` text tokens (FLOPS_CONVENTION)."""
    if text_tokens < 0:
        raise ValueError(f"text_tokens={text_tokens!r} must be zero or more")
    config = llava15_config(size, projector_type, scale_factor, patch_num)
    tokens = visual_tokens(config, check_image_size(image_size))
    return decoder_prefill_flops(config.text_config, tokens + text_tokens) / 1e12
