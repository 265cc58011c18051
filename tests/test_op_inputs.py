"""Bad input to the transforms: clear errors before XLA, and no unsafe memory access.

The fuzz cases (marker ``fuzz``) are also run by CI against a CPU module built with
AddressSanitizer + UBSan (see .ci/sanitize), where any out-of-bounds access aborts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ailut_jax import ailut_transform, identity_lut, lut_transform, native_available
from ailut_jax.ops import _native

requires_native = pytest.mark.skipif(
    not native_available("cpu"), reason="the native CPU module is not built"
)

F32 = np.float32


def ok_args(batch=(2,), h=4, w=5, d=9, dtype=F32):
    img = np.zeros(batch + (h, w, 3), dtype)
    lut = np.zeros(batch + (3, d, d, d), dtype)
    verts = np.broadcast_to(np.linspace(0, 1, d, dtype=dtype), batch + (3, d)).copy()
    return img, lut, verts


BAD = [
    # (description, mutate(img, lut, verts) -> args, words the message must contain)
    ("img rank", lambda i, l, v: (i[0, 0], l, v), ["img", "(5, 3)"]),
    ("img channels", lambda i, l, v: (i[..., :2], l, v), ["img", "(2, 4, 5, 2)"]),
    ("lut channels", lambda i, l, v: (i, l[:, :2], v), ["lut", "(2, 2, 9, 9, 9)"]),
    ("lut not cubic", lambda i, l, v: (i, l[..., :8], v), ["lut", "(2, 3, 9, 9, 8)"]),
    ("D < 2", lambda i, l, v: (i, l[..., :1, :1, :1], v[..., :1]), ["D >= 2"]),
    (
        "batch mismatch lut",
        lambda i, l, v: (i, l[:1], v),
        ["leading", "img (2, 4, 5, 3)", "lut (1, 3, 9, 9, 9)"],
    ),
    ("batch mismatch vertices", lambda i, l, v: (i, l, v[:1]), ["vertices", "(1, 3, 9)"]),
    ("vertices rank", lambda i, l, v: (i, l, v[:, 0]), ["vertices", "(2, 9)"]),
    ("vertices rows", lambda i, l, v: (i, l, v[:, :2]), ["vertices", "(2, 2, 9)"]),
    ("D mismatch", lambda i, l, v: (i, l, v[..., :8]), ["D=9", "D=8"]),
    ("integer img", lambda i, l, v: (i.astype(np.uint8), l, v), ["img", "uint8"]),
    ("integer lut", lambda i, l, v: (i, l.astype(np.int32), v), ["lut", "int32"]),
    ("mixed dtypes", lambda i, l, v: (i, l.astype(np.float64), v), ["float32", "float64"]),
    ("empty image", lambda i, l, v: (i[:, :0], l, v), ["pixel"]),
    ("not an array", lambda i, l, v: ([[[0.0, 0.0, 0.0]]], l, v), ["img", "array"]),
]


@pytest.mark.parametrize("impl", ["reference", pytest.param("ffi", marks=requires_native)])
@pytest.mark.parametrize("desc,mutate,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_value_error_naming_it(impl, desc, mutate, words):
    with jax.enable_x64(True):
        args = mutate(*ok_args())
        with pytest.raises(ValueError) as err:
            ailut_transform(*args, impl=impl)
    for word in words:
        assert word in str(err.value), (desc, str(err.value))


@pytest.mark.parametrize("impl", ["reference", pytest.param("ffi", marks=requires_native)])
def test_bad_input_lut_transform(impl):
    img, lut, _ = ok_args()
    with pytest.raises(ValueError, match=r"lut.*\(2, 3, 9, 9\)"):
        lut_transform(img, lut[..., 0], impl=impl)
    with pytest.raises(ValueError, match="img and lut leading"):
        lut_transform(img, lut[:1], impl=impl)


def test_unknown_impl():
    with pytest.raises(ValueError, match="impl must be one of"):
        ailut_transform(*ok_args(), impl="cuda")


@requires_native
def test_native_handler_rejects_bad_shapes_itself():
    """Called directly (bypassing the Python checks), the handler returns an FFI error."""
    assert _native.native_available("cpu")
    img, lut, verts = ok_args()
    call = jax.ffi.ffi_call(
        "ailut_forward", jax.ShapeDtypeStruct(img.shape, img.dtype), vmap_method="broadcast_all"
    )
    with pytest.raises(Exception, match=r"ailut_forward: .*vertices \(2, 3, 8\)"):
        jax.block_until_ready(call(img, lut, verts[..., :8]))
    with pytest.raises(Exception, match=r"ailut_forward: .*lut"):
        jax.block_until_ready(call(img, lut[:, :, :4], verts))
    # Output of the wrong shape.
    bad_out = jax.ffi.ffi_call(
        "ailut_forward", jax.ShapeDtypeStruct((2, 4, 4, 3), img.dtype), vmap_method="broadcast_all"
    )
    with pytest.raises(Exception, match=r"output out"):
        jax.block_until_ready(bad_out(img, lut, verts))


# ------------------------------------------------------------------ fuzz

SPECIALS = np.array(
    [np.nan, np.inf, -np.inf, -1e30, 1e30, -1.0, 2.0, 0.0, 1.0, -0.0, 1e-45, 0.5], np.float64
)


def fuzz_case(seed, dtype, d, h=5, w=7):
    rng = np.random.default_rng(seed)
    b = 2
    img = rng.uniform(-0.5, 1.5, (b, h, w, 3))
    mask = rng.random(img.shape) < 0.3
    img[mask] = rng.choice(SPECIALS, mask.sum())
    kind = seed % 5
    if kind == 0:  # unsorted vertices
        verts = rng.uniform(-0.2, 1.2, (b, 3, d))
    elif kind == 1:  # duplicates (zero-width cells)
        verts = np.sort(rng.choice([0.0, 0.25, 0.5, 1.0], (b, 3, d)), -1)
    elif kind == 2:  # NaN / inf vertices
        verts = np.sort(rng.uniform(0, 1, (b, 3, d)), -1)
        verts[rng.random(verts.shape) < 0.3] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind == 3:  # all-equal vertices
        verts = np.full((b, 3, d), rng.choice(SPECIALS))
    else:  # sorted but outside [0, 1]
        verts = np.sort(rng.uniform(-3, 3, (b, 3, d)), -1)
    lut = rng.normal(size=(b, 3, d, d, d))
    lut[rng.random(lut.shape) < 0.01] = np.nan
    return tuple(x.astype(dtype) for x in (img, lut, verts))


# Gradients on hostile values, native vs reference: where the reference's entry is
# finite the native one is too and agrees to this relative tolerance; where the
# reference's is NaN or inf (inf - inf, 0 * inf, overflow: undefined) the native one is
# NaN or inf as well. Summation order is free to turn an inf into a NaN.
HOSTILE_GRAD_RTOL = {np.float32: 2e-5, np.float64: 1e-10}


def assert_hostile_grads_match(fn, args, dtype, cot):
    """Gradients of sum(fn(*args) * cot), native against reference (see above)."""
    argnums = tuple(range(len(args)))
    got, want = (
        jax.grad(lambda *x, impl=impl: jnp.sum(fn(*x, impl=impl) * cot), argnums)(*args)
        for impl in ("ffi", "reference")
    )
    for name, a, b in zip(("img", "lut", "vertices"), got, want):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        defined = np.isfinite(b)
        np.testing.assert_array_equal(np.isfinite(a), defined, err_msg=f"{name}: finite entries")
        if defined.any():
            rtol = HOSTILE_GRAD_RTOL[dtype]
            scale = max(1.0, float(np.abs(b[defined]).max()))
            np.testing.assert_allclose(
                a[defined], b[defined], rtol=rtol, atol=rtol * scale, err_msg=name
            )


@requires_native
@pytest.mark.fuzz
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(10))
def test_fuzz_hostile_values(seed, dtype):
    """NaN/inf/huge pixels, unsorted/duplicate/NaN vertices: the native op stays in
    bounds, returns the reference's forward exactly (NaN where it has NaN) and the
    reference's gradients wherever those are defined."""
    d = (2, 3, 9, 17, 33)[seed % 5]
    args = fuzz_case(seed, dtype, d)
    with jax.enable_x64(dtype == np.float64):
        a = np.asarray(ailut_transform(*args, impl="ffi"))
        b = np.asarray(ailut_transform(*args, impl="reference"))
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
        np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)
        u_a = np.asarray(lut_transform(args[0], args[1], impl="ffi"))
        u_b = np.asarray(lut_transform(args[0], args[1], impl="reference"))
        np.testing.assert_allclose(u_a, u_b, rtol=1e-6, equal_nan=True)

        cot = np.ones(args[0].shape, dtype)
        assert_hostile_grads_match(ailut_transform, args, dtype, cot)
        assert_hostile_grads_match(lut_transform, args[:2], dtype, cot)


