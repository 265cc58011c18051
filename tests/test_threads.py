"""The threaded CPU kernels at real sizes: against the reference, bit-identical for any
number of threads, with thread-creation failure, concurrent calls and NaN pixels.

The pool's size is changed in-process with the module's ``set_num_threads`` hook; two
subprocesses check the environment variables themselves (``AILUT_NUM_THREADS`` and
the test hook ``AILUT_TEST_FAIL_THREADS_AFTER``). The backward cuts each image into
pixel slices fixed by the problem size (``backward_slices``), so every size used here
is checked to give several slices: the threaded partition and its reduction run.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from ailut_jax import ailut_transform, identity_lut, lut_transform, native_available
from ailut_jax.ops import _native

pytestmark = pytest.mark.skipif(
    not native_available("cpu") or jax.default_backend() != "cpu",
    reason="the native CPU module is not built",
)

ROOT = Path(__file__).resolve().parents[1]
D = 33
# Everything is compared with the reference evaluated in float64 on the same values.
# Forward in float32: the native op and the float32 reference each deviate from that by
# up to ~4e-6 at 1080p (measured), so 1e-5. Gradients: relative to each one's largest
# entry.
FWD_TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
GRAD_RTOL = {np.float32: 2e-5, np.float64: 1e-10}


def cpu_module():
    return _native.load_module("cpu")


@pytest.fixture
def pool_threads():
    """Sets the pool's size for the test and restores the configured size afterwards."""
    module = cpu_module()

    def set_threads(n: int) -> int:
        module.set_num_threads(n)
        return module.num_threads()

    yield set_threads
    module.set_num_threads(0)


def make_case(seed, h, w, d=D, dtype=np.float32, batch=1):
    """Pixels in random cells (slightly outside [0, 1] too), non-uniform vertices."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(-0.05, 1.05, (batch, h, w, 3))
    intervals = rng.uniform(0.2, 1.0, (batch, 3, d - 1))
    cum = np.cumsum(intervals, -1) / intervals.sum(-1, keepdims=True)
    verts = np.concatenate([np.zeros((batch, 3, 1)), cum], -1)
    lut = identity_lut(d, np.float64)[None] + rng.normal(0, 0.1, (batch, 3, d, d, d))
    cot = rng.normal(size=img.shape)
    return tuple(x.astype(dtype) for x in (img, lut, verts, cot))


@functools.cache
def fwd_and_grads(impl):
    """Jitted (out, d_img, d_lut, d_vertices) for a given output cotangent."""

    def f(img, lut, verts, cot):
        out, vjp = jax.vjp(lambda *a: ailut_transform(*a, impl=impl), img, lut, verts)
        return (out, *vjp(cot))

    return jax.jit(f)


def run_native(args):
    return [np.asarray(x) for x in fwd_and_grads("ffi")(*args)]


def assert_bit_identical(got, want, what):
    for name, a, b in zip(("forward", "d_img", "d_lut", "d_vertices"), got, want):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: {name}")


def assert_close_to_reference(got, ref64, dtype):
    np.testing.assert_allclose(got[0], ref64[0], err_msg="forward", **FWD_TOL[dtype])
    for name, a, b in zip(("d_img", "d_lut", "d_vertices"), got[1:], ref64[1:]):
        scale = max(1.0, float(np.abs(b).max()))
        rtol = GRAD_RTOL[dtype]
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=name)


@pytest.fixture(scope="module")
def full_hd():
    """A 1920x1080 case in float32 and float64 (the same values) and the reference's
    forward and gradients evaluated in float64."""
    case32 = make_case(0, 1080, 1920)
    case64 = tuple(x.astype(np.float64) for x in case32)
    with jax.enable_x64(True):
        ref64 = [np.asarray(x) for x in fwd_and_grads("reference")(*case64)]
    return {np.float32: case32, np.float64: case64}, ref64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_hd_matches_reference_and_is_bit_identical_for_any_thread_count(
    full_hd, pool_threads, dtype
):
    cases, ref64 = full_hd
    args = cases[dtype]
    slices, _ = cpu_module().backward_slices(1, 1080 * 1920, D)
    assert slices > 3, "the backward must be split into more slices than threads"
    results = {}
    with jax.enable_x64(dtype == np.float64):
        for n in (1, 2, 3, 0):  # 0: the configured (default) size
            got = pool_threads(n)
            assert got == (n or cpu_module().configured_threads())
            results[n] = run_native(args)
            assert results[n][0].dtype == dtype
    assert_close_to_reference(results[1], ref64, dtype)
    for n in (2, 3, 0):
        assert_bit_identical(results[n], results[1], f"{n} threads vs 1")


def _subprocess_result(tmp_path, name, env_extra, dtype="float64"):
    """Runs this file's __main__ block with extra environment; returns its arrays."""
    out = tmp_path / f"{name}.npz"
    hooks = ("AILUT_NUM_THREADS", "AILUT_TEST_FAIL_THREADS_AFTER")
    env = {k: v for k, v in os.environ.items() if k not in hooks}
    env.update(env_extra)
    subprocess.run(
        [sys.executable, __file__, str(out), dtype], env=env, cwd=ROOT, check=True, timeout=300
    )
    data = np.load(out)
    return int(data["threads"]), [data[k] for k in ("out", "d_img", "d_lut", "d_vertices")]


