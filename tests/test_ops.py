"""The AiLUT / 3D-LUT transforms: native FFI kernels against the pure-JAX reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from ailut_jax import ailut_transform, identity_lut, lut_transform, native_available
from ailut_jax.ops import reference

requires_native = pytest.mark.skipif(
    not native_available("cpu"), reason="the native CPU module is not built"
)

# Forward: native and reference run the same float operations (bit-identical in
# practice); gradients sum over pixels in a different order (float64 accumulators in
# the native op), so they agree to rounding of the accumulated sums.
FWD_TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
GRAD_TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-10)}


def random_vertices(rng, batch, d, dtype, min_interval=0.0):
    intervals = rng.uniform(0.2, 1.0, batch + (3, d - 1)) + min_interval
    cum = np.cumsum(intervals, -1) / intervals.sum(-1, keepdims=True)
    return np.concatenate([np.zeros(batch + (3, 1)), cum], -1).astype(dtype)


def random_lut(rng, batch, d, dtype, noise=0.1):
    lut = np.broadcast_to(identity_lut(d, np.float64), batch + (3, d, d, d))
    return (lut + rng.normal(0, noise, lut.shape)).astype(dtype)


def make_case(seed, batch, h, w, d, dtype, lo=-0.05, hi=1.05):
    rng = np.random.default_rng(seed)
    img = rng.uniform(lo, hi, batch + (h, w, 3)).astype(dtype)
    return img, random_lut(rng, batch, d, dtype), random_vertices(rng, batch, d, dtype)


def grads(fn, args, impl, seed=1):
    """Gradients of sum(out * cot) w.r.t. every argument, for a fixed random cotangent."""
    out_shape = args[0].shape
    cot = np.random.default_rng(seed).normal(size=out_shape).astype(args[0].dtype)
    loss = lambda *a: jnp.sum(fn(*a, impl=impl) * cot)  # noqa: E731
    return jax.grad(loss, argnums=tuple(range(len(args))))(*args)


def assert_close(a, b, tol, what=""):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), err_msg=what, **tol)


def assert_matches_reference(fn, args, dtype):
    """Native forward and all gradients of ``fn`` (a transform) against the reference."""
    out = fn(*args, impl="ffi")
    assert out.shape == args[0].shape and out.dtype == dtype
    assert_close(out, fn(*args, impl="reference"), FWD_TOL[dtype], "forward")
    assert_grads_close(grads(fn, args, "ffi"), grads(fn, args, "reference"), dtype)


def assert_grads_close(ga, gb, dtype):
    for name, a, b in zip(("img", "lut", "vertices"), ga, gb):
        scale = max(1.0, float(np.abs(np.asarray(b)).max()))
        tol = {k: v * scale if k == "atol" else v for k, v in GRAD_TOL[dtype].items()}
        assert_close(a, b, tol, f"gradient w.r.t. {name}")


# ------------------------------------------------------------------ reference semantics


def test_identity_lut_and_uniform_vertices_reproduce_the_input():
    img, _, _ = make_case(0, (2,), 6, 5, 9, np.float64, 0.0, 1.0)
    with jax.enable_x64(True):
        lut = np.broadcast_to(identity_lut(9, np.float64), (2, 3, 9, 9, 9))
        verts = np.broadcast_to(np.asarray(reference.uniform_vertices(9, jnp.float64)), (2, 3, 9))
        for impl in ("reference", "ffi") if native_available("cpu") else ("reference",):
            np.testing.assert_allclose(ailut_transform(img, lut, verts, impl=impl), img, atol=1e-12)
            np.testing.assert_allclose(lut_transform(img, lut, impl=impl), img, atol=1e-12)


def test_lut_layout_last_axis_is_red():
    # A LUT whose output is constant per lattice index along one axis shows which input
    # channel drives which axis: lut[c, b, g, r].
    d = 5
    grid = np.arange(d, dtype=np.float64) / (d - 1)
    lut = np.zeros((3, d, d, d))
    lut[0] = grid[None, None, :]  # varies with the last axis -> must follow red
    lut[1] = grid[None, :, None]  # middle axis -> green
    lut[2] = grid[:, None, None]  # first axis -> blue
    img = np.array([[[0.25, 0.5, 1.0]]])
    out = np.asarray(
        ailut_transform(
            img.astype(np.float32),
            lut.astype(np.float32),
            np.asarray(reference.uniform_vertices(d)),
            impl="reference",
        )
    )
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_cell_search_semantics():
    v = jnp.asarray([0.0, 0.25, 0.5, 0.75, 1.0], jnp.float32)
    x = jnp.asarray([-1.0, 0.0, 0.1, 0.25, 0.3, 0.75, 1.0, 2.0, jnp.nan], jnp.float32)
    # x == v[i] lands in cell i-1 (fraction 1); x <= v[0] in cell 0; clamp to D-2; NaN in
    # the last cell, D-2, as in the authors' search (it moves right while !(v[mid] >= x)).
    np.testing.assert_array_equal(reference.find_cell(v, x), [0, 0, 0, 0, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(reference.uniform_cell(5, x), [0, 0, 0, 0, 1, 2, 3, 3, 3])


def test_fraction_is_not_clamped_outside_the_lattice():
    # Outside [0, 1] the edge cell extrapolates linearly: with an identity LUT the
    # output equals the input even at -0.5 and 1.5.
    d = 3
    img = np.array([[[-0.5, 1.5, 0.5]]], np.float32)
    out = ailut_transform(
        img, identity_lut(d), np.asarray(reference.uniform_vertices(d)), impl="reference"
    )
    np.testing.assert_allclose(out, img, atol=1e-6)


def test_reference_matches_a_direct_loop_implementation():
    """The reference against a scalar transcription of the authors' per-pixel loop."""
    d = 5
    img, lut, verts = make_case(3, (), 3, 4, d, np.float64)

    def loop(img, lut, verts):
        out = np.zeros_like(img)
        for y in range(img.shape[0]):
            for x in range(img.shape[1]):
                ks, ts = [], []
                for ch in range(3):
                    v, val = verts[ch], img[y, x, ch]
                    lb = next((i for i in range(d) if v[i] >= val), d)
                    k = min(max(lb - 1, 0), d - 2)
                    ks.append(k)
                    ts.append((val - v[k]) / (v[k + 1] - v[k] + 1e-10))
                for c in range(3):
                    acc = 0.0
                    for j in (0, 1):
                        for i in (0, 1):
                            for h in (0, 1):
                                wgt = (
                                    (ts[0] if h else 1 - ts[0])
                                    * (ts[1] if i else 1 - ts[1])
                                    * (ts[2] if j else 1 - ts[2])
                                )
                                acc += wgt * lut[c, ks[2] + j, ks[1] + i, ks[0] + h]
                    out[y, x, c] = acc
        return out

    with jax.enable_x64(True):
        got = ailut_transform(img, lut, verts, impl="reference")
    np.testing.assert_allclose(got, loop(img, lut, verts), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ native vs reference

CASES = [
    # (batch, h, w, d)
    ((), 7, 5, 2),
    ((1,), 16, 12, 9),
    ((2,), 9, 11, 17),
    ((3,), 8, 8, 33),
    ((2, 2), 5, 6, 9),
]


@requires_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,h,w,d", CASES)
def test_ailut_native_matches_reference(dtype, batch, h, w, d):
    args = make_case(10 + d, batch, h, w, d, dtype)
    with jax.enable_x64(dtype == np.float64):
        assert_matches_reference(ailut_transform, args, dtype)


@requires_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,h,w,d", CASES)
def test_lut_native_matches_reference(dtype, batch, h, w, d):
    img, lut, _ = make_case(20 + d, batch, h, w, d, dtype)
    with jax.enable_x64(dtype == np.float64):
        assert_matches_reference(lut_transform, (img, lut), dtype)


# The CPU kernels switch to an interleaved-LUT path once an image has at least 2 * D^3
# pixels; these sizes sit on that side of the switch (CASES above on the other).
PACKED_CASES = [((2,), 48, 40, 9), ((1,), 100, 100, 17)]


@requires_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch,h,w,d", PACKED_CASES)
def test_large_images_match_reference(dtype, batch, h, w, d):
    assert h * w >= 2 * d**3
    args = make_case(30 + d, batch, h, w, d, dtype)
    with jax.enable_x64(dtype == np.float64):
        assert_matches_reference(ailut_transform, args, dtype)
        assert_matches_reference(lut_transform, args[:2], dtype)


@requires_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lut_transform_equals_ailut_with_uniform_vertices(dtype):
    img, lut, _ = make_case(5, (2,), 10, 9, 17, dtype)
    with jax.enable_x64(dtype == np.float64):
        verts = np.broadcast_to(np.asarray(reference.uniform_vertices(17, dtype)), (2, 3, 17))
        for impl in ("ffi", "reference"):
            assert_close(
                lut_transform(img, lut, impl=impl),
                ailut_transform(img, lut, verts, impl=impl),
                FWD_TOL[dtype],
            )


@requires_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_pixels_exactly_on_vertices_and_bounds(dtype):
    """Pixels at exactly 0, 1 and on interior vertices; both ops pick the same cells."""
    d = 9
    rng = np.random.default_rng(7)
    verts = random_vertices(rng, (1,), d, dtype)
    lut = random_lut(rng, (1,), d, dtype)
    vals = np.concatenate([verts[0].reshape(-1), [0.0, 1.0, 0.0, 1.0]]).astype(dtype)
    img = np.stack(np.meshgrid(vals, vals, indexing="ij"), -1)  # (n, n, 2)
    img = np.concatenate([img, img[..., :1][::-1]], -1)[None].astype(dtype)
    with jax.enable_x64(dtype == np.float64):
        assert_matches_reference(ailut_transform, (img, lut, verts), dtype)
        # Uniform grid: values i/(D-1) sit exactly on the grid.
        grid = np.arange(d, dtype=dtype) / dtype(d - 1)
        img_u = np.stack(
            [*np.meshgrid(grid, grid[::-1], indexing="ij"), np.full((d, d), grid[3])], -1
        )[None].astype(dtype)
        assert_matches_reference(lut_transform, (img_u, lut), dtype)


@requires_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bucket_edges_and_vertices_inside_buckets(dtype):
    """The CPU op's search for sorted rows starts from a table of 1024 buckets of [0, 1)
    and compares pixels with vertices only in buckets that hold one. Vertices on bucket
    edges, inside buckets, three in one bucket and a duplicate; pixels on every bucket
    edge, on every vertex and one ulp either side of each: the cells, outputs and
    gradients are the reference's."""
    buckets = 1024
    row = np.sort(
        np.concatenate(
            [
                [0.0, 1.0],
                np.array([3, 100, 511, 512, 900]) / buckets,  # on bucket edges
                (np.array([1, 7, 200, 700, 1023]) + 0.5) / buckets,  # inside buckets
                (300 + np.array([0.1, 0.3, 0.6])) / buckets,  # three in one bucket
                [40.25 / buckets] * 2,  # a duplicate
            ]
        )
    )
    d = row.size
    verts = np.stack([row, row, np.linspace(0.0, 1.0, d)])[None].astype(dtype)
    lut = random_lut(np.random.default_rng(12), (1,), d, dtype)
    edges = (np.arange(buckets + 1) / buckets).astype(dtype)
    pts = np.concatenate([edges, row.astype(dtype)])
    lo, hi = dtype(-1), dtype(2)
    vals = np.concatenate([pts, np.nextafter(pts, lo), np.nextafter(pts, hi)]).astype(dtype)
    n = vals.size
    w = 8 * (n // 48) + 3  # rows end off an 8-pixel boundary
    vals = np.resize(vals, ((n + w - 1) // w) * w)
    img = np.stack([vals, vals[::-1], np.roll(vals, n // 3)], -1).reshape(1, -1, w, 3)
    with jax.enable_x64(dtype == np.float64):
        assert_matches_reference(ailut_transform, (img, lut, verts), dtype)


@requires_native
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_intervals(dtype):
    """The smallest cells: 1e-9 wide in float64, one ulp wide in float32 (where v + 1e-9
    rounds back to v). The eps in the fraction keeps everything finite, and pixels in
    the tiny cell give the reference's values and gradients."""
    d = 9
    rng = np.random.default_rng(11)
    verts = random_vertices(rng, (2,), d, dtype)
    lo = verts[:, :, 3]
    if dtype == np.float64:
        verts[:, :, 4] = lo + 1e-9
        inside = lo + 5e-10
    else:
        verts[:, :, 4] = np.nextafter(lo, dtype(np.inf))  # no float32 lies in between
        inside = verts[:, :, 4]  # on the upper vertex: the tiny cell, fraction ~1
    width = verts[:, :, 4] - verts[:, :, 3]
    if dtype == np.float64:
        np.testing.assert_allclose(width, 1e-9, rtol=1e-6)
    else:
        np.testing.assert_array_equal(width, np.spacing(lo))  # one ulp, < 6e-8
    img = rng.uniform(0, 1, (2, 6, 6, 3)).astype(dtype)
    img[:, 1, 0, :] = inside
    img[:, 2, 0, :] = lo  # on the lower vertex: the cell below, fraction 1
    cells = [
        np.asarray(reference.find_cell(verts[b, c], img[b, 1, 0, c]))
        for b in (0, 1)
        for c in range(3)
    ]
    assert cells == [3] * 6, "the test pixels must fall in the tiny cell"
    lut = random_lut(rng, (2,), d, dtype)
    with jax.enable_x64(dtype == np.float64):
        args = (img, lut, verts)
        a = ailut_transform(*args, impl="ffi")
        assert np.all(np.isfinite(np.asarray(a)))
        assert_close(a, ailut_transform(*args, impl="reference"), FWD_TOL[dtype])
        ga = grads(ailut_transform, args, "ffi")
        gb = grads(ailut_transform, args, "reference")
        for x in ga:
            assert np.all(np.isfinite(np.asarray(x)))
        # Gradients through the tiny cell are ~1/width large: compare relative to scale.
        assert np.abs(np.asarray(gb[0])).max() > 1e6
        for name, x, y in zip(("img", "lut", "vertices"), ga, gb):
            y = np.asarray(y)
            np.testing.assert_allclose(
                x,
                y,
                rtol=1e-4 if dtype == np.float32 else 1e-9,
                atol=1e-5 * max(1.0, np.abs(y).max()),
                err_msg=name,
            )


# ------------------------------------------------------------------ gradient checks


@pytest.mark.parametrize("impl", ["reference", pytest.param("ffi", marks=requires_native)])
def test_check_grads_ailut(impl):
    """Numerical vs analytic VJP in float64, pixels kept away from vertices (kinks)."""
    d = 5
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        verts = np.broadcast_to(np.linspace(0, 1, d), (1, 3, d)).copy()
        verts[..., 1:-1] += rng.uniform(-0.05, 0.05, (1, 3, d - 2))
        # Pixels in the middle of cells: at least 0.02 from every vertex.
        # Each pixel channel c sits at 20-80% of a random cell of vertex row c.
        cells = rng.integers(0, d - 1, (1, 4, 3, 3))
        rows = np.arange(3)
        lo = verts[0][rows, cells]
        hi = verts[0][rows, cells + 1]
        img = lo + rng.uniform(0.2, 0.8, cells.shape) * (hi - lo)
        lut = random_lut(rng, (1,), d, np.float64)
        f = lambda i, l, v: ailut_transform(i, l, v, impl=impl)  # noqa: E731
        check_grads(f, (img, lut, verts), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["reference", pytest.param("ffi", marks=requires_native)])
def test_check_grads_lut(impl):
    d = 5
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        cells = rng.integers(0, d - 1, (1, 4, 3, 3))
        img = (cells + rng.uniform(0.2, 0.8, cells.shape)) / (d - 1)
        lut = random_lut(rng, (1,), d, np.float64)
        f = lambda i, l: lut_transform(i, l, impl=impl)  # noqa: E731
        check_grads(f, (img, lut), order=1, modes=("rev",), eps=1e-6, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ transformations


@requires_native
def test_jit_vmap_grad_compose():
    img, lut, verts = make_case(4, (2, 3), 6, 5, 9, np.float32)  # two leading dims

    def loss(i, l, v, impl):
        return jnp.mean(ailut_transform(i, l, v, impl=impl) ** 2)

    outs = {}
    for impl in ("ffi", "reference"):
        per_example = jax.jit(
            jax.vmap(
                jax.vmap(jax.grad(loss, argnums=(0, 1, 2)), in_axes=(0, 0, 0, None)),
                in_axes=(0, 0, 0, None),
            ),
            static_argnums=3,
        )
        outs[impl] = per_example(img, lut, verts, impl)
    assert_grads_close(outs["ffi"], outs["reference"], np.float32)
    # vmap over an unbatched call equals the batched call.
    single = jax.vmap(lambda i, l, v: ailut_transform(i, l, v, impl="ffi"))
    assert_close(
        single(img[0], lut[0], verts[0]),
        ailut_transform(img[0], lut[0], verts[0]),
        FWD_TOL[np.float32],
    )
    # vmap with one argument shared (not batched) across the mapped axis.
    shared = jax.vmap(lambda i: ailut_transform(i, lut[0, 0], verts[0, 0], impl="ffi"))(img[0])
    ref = jax.vmap(lambda i: ailut_transform(i, lut[0, 0], verts[0, 0], impl="reference"))(img[0])
    assert_close(shared, ref, FWD_TOL[np.float32])


@requires_native
def test_pmap_two_cpu_devices():
    assert jax.local_device_count() >= 2, "conftest forces two CPU devices"
    img, lut, verts = make_case(6, (2,), 8, 7, 9, np.float32)

    def step(i, l, v):
        g = jax.grad(lambda l: jnp.mean(ailut_transform(i, l, v, impl="ffi") ** 2))(l)
        return jax.lax.pmean(g, "dev"), ailut_transform(i, l, v, impl="ffi")

    # One batch element per device, each with a leading batch dim of 1.
    g, out = jax.pmap(step, axis_name="dev")(img[:, None], lut[:, None], verts[:, None])
    assert_close(out[:, 0], ailut_transform(img, lut, verts, impl="reference"), FWD_TOL[np.float32])
    # After pmean every device holds the same gradient: the mean of the per-device ones.
    np.testing.assert_array_equal(np.asarray(g[0]), np.asarray(g[1]))
    per_device = [
        jax.grad(
            lambda l, k=k: jnp.mean(ailut_transform(img[k], l, verts[k], impl="reference") ** 2)
        )(lut[k])
        for k in range(2)
    ]
    assert_close(g[0, 0], np.mean(per_device, axis=0), GRAD_TOL[np.float32])


@requires_native
def test_batch_sharded_call_has_no_all_gather():
    """Registered batch-partitionable: each device runs the kernel on its own slice."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    mesh = Mesh(np.array(jax.devices()[:2]), ("batch",))
    sharded = NamedSharding(mesh, P("batch"))
    img, lut, verts = make_case(8, (2,), 8, 8, 9, np.float32)
    args = tuple(jax.device_put(x, sharded) for x in (img, lut, verts))

    def check_hlo(fn, target):
        hlo = fn.lower(*args).compile().as_text()
        assert "all-gather" not in hlo
        call = next(line for line in hlo.splitlines() if f'custom_call_target="{target}"' in line)
        assert "f32[1,8,8,3]" in call  # per-device batch of 1, not the global batch of 2
        return fn(*args)

    fwd = jax.jit(lambda i, l, v: ailut_transform(i, l, v, impl="ffi"), out_shardings=sharded)
    out = check_hlo(fwd, "ailut_forward")
    assert_close(out, ailut_transform(img, lut, verts, impl="reference"), FWD_TOL[np.float32])

    # Sharding propagation does not see through the opaque custom call, so the loss
    # states that the output stays batch-sharded (without it XLA all-gathers the
    # forward output before the elementwise loss and slices it again).
    def grad_fn(impl, **jit_kwargs):
        def loss(i, l, v):
            out = ailut_transform(i, l, v, impl=impl)
            if impl == "ffi":
                out = jax.lax.with_sharding_constraint(out, sharded)
            return jnp.sum(out**2)

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2)), **jit_kwargs)

    got = check_hlo(grad_fn("ffi", out_shardings=(sharded,) * 3), "ailut_backward")
    assert_grads_close(got, grad_fn("reference")(img, lut, verts), np.float32)


# ------------------------------------------------------------------ determinism


@requires_native
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CUDA kernels sum with atomics")
def test_native_backward_is_bit_identical_across_runs():
    # Large enough that the CPU kernel splits the pixels across threads.
    img, lut, verts = make_case(9, (1,), 320, 320, 33, np.float32, 0.0, 1.0)
    f = jax.jit(
        jax.grad(
            lambda i, l, v: jnp.sum(ailut_transform(i, l, v, impl="ffi") ** 2), argnums=(0, 1, 2)
        )
    )
    first = [np.asarray(x) for x in f(img, lut, verts)]
    for _ in range(3):
        again = [np.asarray(x) for x in f(img, lut, verts)]
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a, b)
