"""Building blocks that must match PyTorch exactly: resize, InstanceNorm, pooling, inits."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

#: Full float32 precision for every matmul and convolution: the models are small, and a
#: TF32 backbone on GPUs would move the predicted LUT by more than an 8-bit step.
PRECISION = jax.lax.Precision.HIGHEST


def _linear_taps(in_size: int, out_size: int):
    """Source indices and weights of PyTorch's bilinear resize along one axis.

    ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``: the source
    coordinate of output ``i`` is ``(i + 0.5) * in / out - 0.5`` in float32, clamped
    at 0; the two taps are its floor and the next index (clamped to the edge) with
    weights ``1 - l`` and ``l``. Computed once per shape with numpy, at trace time.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int32), in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0).astype(np.int32)
    return i0, i1, np.float32(1.0) - lam, lam


def resize_bilinear(img: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of ``(..., H, W, C)`` to ``(..., h, w, C)``, half-pixel centres.

    Same result as ``F.interpolate(x, size, mode="bilinear", align_corners=False)`` (no
    antialiasing) up to float rounding, and ``jax.image.resize(..., "linear",
    antialias=False)``. It is a 4-tap gather: two rows are gathered per output row, then
    two columns per output column, so a 4K input costs O(h * W + h * w), not a dense
    resampling matrix. The order of the sums follows PyTorch's kernel (width first).
    """
    out_h, out_w = size
    in_h, in_w = img.shape[-3], img.shape[-2]
    if (in_h, in_w) == (out_h, out_w):
        return img  # source coordinates fall exactly on the pixels: the identity
    r0, r1, hw0, hw1 = _linear_taps(in_h, out_h)
    c0, c1, ww0, ww1 = _linear_taps(in_w, out_w)
    dtype = img.dtype
    ww0, ww1 = jnp.asarray(ww0, dtype)[:, None], jnp.asarray(ww1, dtype)[:, None]
    hw0, hw1 = jnp.asarray(hw0, dtype)[:, None, None], jnp.asarray(hw1, dtype)[:, None, None]

    def along_width(rows):
        return jnp.take(rows, c0, axis=-2) * ww0 + jnp.take(rows, c1, axis=-2) * ww1

    top = along_width(jnp.take(img, r0, axis=-3))
    bottom = along_width(jnp.take(img, r1, axis=-3))
    return top * hw0 + bottom * hw1


def _linear_taps_traced(in_size: jax.Array, out_size: int):
    """:func:`_linear_taps` for a size known only at run time (an int32 scalar)."""
    scale = in_size.astype(jnp.float32) / jnp.float32(out_size)
    src = scale * (jnp.arange(out_size, dtype=jnp.float32) + jnp.float32(0.5)) - jnp.float32(0.5)
    src = jnp.maximum(src, jnp.float32(0.0))
    i0 = jnp.minimum(jnp.floor(src).astype(jnp.int32), in_size - 1)
    lam = jnp.clip(src - i0.astype(jnp.float32), 0.0, 1.0)
    i1 = jnp.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, jnp.float32(1.0) - lam, lam


def resize_bilinear_flat(pixels: jax.Array, sizes: jax.Array, size: tuple[int, int]) -> jax.Array:
    """:func:`resize_bilinear` of images stored flat and padded, with sizes known at run time.

    ``pixels`` ``(B, N, C)`` holds image ``b`` of ``sizes[b] = (h, w)`` row-major in its
    first ``h * w`` entries (the rest is padding, never read); returns ``(B, h', w', C)``
    for ``size = (h', w')``. The taps and the order of the sums are those of
    :func:`resize_bilinear`, so the thumbnail is the one the model computes from the
    unpadded image (up to a rounding where XLA fuses the tap arithmetic differently), and
    one compiled function serves every image size.
    """
    out_h, out_w = size

    def one(flat, hw):
        h, w = hw[0], hw[1]
        r0, r1, hw0, hw1 = _linear_taps_traced(h, out_h)
        c0, c1, ww0, ww1 = _linear_taps_traced(w, out_w)
        dtype = flat.dtype
        ww0, ww1 = ww0.astype(dtype)[:, None], ww1.astype(dtype)[:, None]
        hw0, hw1 = hw0.astype(dtype)[:, None, None], hw1.astype(dtype)[:, None, None]

        def along_width(rows):  # rows: (out_h,) source row indices -> (out_h, out_w, C)
            base = (rows * w)[:, None]
            return (
                jnp.take(flat, base + c0[None], axis=0) * ww0
                + jnp.take(flat, base + c1[None], axis=0) * ww1
            )

        # Source sizes equal to the output are the identity, as in resize_bilinear: the
        # taps then fall exactly on the pixels with weights 1 and 0.
        return along_width(r0) * hw0 + along_width(r1) * hw1

    return jax.vmap(one)(pixels, sizes.astype(jnp.int32))


def adaptive_avg_pool(x: jax.Array, out_size: int) -> jax.Array:
    """PyTorch ``AdaptiveAvgPool2d(out_size)`` on channels-last ``(B, H, W, C)``.

    Bin ``i`` covers ``[floor(i * H / n), ceil((i + 1) * H / n))``, as in PyTorch.
    """
    h, w = x.shape[-3], x.shape[-2]

    def bins(n_in):
        return [(i * n_in // out_size, -(-(i + 1) * n_in // out_size)) for i in range(out_size)]

    rows = []
    for h0, h1 in bins(h):
        cols = [x[..., h0:h1, w0:w1, :].mean(axis=(-3, -2)) for w0, w1 in bins(w)]
        rows.append(jnp.stack(cols, axis=-2))
    return jnp.stack(rows, axis=-3)


def flatten_channel_major(x: jax.Array) -> jax.Array:
    """Flatten ``(B, H, W, C)`` in PyTorch's NCHW order: ``(B, C * H * W)``."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class InstanceNorm(nnx.Module):
    """``nn.InstanceNorm2d(C, affine=True)``: per sample and channel over H and W.

    Biased variance, eps 1e-5, no running statistics. Scale starts ~ N(1, 0.02) and the
    bias at 0, the authors' initialisation.
    """

    def __init__(self, num_features: int, *, epsilon: float = 1e-5, rngs: nnx.Rngs):
        self.epsilon = epsilon
        key = rngs.params()
        self.scale = nnx.Param(1.0 + 0.02 * jax.random.normal(key, (num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = x.mean(axis=(-3, -2), keepdims=True)
        var = jnp.square(x - mean).mean(axis=(-3, -2), keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return y * self.scale[...].astype(x.dtype) + self.bias[...].astype(x.dtype)


# ------------------------------------------------------------------ initialisers
# PyTorch's, spelled out: jax's glorot_normal / he_normal are *truncated* normals.


def xavier_normal():
    """``nn.init.xavier_normal_``: N(0, 2 / (fan_in + fan_out)), untruncated."""
    return jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal")


def kaiming_normal_fan_out():
    """``nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")``, untruncated."""
    return jax.nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_default_uniform(fan_in: int):
    """U(+-1/sqrt(fan_in)): PyTorch's default for Linear weights and Conv/Linear biases."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