SUBPROCESS_CASE = dict(seed=3, h=384, w=512)  # 196,608 pixels: 6 slices


def _subprocess_main(path: str, dtype: str) -> None:
    with jax.enable_x64(dtype == "float64"):
        args = make_case(dtype=np.dtype(dtype).type, **SUBPROCESS_CASE)
        got = run_native(args)
    np.savez(
        path,
        threads=cpu_module().num_threads(),
        **dict(zip(("out", "d_img", "d_lut", "d_vertices"), got)),
    )


def test_environment_sizes_the_pool_and_failed_thread_creation_falls_back(tmp_path):
    """AILUT_NUM_THREADS=3 in a fresh process; then thread creation failing after one
    worker (a pool of 2 instead of 8) and after none (everything on the caller). Every
    process returns the same bits as this one's configured pool."""
    assert cpu_module().backward_slices(1, 384 * 512, D)[0] > 3
    with jax.enable_x64(True):
        want = run_native(make_case(dtype=np.float64, **SUBPROCESS_CASE))
    for env, threads in (
        ({"AILUT_NUM_THREADS": "3"}, 3),
        ({"AILUT_NUM_THREADS": "8", "AILUT_TEST_FAIL_THREADS_AFTER": "1"}, 2),
        ({"AILUT_NUM_THREADS": "3", "AILUT_TEST_FAIL_THREADS_AFTER": "0"}, 1),
    ):
        got_threads, got = _subprocess_result(tmp_path, f"run{threads}", env)
        assert got_threads == threads, env
        assert_bit_identical(got, want, str(env))


def test_failed_thread_creation_in_process(pool_threads, monkeypatch):
    args = make_case(4, 256, 384)
    assert pool_threads(1) == 1
    want = run_native(args)
    monkeypatch.setenv("AILUT_TEST_FAIL_THREADS_AFTER", "2")
    assert pool_threads(6) == 3  # two workers started, the third failed
    assert_bit_identical(run_native(args), want, "pool of 3 after a failure")
    monkeypatch.setenv("AILUT_TEST_FAIL_THREADS_AFTER", "0")
    assert pool_threads(4) == 1
    assert_bit_identical(run_native(args), want, "no worker could start")


def test_concurrent_calls_from_python_threads(pool_threads):
    """Several calls at once share the pool; each returns its single-call result."""
    pool_threads(3)
    cases = [make_case(10 + k, 256, 320) for k in range(4)]
    fn = fwd_and_grads("ffi")
    want = [run_native(c) for c in cases]
    got = [None] * len(cases)
    errors = []

    def worker(k):
        try:
            for _ in range(3):
                got[k] = [np.asarray(x) for x in fn(*cases[k])]
        except Exception as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k in range(len(cases)):
        assert_bit_identical(got[k], want[k], f"call {k}")


def test_concurrent_calls_from_pmap_devices(pool_threads):
    """Two XLA CPU devices run the op at the same time, each on its own image."""
    assert jax.local_device_count() >= 2, "conftest forces two CPU devices"
    pool_threads(3)
    img, lut, verts, cot = make_case(20, 256, 320, batch=2)
    stacked = tuple(x[:, None] for x in (img, lut, verts, cot))
    got = [np.asarray(x) for x in jax.pmap(fwd_and_grads("ffi"))(*stacked)]
    for k in range(2):
        want = run_native(tuple(x[k : k + 1] for x in (img, lut, verts, cot)))
        assert_bit_identical([g[k] for g in got], want, f"device {k}")


