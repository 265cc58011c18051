"""Public AiLUT / 3D-LUT transforms: input checks, implementation choice, custom VJP.

``impl="ffi"`` runs the native XLA FFI kernels (C++ on CPU, CUDA on GPUs) through
:func:`jax.ffi.ffi_call` with a :func:`jax.custom_vjp`; ``impl="reference"`` runs the
pure-JAX specification in :mod:`ailut_jax.ops.reference`; ``impl="auto"`` picks the
native op whenever the compiled module for the current backend is importable.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ailut_jax.ops import reference
from ailut_jax.ops._native import native_available, num_batch_dims_metadata

IMPLS = ("auto", "ffi", "reference")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _shape_str(x) -> str:
    return f"{tuple(x.shape)} {x.dtype}"


def _check_dtype(name: str, x) -> None:
    if np.dtype(x.dtype) not in _FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got dtype {x.dtype}")


def _validate(img, lut, vertices=None) -> None:
    """Raise ``ValueError`` naming the argument and shapes for any malformed input."""
    args = [("img", img), ("lut", lut)] + ([("vertices", vertices)] if vertices is not None else [])
    for name, x in args:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise ValueError(f"{name} must be an array, got {type(x).__name__}")
        _check_dtype(name, x)
    dtypes = {np.dtype(x.dtype) for _, x in args}
    if len(dtypes) > 1:
        raise ValueError(
            "img, lut and vertices must share one dtype, got "
            + ", ".join(f"{name} {x.dtype}" for name, x in args)
        )
    shapes = ", ".join(f"{name} {tuple(x.shape)}" for name, x in args)
    if img.ndim < 3 or img.shape[-1] != 3:
        raise ValueError(f"img must have shape (..., H, W, 3), got {_shape_str(img)}")
    if img.shape[-3] == 0 or img.shape[-2] == 0:
        raise ValueError(f"img must have at least one pixel, got {_shape_str(img)}")
    batch = tuple(img.shape[:-3])
    if lut.ndim != len(batch) + 4 or lut.shape[-4] != 3:
        raise ValueError(
            f"lut must have shape (..., 3, D, D, D) with the same leading dims as img; got {shapes}"
        )
    d = lut.shape[-1]
    if lut.shape[-3:] != (d, d, d):
        raise ValueError(f"lut's last three dims must be equal (D, D, D), got {_shape_str(lut)}")
    if d < 2:
        raise ValueError(f"lut must have D >= 2 vertices per axis, got {_shape_str(lut)}")
    if tuple(lut.shape[:-4]) != batch:
        raise ValueError(f"img and lut leading (batch) dims differ: {shapes}")
    if vertices is not None:
        if vertices.ndim != len(batch) + 2 or vertices.shape[-2] != 3:
            raise ValueError(
                "vertices must have shape (..., 3, D) with the same leading dims as img; "
                f"got {shapes}"
            )
        if tuple(vertices.shape[:-2]) != batch:
            raise ValueError(f"img and vertices leading (batch) dims differ: {shapes}")
        if vertices.shape[-1] != d:
            raise ValueError(
                f"lut and vertices disagree on D: lut has D={d}, vertices has "
                f"D={vertices.shape[-1]} ({shapes})"
            )


def _resolve_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    backend = jax.default_backend()
    if impl == "auto":
        return "ffi" if native_available(backend) else "reference"
    if impl == "ffi" and not native_available(backend):
        raise RuntimeError(
            f"impl='ffi' was requested but the native AiLUT module for backend {backend!r} "
            "is not available (was the package built without it?); use impl='reference'"
        )
    return impl


def _vmap_leading(fn, n_batch: int):
    for _ in range(n_batch):
        fn = jax.vmap(fn)
    return fn


# --------------------------------------------------------------------------- native


def _ffi_call(target: str, result_shapes: Sequence[jax.ShapeDtypeStruct], *args):
    call = jax.ffi.ffi_call(
        target,
        tuple(result_shapes),
        # Leading dims are batch everywhere in the kernels, so a vmapped call is just
        # the same call with one more leading dim on every argument.
        vmap_method="broadcast_all",
    )
    with num_batch_dims_metadata(args[0].ndim - 3):
        return call(*args)


def _sds(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


@jax.custom_vjp
def _ailut_ffi(img, lut, vertices):
    (out,) = _ffi_call("ailut_forward", [_sds(img)], img, lut, vertices)
    return out


def _ailut_ffi_fwd(img, lut, vertices):
    return _ailut_ffi(img, lut, vertices), (img, lut, vertices)


def _ailut_ffi_bwd(res, g):
    img, lut, vertices = res
    return tuple(
        _ffi_call(
            "ailut_backward",
            [_sds(img), _sds(lut), _sds(vertices)],
            g,
            img,
            lut,
            vertices,
        )
    )


_ailut_ffi.defvjp(_ailut_ffi_fwd, _ailut_ffi_bwd)


@jax.custom_vjp
def _lut_ffi(img, lut):
    (out,) = _ffi_call("lut_forward", [_sds(img)], img, lut)
    return out


def _lut_ffi_fwd(img, lut):
    return _lut_ffi(img, lut), (img, lut)


def _lut_ffi_bwd(res, g):
    img, lut = res
    return tuple(_ffi_call("lut_backward", [_sds(img), _sds(lut)], g, img, lut))


_lut_ffi.defvjp(_lut_ffi_fwd, _lut_ffi_bwd)


# --------------------------------------------------------------------------- public


def ailut_transform(img, lut, vertices, *, impl: str = "auto"):
    """Apply image-adaptive 3D LUTs with non-uniform vertices (the AiLUT transform).

    Args:
      img: ``(..., H, W, 3)`` float32 or float64, channels R, G, B, nominally in
        ``[0, 1]``; values outside extrapolate linearly from the edge cells.
      lut: ``(..., 3, D, D, D)`` indexed ``lut[c, b, g, r]`` (the last axis is red, as
        in the authors' code), same dtype and leading dims as ``img``.
      vertices: ``(..., 3, D)`` sampling coordinates of the lattice, rows R, G, B;
        normally increasing from 0 to 1 (AdaInt's cumulative softmax).
      impl: ``"auto"`` (native when built for the current backend, else reference),
        ``"ffi"`` or ``"reference"``.

    Returns:
      The transformed image, with ``img``'s shape and dtype. Differentiable with
      respect to all three arguments.
    """
    _validate(img, lut, vertices)
    img, lut, vertices = jnp.asarray(img), jnp.asarray(lut), jnp.asarray(vertices)
    if _resolve_impl(impl) == "ffi":
        return _ailut_ffi(img, lut, vertices)
    fn = _vmap_leading(reference.ailut_transform_single, img.ndim - 3)
    return fn(img, lut, vertices)


def lut_transform(img, lut, *, impl: str = "auto"):
    """Apply uniform-grid 3D LUTs (the 3D-LUT baseline, vertices ``i / (D-1)``).

    Same layouts and semantics as :func:`ailut_transform` with uniform vertices, but the
    lattice cell is computed directly instead of searched. Differentiable with respect
    to ``img`` and ``lut``.
    """
    _validate(img, lut)
    img, lut = jnp.asarray(img), jnp.asarray(lut)
    if _resolve_impl(impl) == "ffi":
        return _lut_ffi(img, lut)
    fn = _vmap_leading(reference.lut_transform_single, img.ndim - 3)
    return fn(img, lut)


def identity_at_vertices(vertices: np.ndarray) -> np.ndarray:
    """The ``(3, D, D, D)`` LUT that the AiLUT transform at ``vertices`` maps to the identity.

    Entry ``[c, b, g, r]`` is the coordinate of its own lattice point in channel ``c``:
    ``vertices[0, r]``, ``vertices[1, g]`` or ``vertices[2, b]``. Interpolating these values
    between the vertices gives back the input colour, so blending a predicted LUT with this
    one (same vertices) blends the enhanced image with the input.
    """
    vertices = np.asarray(vertices)
    d = vertices.shape[-1]
    r = np.broadcast_to(vertices[0][None, None, :], (d, d, d))
    g = np.broadcast_to(vertices[1][None, :, None], (d, d, d))
    b = np.broadcast_to(vertices[2][:, None, None], (d, d, d))
    return np.stack([r, g, b]).astype(vertices.dtype)


@functools.cache
def identity_lut(d: int, dtype=np.float32) -> np.ndarray:
    """The ``(3, d, d, d)`` identity LUT: ``lut[0,b,g,r] = r/(d-1)``, G and B likewise
    (:func:`identity_at_vertices` on the uniform grid)."""
    grid = np.arange(d, dtype=np.float64) / (d - 1)
    lut = identity_at_vertices(np.stack([grid, grid, grid])).astype(dtype)
    lut.setflags(write=False)
    return lut
