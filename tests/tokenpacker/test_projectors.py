from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenpacker.projectors import PROJECTORS, ProjectorSpec, build_projector

GRID, C, C_ML, H = 24, 64, 256, 96


def spec(scale: int) -> ProjectorSpec:
    return ProjectorSpec(vision_width=C, multi_level_width=C_ML, llm_width=H, grid=GRID, scale_factor=scale)


def features(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, GRID * GRID, C, generator=gen), torch.randn(
        batch, GRID * GRID, C_ML, generator=gen
    )


CASES = [("mlp2x_gelu", 1, 576)] + [
    (name, s, tokens)
    for name in PROJECTORS
    if name != "mlp2x_gelu"
    for s, tokens in ((2, 144), (3, 64), (4, 36))
]


@pytest.mark.parametrize(("name", "scale", "tokens"), CASES)
def test_every_projector_emits_its_budget(name: str, scale: int, tokens: int) -> None:
    projector = build_projector(name, spec(scale))
    out = projector(*features())
    assert out.shape == (2, tokens, H)
    assert projector.num_tokens(GRID) == tokens
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(PROJECTORS))
def test_gradients_reach_every_projector_parameter(name: str) -> None:
    projector = build_projector(name, spec(1 if name == "mlp2x_gelu" else 3))
    projector(*features()).square().mean().backward()
    for pname, param in projector.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


def test_unknown_projector_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown projector 'qformer'.*tokenpacker"):
        build_projector("qformer", spec(2))


def test_scale_factor_must_divide_the_grid() -> None:
    with pytest.raises(ValueError, match=r"scale_factor=5 .*24x24.*\[1, 2, 3, 4, 6, 8, 12, 24\]"):
        spec(5)


def test_wrong_feature_shape_is_named() -> None:
    projector = build_projector("tokenpacker", spec(2))
    single, multi = features()
    with pytest.raises(ValueError, match=r"features of shape \(2, 575, 64\).*\(batch, 576, 64\)"):
        projector(single[:, :-1], multi)
    with pytest.raises(ValueError, match=r"multi_level_features of shape \(2, 576, 64\)"):
        projector(single, single)