# ------------------------------------------------------------------ NaN pixels


def _nan_case(seed, h, w, d, sorted_vertices):
    img, lut, verts, cot = make_case(seed, h, w, d, np.float64)
    if not sorted_vertices:
        verts = np.random.default_rng(seed).permutation(verts, axis=-1)
    nan_px = np.random.default_rng(seed + 1).random(img.shape[:-1]) < 0.01
    img[..., 0][nan_px] = np.nan  # red only: NaN corners are then at the last red cell
    return img, lut, verts, cot


@pytest.mark.fuzz
@pytest.mark.parametrize("h,w", [(16, 20), (256, 384)], ids=["one-slice", "threaded"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_pixels_land_in_the_last_cell(pool_threads, dtype, h, w):
    """A NaN pixel falls in the last cell (D-2), as in the authors' search: its NaN
    gradients reach exactly the reference's LUT entries and vertices."""
    pool_threads(3)
    d = 9
    for sorted_vertices in (True, False):
        case = tuple(x.astype(dtype) for x in _nan_case(5, h, w, d, sorted_vertices))
        with jax.enable_x64(dtype == np.float64):
            got = run_native(case)
            ref = [np.asarray(x) for x in fwd_and_grads("reference")(*case)]
            u_got = [np.asarray(x) for x in _lut_fwd_and_grads("ffi")(case[0], case[1], case[3])]
            u_ref = [
                np.asarray(x) for x in _lut_fwd_and_grads("reference")(case[0], case[1], case[3])
            ]
        for name, a, b in [
            *zip(("forward", "d_img", "d_lut", "d_vertices"), got, ref),
            *zip(("uniform forward", "uniform d_img", "uniform d_lut"), u_got, u_ref),
        ]:
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
            scale = max(1.0, float(np.nanmax(np.abs(b))))
            np.testing.assert_allclose(
                a, b, rtol=1e-4, atol=1e-4 * scale, equal_nan=True, err_msg=name
            )
        if sorted_vertices:
            # The NaN red values reach only the corners of the last red cell (the LUT's
            # last axis is red) and the last two red vertices.
            for d_lut in (got[2], u_got[2]):
                assert np.isnan(d_lut[..., d - 2 :]).any()
                assert not np.isnan(d_lut[..., : d - 2]).any()
            assert np.isnan(got[3][:, 0, d - 2 :]).all()
            assert not np.isnan(got[3][:, 0, : d - 2]).any()


@functools.cache
def _lut_fwd_and_grads(impl):
    def f(img, lut, cot):
        out, vjp = jax.vjp(lambda *a: lut_transform(*a, impl=impl), img, lut)
        return (out, *vjp(cot))

    return jax.jit(f)


@pytest.mark.fuzz
@pytest.mark.parametrize("seed", range(3))
def test_fuzz_hostile_values_threaded(pool_threads, seed):
    """Hostile pixel and vertex values on an image cut into many backward slices, with a
    pool of 3: in bounds (checked under ASan/UBSan by .ci/sanitize), the reference's
    forward and gradients (where defined), and bit-identical to one thread."""
    from test_op_inputs import assert_hostile_grads_match, fuzz_case

    d = (5, 9, 17)[seed]
    args = fuzz_case(200 + seed, np.float32, d, h=256, w=512)
    assert cpu_module().backward_slices(2, 256 * 512, d)[0] >= 4
    cot = np.random.default_rng(seed).normal(size=args[0].shape).astype(np.float32)
    pool_threads(1)
    one = run_native((*args, cot))
    pool_threads(3)
    three = run_native((*args, cot))
    assert_bit_identical(three, one, "3 threads vs 1")
    ref = np.asarray(ailut_transform(*args, impl="reference"))
    np.testing.assert_array_equal(np.isnan(three[0]), np.isnan(ref))
    np.testing.assert_allclose(three[0], ref, rtol=1e-6, equal_nan=True)
    assert_hostile_grads_match(ailut_transform, args, np.float32, cot)


if __name__ == "__main__":
    _subprocess_main(*sys.argv[1:])
