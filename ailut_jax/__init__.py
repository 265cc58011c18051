"""ailut-jax: AdaInt image-adaptive 3D LUTs with learned sampling intervals, in JAX."""

__version__ = "0.1.0"

__all__ = [
    "AiLUT",
    "Enhancer",
    "ModelConfig",
    "ailut_transform",
    "identity_lut",
    "lut_transform",
    "native_available",
    "uniform_vertices",
]

# Imported on first use, so that `import ailut_jax` (and `ailut --help`) loads neither
# JAX nor Flax.
_LAZY = {
    "ailut_transform": "ailut_jax.ops",
    "identity_lut": "ailut_jax.ops",
    "lut_transform": "ailut_jax.ops",
    "native_available": "ailut_jax.ops",
    "uniform_vertices": "ailut_jax.ops",
    "AiLUT": "ailut_jax.models",
    "ModelConfig": "ailut_jax.models",
    "Enhancer": "ailut_jax.enhance",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ailut_jax' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
