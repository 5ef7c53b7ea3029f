"""Projector registry: a string names a projector, `build_projector` builds it (timm-style)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tokenpacker.projectors.base import Projector, ProjectorSpec, allowed_scale_factors, check_scale_factor
from tokenpacker.projectors.convolutional import CAbstractorProjector, LDPv2Projector
from tokenpacker.projectors.mlp import MLPProjector
from tokenpacker.projectors.pooling import AvgPoolProjector, PixelShuffleProjector
from tokenpacker.projectors.resampler import ResamplerProjector
from tokenpacker.projectors.tokenpacker import TokenPackerProjector

PROJECTORS: Mapping[str, type[Projector]] = MappingProxyType(
    {
        "tokenpacker": TokenPackerProjector,
        "mlp2x_gelu": MLPProjector,
        "avgpool": AvgPoolProjector,
        "pixel_shuffle": PixelShuffleProjector,
        "resampler": ResamplerProjector,
        "c_abstractor": CAbstractorProjector,
        "ldpv2": LDPv2Projector,
    }
)

# Projectors that keep every token take no scale_factor.
FULL_TOKEN_PROJECTORS = frozenset({"mlp2x_gelu"})


def check_projector_name(name: str) -> None:
    if name not in PROJECTORS:
        raise ValueError(f"unknown projector {name!r}; available: {', '.join(sorted(PROJECTORS))}")


def effective_scale_factor(name: str, scale_factor: int) -> int:
    """The scale a projector really uses: 1 for the full-token baseline whatever was asked."""
    check_projector_name(name)
    return 1 if name in FULL_TOKEN_PROJECTORS else scale_factor


def build_projector(name: str, spec: ProjectorSpec) -> Projector:
    check_projector_name(name)
    return PROJECTORS[name](spec)


def projector_tokens(name: str, spec: ProjectorSpec, grid: int) -> int:
    """Tokens a projector emits per image of a grid x grid patch grid, without building it."""
    check_projector_name(name)
    return PROJECTORS[name].tokens_for(spec, grid)


__all__ = [
    "PROJECTORS",
    "Projector",
    "ProjectorSpec",
    "allowed_scale_factors",
    "build_projector",
    "check_projector_name",
    "check_scale_factor",
    "effective_scale_factor",
    "projector_tokens",
]
