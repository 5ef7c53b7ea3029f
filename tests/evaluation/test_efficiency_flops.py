"""Prefill and projector FLOPs (evaluation/efficiency/flops.py) against DESIGN.md 5 and hand formulas."""

import pytest
from transformers import LlamaConfig

from evaluation.efficiency import (
    decoder_prefill_flops,
    llava15_config,
    paper_scale_prefill_tflops,
    projector_flops,
    projector_params,
)
from tokenpacker.tiny import build_tiny_model, tiny_config


@pytest.mark.parametrize(
    ("projector", "scale_factor", "reference_tflops"),
    [("mlp2x_gelu", 1, 8.50), ("tokenpacker", 2, 2.72), ("tokenpacker", 3, 1.67), ("tokenpacker", 4, 1.30)],
)
def test_llama_7b_prefill_matches_design_reference(projector, scale_factor, reference_tflops):
    """DESIGN.md 5: LLaMA-7B decoder, 64 text tokens + 576 / 144 / 64 / 36 visual tokens."""
    tflops = paper_scale_prefill_tflops(projector, scale_factor, None, "7b", text_tokens=64)
    assert tflops == pytest.approx(reference_tflops, rel=0.01)


def hand_prefill_flops(width: int, mlp: int, layers: int, length: int) -> int:
    """2 FLOPs per MAC: q/k/v/o and gated-MLP matmuls per token, plus full L x L scores and mix."""
    linear = length * (4 * width * width + 3 * width * mlp)
    attention = 2 * length * length * width
    return 2 * layers * (linear + attention)


@pytest.mark.parametrize("length", [1, 37, 100, 640])
def test_decoder_flops_follow_linear_plus_quadratic_attention_terms(length):
    config = LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=3, num_attention_heads=2)
    assert decoder_prefill_flops(config, length) == hand_prefill_flops(256, 688, 3, length)


def test_13b_counts_its_own_shape():
    tflops = paper_scale_prefill_tflops("tokenpacker", 2, None, "13b")
    assert tflops * 1e12 == hand_prefill_flops(5120, 13824, 40, 144 + 64)


def test_fewer_visual_tokens_cost_less_and_hd_costs_more():
    by_scale = [paper_scale_prefill_tflops("tokenpacker", s, None) for s in (2, 3, 4)]
    assert by_scale == sorted(by_scale, reverse=True)
    hd = paper_scale_prefill_tflops("tokenpacker", 2, 9, image_size=(672, 1008))  # 2 x 3 crops: 1015 tokens
    assert hd * 1e12 == hand_prefill_flops(4096, 11008, 32, 1015 + 64)


def test_decoder_flops_leave_the_callers_config_untouched():
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=1)
    before = config.to_dict()
    decoder_prefill_flops(config, 8)
    assert config.to_dict() == before


@pytest.mark.parametrize("projector", ["tokenpacker", "mlp2x_gelu", "c_abstractor"])
def test_projector_params_match_the_built_model(projector):
    config = tiny_config(projector)
    model = build_tiny_model(config)
    assert projector_params(config) == sum(p.numel() for p in model.projector.parameters())


def test_projector_flops_count_every_hd_crop():
    plain = projector_flops(llava15_config("7b", "tokenpacker", 2, None))
    hd = projector_flops(llava15_config("7b", "tokenpacker", 2, 9), (672, 1008))  # 6 cells + global view
    assert hd == 7 * plain


def test_mlp_projector_flops_are_its_two_matmuls():
    config = llava15_config("7b", "mlp2x_gelu", 1, None)
    assert projector_flops(config) == 2 * 576 * (1024 * 4096 + 4096 * 4096)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"projector_type": "qformer"}, r"unknown projector 'qformer'; available: .*tokenpacker"),
        ({"scale_factor": 5}, r"scale_factor=5 does not divide the 24x24 patch grid; allowed: \[1, 2, 3, 4"),
        ({"patch_num": 7}, r"patch_num=7 is not supported; allowed values: 9, 16, 25"),
        ({"size": "70b"}, r"size='70b' is not a paper-scale LLaVA-1.5; allowed: 7b, 13b"),
        ({"image_size": (0, 336)}, r"image_size=\(0, 336\) must be \(height, width\)"),
    ],
)
def test_bad_cells_are_rejected_with_the_allowed_values(kwargs, message):
    cell = {"projector_type": "tokenpacker", "scale_factor": 2, "patch_num": None, **kwargs}
    with pytest.raises(ValueError, match=message):
        paper_scale_prefill_tflops(**cell)


def test_decoder_flops_need_a_positive_length():
    config = LlamaConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=1, num_attention_heads=1)
    with pytest.raises(ValueError, match="sequence_length=0"):
        decoder_prefill_flops(config, 0)
