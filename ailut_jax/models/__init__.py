"""Flax (nnx) models of AdaInt: backbones, LUT generator, AdaInt intervals, full model."""

from ailut_jax.models.ailut import (
    ADAINT_PARAMS,
    AdaInt,
    AiLUT,
    LUTGenerator,
    ModelOutput,
    apply_lut,
    count_params,
    empty_model,
)
from ailut_jax.models.backbones import CNNBackbone, ResNet18Backbone
from ailut_jax.models.config import ModelConfig
from ailut_jax.models.layers import resize_bilinear

__all__ = [
    "ADAINT_PARAMS",
    "AdaInt",
    "AiLUT",
    "CNNBackbone",
    "LUTGenerator",
    "ModelConfig",
    "ModelOutput",
    "ResNet18Backbone",
    "apply_lut",
    "count_params",
    "empty_model",
    "resize_bilinear",
]
