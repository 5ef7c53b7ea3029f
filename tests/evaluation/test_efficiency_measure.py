"""measure() on tiny checkpoints, its latency/memory parts, and its input checks."""

import json
import math

import pytest
import torch
from transformers import DynamicCache

from evaluation.efficiency import kv_cache_mb_per_1k_tokens, measure, paper_scale_prefill_tflops
from evaluation.efficiency.latency import repeated_runs
from evaluation.efficiency.memory import cpu_peak_memory_supported
from evaluation.records import EFFICIENCY_METRICS
from tokenpacker.tiny import build_tiny_model, save_tiny_checkpoint, tiny_config

QUICK = {"runs": 2, "warmup": 1, "batch": 2, "new_tokens": 4}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny_s2"), tiny_config("tokenpacker", 2))


@pytest.fixture(scope="module")
def tiny_metrics(tiny_checkpoint):
    return measure(tiny_checkpoint, **QUICK)


def test_measure_returns_exactly_the_recorded_metrics_in_order(tiny_metrics):
    assert tuple(tiny_metrics) == EFFICIENCY_METRICS
    assert all(isinstance(value, float) for value in tiny_metrics.values())


def test_measure_values_are_finite_and_positive(tiny_metrics):
    measured = {name: value for name, value in tiny_metrics.items() if name != "peak_memory_mb"}
    assert all(math.isfinite(value) and value > 0 for value in measured.values()), measured
    if cpu_peak_memory_supported():
        assert math.isfinite(tiny_metrics["peak_memory_mb"]) and tiny_metrics["peak_memory_mb"] > 0


def test_measure_counts_match_the_checkpoint(tiny_metrics):
    assert tiny_metrics["visual_tokens"] == 144
    assert tiny_metrics["prefill_tflops_7b"] == pytest.approx(2.72, rel=0.01)
    assert tiny_metrics["prefill_tflops_13b"] == paper_scale_prefill_tflops("tokenpacker", 2, None, "13b")
    # tiny LLaMA: width 128, MLP 384, 4 layers; 144 visual + 64 text tokens, 2 FLOPs per MAC
    length = 144 + 64
    hand = 2 * 4 * (length * (4 * 128 * 128 + 3 * 128 * 384) + 2 * length * length * 128)
    assert tiny_metrics["prefill_tflops_model"] * 1e12 == pytest.approx(hand)
    assert tiny_metrics["kv_cache_mb_per_1k_tokens"] == pytest.approx(2 * 4 * 128 * 4 * 1000 / 2**20)


def test_decoding_a_token_is_cheaper_than_the_whole_prefill(tiny_metrics):
    assert tiny_metrics["tpot_ms"] < tiny_metrics["ttft_ms"]


def test_hd_measure_scales_the_image_to_the_paper_model(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path, tiny_config("tokenpacker", 2, patch_num=9))
    # a 1 x 2 grid, as 336 x 672 at 336 px: two cells, "," and "\n", the global view and its "\n"
    metrics = measure(checkpoint, image_size=(48, 96), runs=1, warmup=0, batch=1, new_tokens=2)
    assert metrics["visual_tokens"] == 2 * 144 + 1 + 1 + 144 + 1
    assert metrics["prefill_tflops_7b"] == paper_scale_prefill_tflops(
        "tokenpacker", 2, 9, "7b", image_size=(336, 672)
    )


def test_kv_cache_size_matches_the_cache_generate_builds():
    model = build_tiny_model(tiny_config())
    cache = DynamicCache(config=model.config.text_config)
    with torch.no_grad():
        model(input_ids=torch.arange(10, 110)[None], cache=cache)
    stored = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    expected = kv_cache_mb_per_1k_tokens(model.config.text_config, torch.float32) * 2**20 * 100 / 1000
    assert stored == pytest.approx(expected)


def test_kv_cache_of_vicuna_7b_in_fp16_is_half_a_megabyte_per_token():
    from evaluation.efficiency import llava15_config

    text_config = llava15_config("7b", "tokenpacker", 2, None).text_config
    assert kv_cache_mb_per_1k_tokens(text_config, torch.float16) == 500.0


def test_repeated_runs_drop_the_warm_up_results():
    calls = iter(range(10))
    assert repeated_runs(lambda: next(calls), runs=3, warmup=2, desc="test") == [2, 3, 4]
    with pytest.raises(ValueError, match="runs=0 must be >= 1"):
        repeated_runs(lambda: None, runs=0, warmup=0, desc="test")


def test_missing_checkpoint_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkpoint folder"):
        measure(tmp_path / "nowhere")


def test_a_plain_llm_folder_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="model_type 'llama', not 'tokenpacker_llava'"):
        measure(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, "device='tpu'"),
        ({"batch": 0}, "batch=0"),
        ({"new_tokens": 1}, "new_tokens=1 must be >= 2"),
        ({"runs": 0}, "runs=0 must be >= 1"),
        ({"text_tokens": 0}, "text_tokens=0"),
        ({"image_size": (48, 0)}, r"image_size=\(48, 0\)"),
    ],
)
def test_bad_options_are_rejected(tiny_checkpoint, kwargs, message):
    with pytest.raises(ValueError, match=message):
        measure(tiny_checkpoint, **{**QUICK, **kwargs})