@requires_native
@pytest.mark.fuzz
@pytest.mark.parametrize("seed", range(5))
def test_fuzz_hostile_values_large_images(seed):
    """The same hostile values on images big enough for the interleaved-LUT CPU path."""
    d = (2, 3, 5, 9, 9)[seed]
    args = fuzz_case(100 + seed, np.float32, d, h=40, w=40)
    a = np.asarray(ailut_transform(*args, impl="ffi"))
    b = np.asarray(ailut_transform(*args, impl="reference"))
    np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)
    cot = np.ones(args[0].shape, np.float32)
    assert_hostile_grads_match(ailut_transform, args, np.float32, cot)
    assert_hostile_grads_match(lut_transform, args[:2], np.float32, cot)


@requires_native
@pytest.mark.fuzz
def test_fuzz_finite_inputs_give_finite_gradients():
    rng = np.random.default_rng(0)
    d = 9
    img = rng.uniform(-1, 2, (1, 16, 16, 3)).astype(F32)
    verts = np.sort(rng.uniform(0, 1, (1, 3, d)), -1).astype(F32)
    verts[..., 3] = verts[..., 4]  # a duplicate vertex: a zero-width cell
    lut = (identity_lut(d)[None] + rng.normal(0, 0.1, (1, 3, d, d, d))).astype(F32)
    g = jax.grad(lambda *x: jnp.sum(ailut_transform(*x, impl="ffi")), (0, 1, 2))(img, lut, verts)
    for x in g:
        assert np.all(np.isfinite(np.asarray(x)))
