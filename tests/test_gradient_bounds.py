"""The per-entry gradient bounds of tests/_sums.py (used for the CUDA kernels): they hold
for the native CPU op against the reference, and they catch a gradient that is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from _sums import absolute_sums, assert_gradients_within, worst_ratio
from test_ops import grads, make_case, requires_native

from ailut_jax import ailut_transform


def _pixels_near_vertex(args, side: float):
    """``args`` with a few pixels per channel just below (side < 0) or above a vertex."""
    img, lut, verts = (np.array(a) for a in args)
    flat = img.reshape(-1, 3)
    for c in range(3):
        flat[10 * c : 10 * c + 4, c] = verts[0, c, 5] + side * 1e-3
    return img, lut, verts


@requires_native
def test_cpu_op_is_within_a_few_ulps_of_the_terms():
    args = make_case(3, (1,), 128, 96, 17, np.float32, 0.0, 1.0)
    cot = np.random.default_rng(1).normal(size=args[0].shape).astype(np.float32)
    sums = absolute_sums(*args, cot)
    native = grads(ailut_transform, args, "ffi")
    reference = grads(ailut_transform, args, "reference")
    assert max(worst_ratio(native, reference, sums, np.float32)) < 8
    assert_gradients_within(native, reference, sums, np.float32, ulps=8)


def test_bounds_reject_gradients_of_pixels_in_the_wrong_cell():
    """Moving 4 pixels per channel across a vertex changes which LUT entries and vertices
    they feed: generous bounds (64 ulps, as for the GPU) must still notice."""
    base = make_case(3, (1,), 64, 48, 17, np.float32, 0.0, 1.0)
    below, above = _pixels_near_vertex(base, -1), _pixels_near_vertex(base, +1)
    cot = np.random.default_rng(1).normal(size=base[0].shape).astype(np.float32)
    sums = absolute_sums(*below, cot)
    right = grads(ailut_transform, below, "reference")
    wrong = grads(ailut_transform, above, "reference")
    for k, name in ((1, "lut"), (2, "vertices")):
        mixed = list(right)
        mixed[k] = wrong[k]
        with pytest.raises(AssertionError, match=f"gradient w.r.t. {name}"):
            assert_gradients_within(mixed, right, sums, np.float32, ulps=64)
