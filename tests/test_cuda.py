"""The CUDA build of the transform: module and targets wherever nvcc exists; numerics
against the reference wherever a GPU is visible (run with AILUT_TEST_GPU=1, as
benchmarks/gpu_check.sh does)."""

from __future__ import annotations

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _sums import absolute_sums, assert_gradients_within
from test_op_inputs import fuzz_case
from test_ops import CASES, PACKED_CASES, assert_matches_reference, grads, make_case

from ailut_jax import ailut_transform, lut_transform
from ailut_jax.ops._native import TARGETS, load_module


def _gpu_devices():
    try:
        return jax.devices("gpu")
    except RuntimeError:
        return []


requires_gpu = pytest.mark.skipif(
    not _gpu_devices() or load_module("CUDA") is None,
    reason="needs an NVIDIA GPU visible to JAX (AILUT_TEST_GPU=1) and the CUDA module",
)


@pytest.mark.skipif(
    shutil.which("nvcc") is None, reason="no nvcc here: the CUDA module is not built"
)
def test_cuda_module_is_built_and_exposes_its_targets():
    module = load_module("CUDA")
    assert module is not None, "nvcc is on PATH, so the build must have made _ailut_cuda"
    assert sorted(module.registrations()) == sorted(TARGETS)
    # Linked against the static CUDA runtime: importable and callable without a driver.
    assert module.cuda_device_count() >= 0


@requires_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,h,w,d", CASES + PACKED_CASES)
def test_cuda_matches_reference(dtype, batch, h, w, d):
    assert jax.default_backend() == "gpu"
    args = make_case(10 + d, batch, h, w, d, dtype)
    with jax.enable_x64(dtype == np.float64):
        assert_matches_reference(ailut_transform, args, dtype)
        assert_matches_reference(lut_transform, args[:2], dtype)


@requires_gpu
@pytest.mark.cuda
def test_cuda_large_image_gradients():
    """Many pixels per LUT cell: atomics in the LUT scatter and block-reduced vertex sums.

    Per entry, the GPU may differ from the reference by rounding of a float32 sum in
    another order: at most 64 ulps of the entry's sum of |terms| (tests/_sums.py; the
    native CPU op measures under 3 ulps against the reference on this case)."""
    args = make_case(3, (2,), 512, 384, 33, np.float32, 0.0, 1.0)
    cot = np.random.default_rng(1).normal(size=args[0].shape).astype(np.float32)
    a = grads(ailut_transform, args, "ffi")
    b = grads(ailut_transform, args, "reference")
    assert_gradients_within(a, b, absolute_sums(*args, cot), np.float32, ulps=64)


@requires_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("seed", range(10))
def test_cuda_fuzz_hostile_values(seed):
    args = fuzz_case(seed, np.float32, (2, 3, 9, 17, 33)[seed % 5])
    a = np.asarray(ailut_transform(*args, impl="ffi"))
    b = np.asarray(ailut_transform(*args, impl="reference"))
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)
    g = jax.grad(lambda *x: jnp.sum(ailut_transform(*x, impl="ffi")), (0, 1, 2))(*args)
    assert [x.shape for x in g] == [x.shape for x in args]
