"""The AiLUT and 3D-LUT transforms (native XLA FFI kernels and a pure-JAX reference)."""

from ailut_jax.ops._native import native_available
from ailut_jax.ops.reference import uniform_vertices
from ailut_jax.ops.transform import (
    ailut_transform,
    identity_at_vertices,
    identity_lut,
    lut_transform,
)

__all__ = [
    "ailut_transform",
    "identity_at_vertices",
    "identity_lut",
    "lut_transform",
    "native_available",
    "uniform_vertices",
]