def reference_tokenpacker(
    weights: dict[str, torch.Tensor], x: torch.Tensor, x_multi: torch.Tensor, scale: int
) -> torch.Tensor:
    """The original algorithm written plainly: one nn.MultiheadAttention call per region, original weight names."""
    width = weights["q_proj_1.weight"].shape[0]
    attn = nn.MultiheadAttention(width, max(1, width // 128))
    attn.load_state_dict(
        {k.removeprefix("clip_attn."): v for k, v in weights.items() if k.startswith("clip_attn.")}
    )

    def branch(prefix: str, ln: str, inp: torch.Tensor) -> torch.Tensor:
        h = F.linear(inp, weights[f"{prefix}.0.weight"], weights[f"{prefix}.0.bias"])
        h = F.linear(F.gelu(h), weights[f"{prefix}.2.weight"], weights[f"{prefix}.2.bias"])
        return F.layer_norm(h, (width,), weights[f"{ln}.weight"], weights[f"{ln}.bias"], eps=1e-6)

    batch = x.shape[0]
    coarse = GRID // scale
    q = F.interpolate(
        x.reshape(batch, GRID, GRID, -1).permute(0, 3, 1, 2).float(), size=(coarse, coarse), mode="bilinear"
    )
    q = q.permute(0, 2, 3, 1).reshape(batch, coarse * coarse, -1)
    q = F.layer_norm(
        F.linear(q, weights["q_proj_1.weight"]),
        (width,),
        weights["ln_q_1.weight"],
        weights["ln_q_1.bias"],
        eps=1e-6,
    )
    k = branch("k_proj_1", "ln_k_1", x_multi).reshape(batch, GRID, GRID, width)
    v = branch("v_proj_1", "ln_v_1", x_multi).reshape(batch, GRID, GRID, width)
    out = torch.empty(batch, coarse * coarse, width)
    for i in range(coarse):
        for j in range(coarse):
            region_k = k[:, i * scale : (i + 1) * scale, j * scale : (j + 1) * scale].reshape(
                batch, -1, width
            )
            region_v = v[:, i * scale : (i + 1) * scale, j * scale : (j + 1) * scale].reshape(
                batch, -1, width
            )
            query = q[:, i * coarse + j].unsqueeze(0)  # (1, B, C), sequence-first like the original
            out[:, i * coarse + j] = attn(query, region_k.transpose(0, 1), region_v.transpose(0, 1))[0][0]
    h = F.linear(out, weights["mlp.0.weight"], weights["mlp.0.bias"])
    return F.linear(F.gelu(h), weights["mlp.2.weight"], weights["mlp.2.bias"])


def original_layout_weights(
    width: int, ml_width: int, llm_width: int, prefix: str = ""
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    shapes = {
        "q_proj_1.weight": (width, width),
        "k_proj_1.0.weight": (width, ml_width), "k_proj_1.0.bias": (width,),
        "k_proj_1.2.weight": (width, width), "k_proj_1.2.bias": (width,),
        "v_proj_1.0.weight": (width, ml_width), "v_proj_1.0.bias": (width,),
        "v_proj_1.2.weight": (width, width), "v_proj_1.2.bias": (width,),
        "ln_q_1.weight": (width,), "ln_q_1.bias": (width,),
        "ln_k_1.weight": (width,), "ln_k_1.bias": (width,),
        "ln_v_1.weight": (width,), "ln_v_1.bias": (width,),
        "clip_attn.in_proj_weight": (3 * width, width), "clip_attn.in_proj_bias": (3 * width,),
        "clip_attn.out_proj.weight": (width, width), "clip_attn.out_proj.bias": (width,),
        "mlp.0.weight": (llm_width, width), "mlp.0.bias": (llm_width,),
        "mlp.2.weight": (llm_width, llm_width), "mlp.2.bias": (llm_width,),
    }  # fmt: skip
    return {
        prefix + k: torch.randn(shape, generator=gen) * 0.1 + (1.0 if ".weight" in k and "ln_" in k else 0.0)
        for k, shape in shapes.items()
    }


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("prefix", ["", "model.mm_projector."])
def test_tokenpacker_equals_the_original_algorithm(scale: int, prefix: str) -> None:
    from tokenpacker.checkpoints import projector_from_original

    width = 256  # 2 heads, so the head split is exercised
    weights = original_layout_weights(width, 4 * width, H, prefix)
    projector = projector_from_original(weights, scale_factor=scale)
    gen = torch.Generator().manual_seed(2)
    x, x_multi = (
        torch.randn(2, GRID * GRID, width, generator=gen),
        torch.randn(2, GRID * GRID, 4 * width, generator=gen),
    )
    bare = {k.removeprefix(prefix): v for k, v in weights.items()}
    with torch.no_grad():
        expected = reference_tokenpacker(bare, x, x_multi, scale)
        got = projector(x, x_multi)
    assert got.shape == expected.shape == (2, (GRID // scale) ** 2, H)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()


@pytest.mark.parametrize(
    ("init_std", "expected"),
    [
        (0.02, lambda fan_in, attention: 0.02),
        (None, lambda fan_in, attention: (fan_in * (1 if attention else 3)) ** -0.5),
    ],
)
def test_projector_weights_follow_the_configured_init(init_std, expected) -> None:
    """0.02 everywhere as DESIGN 1.2.5 (released widths), or scaled by fan-in for tiny widths."""
    torch.manual_seed(0)
    projector = build_projector("tokenpacker", replace(spec(2), init_std=init_std))
    linears = [m for m in projector.modules() if isinstance(m, nn.Linear)]
    attention = projector.region_attention.in_proj_weight
    for weight, fan_in, is_attention in [(m.weight, m.in_features, False) for m in linears] + [
        (attention, C, True)
    ]:
        assert weight.std().item() == pytest.approx(expected(fan_in, is_attention), rel=0.15)
    assert all(m.bias is None or not m.bias.any() for m in linears)
