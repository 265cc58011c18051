"""ailut-jax: AdaInt image-adaptive 3D LUTs with learned sampling intervals, in JAX."""

from ailut_jax.ops import (
    ailut_transform,
    identity_lut,
    lut_transform,
    native_available,
    uniform_vertices,
)

__version__ = "0.1.0"

__all__ = [
    "ailut_transform",
    "identity_lut",
    "lut_transform",
    "native_available",
    "uniform_vertices",
]
