"""Model registry: builders by name, with the frontend input shape each variant declares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from tinyasc.config import FrontendConfig


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., nn.Module]
    n_mels: int
    frames: int
    description: str
    ships_as: str  # the storage precision the variant is meant to ship in
    frontend: dict  # FrontendConfig overrides the variant was designed for ({} = the baseline's)
    family: str  # the architecture family (class name)
    role: str  # "budget" (fits 128 KB as it ships), "prune" (fits after pruning), "teacher", "reference"
    # model.params of the variant with every width scaled by a factor (``zoo.fit_width``); None: no knob
    scale: Callable[[float], dict] | None = None


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    n_mels: int,
    frames: int,
    description: str,
    ships_as: str = "float16",
    frontend: dict | None = None,
    family: str = "",
    role: str = "budget",
    scale: Callable[[float], dict] | None = None,
):
    """Decorator: register ``builder(n_classes=10, **params) -> nn.Module`` under ``name``; ``scale(s)``
    gives the ``model.params`` of the variant with its widths times ``s``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        fe = dict(frontend or {})
        given = FrontendConfig(**fe)
        if (given.n_mels, given.n_frames) != (n_mels, frames):
            raise ValueError(f"model {name!r}: frontend {fe} does not give {n_mels} x {frames}")
        _REGISTRY[name] = ModelInfo(
            name, builder, n_mels, frames, description, ships_as, fe, family or name, role, scale
        )
        return builder

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(name: str, n_classes: int = 10, **params) -> nn.Module:
    """Build a registered model with its architecture ``params`` (1-bit weights are a compression
    applied on top: ``tinyasc.artifact.build_model``)."""
    info = get_model_info(name)
    try:
        return info.builder(n_classes=n_classes, **params)
    except TypeError as e:
        raise ValueError(f"model {name!r}: bad model.params {params} ({e})") from None


class InputShapeError(ValueError):
    """The input does not have the frontend shape a model was built for."""


def check_input(x, n_mels: int, frames: int, name: str) -> None:
    from torch.fx._symbolic_trace import is_fx_symbolic_tracing

    if is_fx_symbolic_tracing():  # a symbolic proxy has no shape to check (FX tracing, memory.py)
        return
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != n_mels or x.shape[3] != frames:
        raise InputShapeError(
            f"{name}: input shape {tuple(x.shape)}; expected (batch, 1, {n_mels}, {frames}) log-mel "
            f"(set frontend.n_mels={n_mels}; a model built with model.params={{frames: {x.shape[-1] if x.dim() else '?'}}} "
            "takes other clip lengths, which tinyasc train does by itself)"
        )
