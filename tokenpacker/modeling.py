"""The LLaVA-style model: frozen CLIP tower + projector + any causal LM, as an HF PreTrainedModel."""

from __future__ import annotations

import importlib.util

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import CausalLMOutputWithPast

from tokenpacker.conversation import get_template
from tokenpacker.hd import check_patch_num
from tokenpacker.projectors import (
    Projector,
    ProjectorSpec,
    build_projector,
    check_projector_name,
    check_scale_factor,
    effective_scale_factor,
    projector_tokens,
)
from tokenpacker.vision import CLIP_VIT_L_14_336, VisionTower, check_layer_indices, patch_grid

IMAGE_TOKEN_ID = -200  # LLaVA's IMAGE_TOKEN_INDEX: never a vocabulary id, so no embedding is resized.
IGNORE_INDEX = -100
IMAGE_ASPECT_RATIOS = ("pad", "slice")


@strict
class TokenPackerConfig(PreTrainedConfig):
    """LLaVA-1.5 layout with a pluggable projector; defaults are the paper's 7B setting (CLIP-L/336)."""

    model_type = "tokenpacker_llava"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="clip_vision_model",
            init_kwargs=dict(CLIP_VIT_L_14_336),
        ),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    projector_type: str = "tokenpacker"
    scale_factor: int = 2
    image_aspect_ratio: str = "pad"
    patch_num: int | None = None
    vision_select_layer: int = -2
    multi_level_layers: list[int] | None = None
    image_token_id: int = IMAGE_TOKEN_ID
    conversation_template: str = "vicuna_v1"  # the template prompts are written in at inference
    # DESIGN 1.2.5's 0.02 suits the released widths (C = 1024); None scales each layer's std by its
    # fan-in instead, for the narrow tiny projectors (tokenpacker/tiny.py)
    projector_init_std: float | None = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        if self.multi_level_layers is None:
            self.multi_level_layers = [12, 16, 22, 23]
        super().__post_init__(**kwargs)
        self.validate_multimodal()

    def validate_multimodal(self) -> None:
        """Reject a bad setting when the config is made, long before a forward pass."""
        check_projector_name(self.projector_type)
        check_scale_factor(self.projector_scale_factor, self.grid)
        check_layer_indices(
            self.vision_select_layer, self.multi_level_layers, self.vision_config.num_hidden_layers
        )
        get_template(self.conversation_template)
        if self.image_aspect_ratio not in IMAGE_ASPECT_RATIOS:
            raise ValueError(
                f"image_aspect_ratio={self.image_aspect_ratio!r} is not supported; allowed: {', '.join(IMAGE_ASPECT_RATIOS)}"
            )
        if self.image_aspect_ratio == "slice":
            if self.patch_num is None:
                raise ValueError(
                    "image_aspect_ratio='slice' (TokenPacker-HD) needs patch_num; allowed: 9, 16, 25"
                )
            check_patch_num(self.patch_num)

    @property
    def grid(self) -> int:
        return patch_grid(self.vision_config)

    @property
    def projector_scale_factor(self) -> int:
        return effective_scale_factor(self.projector_type, self.scale_factor)

    @property
    def is_hd(self) -> bool:
        return self.image_aspect_ratio == "slice"

    def tokens_per_crop(self) -> int:
        """Tokens one image (or one HD crop) becomes, asked of the projector's class."""
        return projector_tokens(self.projector_type, self.projector_spec(), self.grid)

    def projector_spec(self) -> ProjectorSpec:
        vision_width = self.vision_config.hidden_size
        return ProjectorSpec(
            vision_width=vision_width,
            multi_level_width=vision_width * len(self.multi_level_layers),
            llm_width=self.text_config.hidden_size,
            grid=self.grid,
            scale_factor=self.projector_scale_factor,
            init_std=self.projector_init_std,
        )


def default_attn_implementation(device: torch.device | str) -> str:
    """flash_attention_2 where it can run (flash-attn installed, CUDA device), else PyTorch SDPA."""
    on_cuda = torch.device(device).type == "cuda"
    return "flash_attention_2" if on_cuda and importlib.util.find_spec("flash_attn") else "sdpa"


class TokenPackerPreTrainedModel(PreTrainedModel):
    config_class = TokenPackerConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, Projector):
            module.reset_parameters()


class TokenPackerForCausalLM(TokenPackerPreTrainedModel, GenerationMixin):
    """Image features replace the `image_token_id` placeholders of input_ids, in order.

    The processor expands each `<image>` into exactly as many placeholders as the image
    becomes tokens (HD separators are ordinary "," and "\\n" token ids between them), so
    batching, padding, masks and labels are plain text bookkeeping here.
    """

    def __init__(self, config: TokenPackerConfig) -> None:
        super().__init__(config)
        self.vision_tower = VisionTower(
            config.vision_config, config.vision_select_layer, config.multi_level_layers
        )
        self.projector = build_projector(config.projector_type, config.projector_spec())
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N crops, 3, S, S) -> (N, T, H) LLM-width visual tokens."""
        features, multi_level = self.vision_tower(pixel_values)
        dtype = next(self.projector.parameters()).dtype
        return self.projector(features.to(dtype), multi_level.to(dtype))

    def embed_multimodal(
        self, input_ids: torch.LongTensor, pixel_values: torch.Tensor | None
    ) -> torch.Tensor:
        """Text embeddings with each image placeholder replaced by the next visual token."""
        image_mask = input_ids == self.config.image_token_id
        embeddings = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        placeholders = int(image_mask.sum())
        if pixel_values is None:
            if placeholders:
                raise ValueError(
                    f"input_ids hold {placeholders} image placeholders but no pixel_values were given"
                )
            return embeddings
        image_tokens = self.get_image_features(pixel_values)
        if image_tokens.shape[0] * image_tokens.shape[1] != placeholders:
            raise ValueError(
                f"{pixel_values.shape[0]} image crops give {image_tokens.shape[0] * image_tokens.shape[1]} visual "
                f"tokens but input_ids hold {placeholders} placeholders; build inputs with TokenPackerProcessor"
            )
        return embeddings.masked_scatter(image_mask.unsqueeze(-1), image_tokens.to(embeddings.dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        use_cache: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """`use_cache` left out follows this config's, where HF Trainer writes TrainingArguments.use_cache
        (off: training reads no KV cache, and with one transformers would not mask packed rows); the LLM
        alone would read only its own config, which asks for a cache."""
        if use_cache is None:
            use_cache = getattr(self.config, "use_cache", None)  # None: the LLM's own default
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_multimodal(input_ids, pixel_values)
            if labels is not None:  # visual tokens are inputs, never targets
                labels = labels.masked_fill(input_ids == self.config.image_token_id, IGNORE_INDEX)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            labels=labels,
            logits_to_keep=logits_to_keep,
            use_cache=use_cache,
            **kwargs,
        )


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModelForCausalLM resolve `tokenpacker_llava` checkpoints."""
    AutoConfig.register(TokenPackerConfig.model_type, TokenPackerConfig, exist_ok=True)
    AutoModelForCausalLM.register(TokenPackerConfig, TokenPackerForCausalLM, exist_ok=True)


register_auto_classes()
