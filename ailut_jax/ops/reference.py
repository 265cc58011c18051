"""Pure-JAX AiLUT transform: the specification the native op is tested against.

Layouts (channels-last images; the semantics are in docs/transform.md):

* ``img``: ``(H, W, 3)`` with channels R, G, B.
* ``lut``: ``(3, D, D, D)`` indexed ``lut[c, b, g, r]`` (last axis is red).
* ``vertices``: ``(3, D)``, one row of sampling coordinates per input channel R, G, B.

Leading batch dimensions are handled by :func:`jax.vmap` in the public wrapper; the
functions here take one image. Everything is written with ``jnp`` only, so JAX autodiff
of these functions *is* the backward the native op must reproduce: the cell indices are
integers (no gradient), the fraction ``t`` carries the gradient to the pixel and to both
vertices of its cell.
"""

from __future__ import annotations

import jax.numpy as jnp

#: Added to every interval width before dividing, exactly as the authors' kernels do.
EPS = 1e-10


def find_cell(vertices_row: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """Cell index of each value of ``x`` in one row of vertices.

    ``lower_bound`` by bisection (first ``i`` with ``v[i] >= x``), minus one, clamped to
    ``[0, D-2]``. A value equal to ``v[i]`` therefore lands in cell ``i-1`` with
    fraction 1, and anything ``<= v[0]`` in cell 0. The bisection moves right while
    ``not v[mid] >= x``, as the authors' kernels do, so a NaN value (every comparison
    false) lands in the last cell, ``D-2``.

    The bisection is spelled out (rather than ``jnp.searchsorted``) so that the cell
    picked for non-monotone or NaN vertices is the same one the native kernels pick:
    both run this exact sequence of comparisons.
    """
    d = vertices_row.shape[-1]
    lo = jnp.zeros(x.shape, jnp.int32)
    hi = jnp.full(x.shape, d, jnp.int32)
    # ceil(log2(d + 1)) halvings always close the [lo, hi) range.
    for _ in range(int(d).bit_length()):
        active = lo < hi
        mid = (lo + hi) // 2
        v_mid = vertices_row[jnp.minimum(mid, d - 1)]
        go_right = ~(v_mid >= x)
        lo = jnp.where(active & go_right, mid + 1, lo)
        hi = jnp.where(active & ~go_right, mid, hi)
    return jnp.clip(lo - 1, 0, d - 2)


def uniform_cell(d: int, x: jnp.ndarray) -> jnp.ndarray:
    """:func:`find_cell` for the uniform grid ``i / (d - 1)``, without a search.

    A first guess from ``ceil(x * (d-1)) - 1`` is corrected by one step against the
    grid values themselves, so the result equals the bisection on ``i / (d - 1)``
    exactly, including values that sit on a vertex and NaN (the last cell, ``D-2``).
    """
    scale = d - 1
    guess = jnp.ceil(x * scale) - 1
    guess = jnp.where(jnp.isnan(guess), d - 2, guess)
    k = jnp.clip(guess, 0, d - 2).astype(jnp.int32)
    v_lo = k.astype(x.dtype) / scale
    v_hi = (k + 1).astype(x.dtype) / scale
    k = jnp.where((x <= v_lo) & (k > 0), k - 1, k)
    k = jnp.where((x > v_hi) & (k < d - 2), k + 1, k)
    return k


def uniform_vertices(d: int, dtype=jnp.float32) -> jnp.ndarray:
    """The ``(3, d)`` uniform grid ``i / (d - 1)`` used by the plain 3D-LUT."""
    row = jnp.arange(d, dtype=dtype) / jnp.asarray(d - 1, dtype)
    return jnp.broadcast_to(row, (3, d))


def _trilinear(lut, cells, fracs):
    """Blend the 8 lattice corners around each pixel; returns ``(..., 3)``."""
    d = lut.shape[-1]
    kr, kg, kb = cells
    tr, tg, tb = fracs
    flat = lut.reshape(3, d * d * d)
    out = 0.0
    for j, wb in ((0, 1 - tb), (1, tb)):
        for i, wg in ((0, 1 - tg), (1, tg)):
            for h, wr in ((0, 1 - tr), (1, tr)):
                index = ((kb + j) * d + (kg + i)) * d + (kr + h)
                corner = jnp.take(flat, index, axis=1)  # (3, ...)
                out = out + corner * (wr * wg * wb)
    return jnp.moveaxis(out, 0, -1)


def ailut_transform_single(img, lut, vertices):
    """AiLUT transform of one image: ``(H, W, 3)``, ``(3, D, D, D)``, ``(3, D)``."""
    cells, fracs = [], []
    for ch in range(3):
        x = img[..., ch]
        v = vertices[ch]
        k = find_cell(v, x)
        v0, v1 = v[k], v[k + 1]
        cells.append(k)
        fracs.append((x - v0) / (v1 - v0 + EPS))
    return _trilinear(lut, cells, fracs)


def lut_transform_single(img, lut):
    """Uniform-grid 3D-LUT transform of one image: ``(H, W, 3)``, ``(3, D, D, D)``.

    Same arithmetic as :func:`ailut_transform_single` with vertices ``i / (D-1)``
    (including the ``1e-10`` in the fraction), but the cell comes from
    :func:`uniform_cell` instead of a search.
    """
    d = lut.shape[-1]
    scale = jnp.asarray(d - 1, img.dtype)
    cells, fracs = [], []
    for ch in range(3):
        x = img[..., ch]
        k = uniform_cell(d, x)
        v0 = k.astype(img.dtype) / scale
        v1 = (k + 1).astype(img.dtype) / scale
        cells.append(k)
        fracs.append((x - v0) / (v1 - v0 + EPS))
    return _trilinear(lut, cells, fracs)
