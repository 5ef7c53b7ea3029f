"""The paper-scale architectures (LLaVA-1.5 7B and 13B), written out so their cost is counted offline.

CLIP ViT-L/14-336 and Vicuna-7B/13B v1.5 as config dicts copied from the released configs: the models
are only ever built on the `meta` device, so no weights are downloaded or allocated.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tokenpacker.modeling import TokenPackerConfig
from tokenpacker.vision import CLIP_VIT_L_14_336 as CLIP_VISION

CLIP_VIT_L_14_336: Mapping[str, object] = MappingProxyType({"model_type": "clip_vision_model", **CLIP_VISION})

_VICUNA_COMMON = {
    "model_type": "llama",
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "tie_word_embeddings": False,
}
VICUNA_V15: Mapping[str, Mapping[str, object]] = MappingProxyType(
    {
        "7b": MappingProxyType(
            {
                **_VICUNA_COMMON,
                "hidden_size": 4096,
                "intermediate_size": 11008,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 32,
            }
        ),
        "13b": MappingProxyType(
            {
                **_VICUNA_COMMON,
                "hidden_size": 5120,
                "intermediate_size": 13824,
                "num_hidden_layers": 40,
                "num_attention_heads": 40,
                "num_key_value_heads": 40,
            }
        ),
    }
)
PAPER_SIZES = tuple(VICUNA_V15)


def llava15_config(
    size: str, projector_type: str, scale_factor: int, patch_num: int | None
) -> TokenPackerConfig:
    """LLaVA-1.5 `size` ("7b" | "13b") with the given projector cell; TokenPacker-HD when patch_num is set.

    Bad projector names, scale factors and patch_num values are rejected by TokenPackerConfig itself.
    """
    if size not in VICUNA_V15:
        raise ValueError(f"size={size!r} is not a paper-scale LLaVA-1.5; allowed: {', '.join(PAPER_SIZES)}")
    return TokenPackerConfig(
        vision_config=dict(CLIP_VIT_L_14_336),
        text_config=dict(VICUNA_V15[size]),
        projector_type=projector_type,
        scale_factor=scale_factor,
        image_aspect_ratio="pad" if patch_num is None else "slice",
        patch_num=patch_num,
    )
