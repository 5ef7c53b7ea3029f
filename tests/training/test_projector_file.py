"""The stage-1 projector file: exact round trip, and every mismatch a clear error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from tokenpacker.tiny import build_tiny_model, tiny_config
from training.projector_file import ProjectorMismatchError, load_projector_file, save_projector_file


def saved_projector(tmp_path, projector_type: str = "tokenpacker", scale_factor: int = 2, seed: int = 1):
    model = build_tiny_model(tiny_config(projector_type, scale_factor), seed=seed)
    path = save_projector_file(model.state_dict(), model.config, tmp_path / "mm_projector.safetensors")
    return model, path


def test_round_trip_is_exact_and_holds_only_projector_keys(tmp_path):
    source, path = saved_projector(tmp_path)
    assert set(load_file(path)) == {f"projector.{k}" for k in source.projector.state_dict()}
    target = build_tiny_model(tiny_config("tokenpacker", 2), seed=2)
    load_projector_file(target, path)
    for name, tensor in source.projector.state_dict().items():
        assert torch.equal(target.projector.state_dict()[name], tensor)


def test_other_scale_factor_is_rejected_though_shapes_match(tmp_path):
    _, path = saved_projector(tmp_path, scale_factor=2)
    with pytest.raises(ProjectorMismatchError, match=r"scale_factor 2 \(file\) vs 3 \(model\)"):
        load_projector_file(build_tiny_model(tiny_config("tokenpacker", 3)), path)


def test_other_projector_type_is_rejected(tmp_path):
    _, path = saved_projector(tmp_path, projector_type="mlp2x_gelu")
    with pytest.raises(ProjectorMismatchError, match=r"projector_type mlp2x_gelu \(file\) vs tokenpacker"):
        load_projector_file(build_tiny_model(tiny_config("tokenpacker", 2)), path)


def test_edited_weights_are_rejected_by_name(tmp_path):
    _, path = saved_projector(tmp_path)
    weights = load_file(path)
    weights.pop("projector.point_query_proj.weight")
    metadata = {
        "projector_type": "tokenpacker",
        "scale_factor": "2",
        "grid": "24",
        "vision_width": "64",
        "multi_level_width": "256",
        "llm_width": "128",
    }
    save_file(weights, str(path), metadata=metadata)
    with pytest.raises(ProjectorMismatchError, match="missing keys: point_query_proj.weight"):
        load_projector_file(build_tiny_model(tiny_config("tokenpacker", 2)), path)


def test_file_without_metadata_is_rejected(tmp_path):
    source, _ = saved_projector(tmp_path)
    path = tmp_path / "bare.safetensors"
    save_file({f"projector.{k}": v.contiguous() for k, v in source.projector.state_dict().items()}, str(path))
    with pytest.raises(ProjectorMismatchError, match="projector_type unrecorded"):
        load_projector_file(build_tiny_model(tiny_config("tokenpacker", 2)), path)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run stage 1 or fix projector_file"):
        load_projector_file(build_tiny_model(tiny_config("tokenpacker", 2)), tmp_path / "none.safetensors")
