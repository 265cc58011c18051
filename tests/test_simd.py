"""The CPU SIMD paths (AVX2, 8 pixels per step; AVX-512, 16) against the scalar path,
forward and backward.

Subprocesses run this file's __main__ block on the same cases, one per path:
``AILUT_SIMD=avx2``, the default (AVX-512 where the CPU has it) and ``AILUT_SIMD=off``;
each computes the forward output and, for a fixed cotangent, the gradients for the
image, the LUT and the vertices. Every value that is not NaN must be bit-identical to
the scalar path's (compared as integers, so signed zeros count too) and NaN must come out
at exactly the same places. The sign and payload bits of a NaN are not compared: IEEE
754 leaves them open, x86 propagates the first operand's NaN or makes a negative default
one, and the compiler is free to commute the operands of a product in the scalar code,
so they are not a property of the arithmetic. Each subprocess computes every case with 1
and 3 threads and checks those agree bit for bit as well. The cases cover a smooth
photo-like image, noise, hostile pixels (NaN, +-inf, -0.0, huge, subnormal, exact vertex
values, 1.0 and the float just below), odd widths and batches (runs that start and end
off a step boundary, so both tails run), the plain and the packed LUT layouts, D from 2
to 64 (33 and below: AVX-512 keeps rows in registers), the uniform grid
(``lut_transform``) and adaptive vertices: sorted, with duplicates, beyond [0, 1], and
the unsorted / NaN rows that stay on the scalar search.

Skipped where the native module is not built or the CPU lacks AVX2 (then every path
would be the scalar one and the comparison would test nothing); the AVX-512 case also
where the CPU lacks AVX-512F.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ailut_jax import ailut_transform, identity_lut, lut_transform, native_available
from ailut_jax.ops import _native

ROOT = Path(__file__).resolve().parents[1]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


pytestmark = [
    pytest.mark.skipif(
        not native_available("cpu") or jax.default_backend() != "cpu",
        reason="the native CPU module is not built",
    ),
    pytest.mark.skipif(
        "avx2" not in cpu_flags(), reason="the CPU lacks AVX2: only the scalar path can run here"
    ),
]


def photo_like(rng, h, w):
    """Smooth gradients and waves, clipped: large flat areas at exactly 0 and 1."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    r = 1.2 * x + 0.1 * np.sin(9 * y) - 0.1
    g = 0.5 + 0.6 * np.sin(4 * x + 3 * y)
    b = 1.3 * y * (1 - x) + 0.05 * rng.normal(size=(h, w))
    return np.clip(np.stack([r, g, b], -1), 0, 1)


def hostile(rng, h, w, verts):
    """Noise with NaN, infinities, signed zeros, huge and subnormal values, exact
    vertex values, 1.0 and the float32 just below it, scattered over all channels."""
    img = rng.uniform(-0.05, 1.05, (h, w, 3))
    flat = img.reshape(-1)
    n = flat.size
    specials = [
        np.nan,
        np.inf,
        -np.inf,
        -0.0,
        0.0,
        1.0,
        float(np.nextafter(np.float32(1), np.float32(0))),
        1e30,
        -1e30,
        1e-40,
        0.5,
    ]
    for s in specials:
        flat[rng.integers(0, n, n // 40)] = s
    row = np.asarray(verts).reshape(-1)
    flat[rng.integers(0, n, n // 10)] = rng.choice(row[np.isfinite(row)], n // 10)
    return img


def sorted_vertices(rng, d, lo=0.0, hi=1.0):
    intervals = rng.uniform(0.2, 1.0, (3, d - 1))
    cum = np.cumsum(intervals, -1) / intervals.sum(-1, keepdims=True)
    return lo + (hi - lo) * np.concatenate([np.zeros((3, 1)), cum], -1)


def vertex_variants(rng, d):
    v = sorted_vertices(rng, d)
    dup = v.copy()
    dup[:, d // 2] = dup[:, d // 2 - 1]  # a zero-width interval (still sorted)
    unsorted = v.copy()
    unsorted[1] = rng.permutation(unsorted[1])
    nan = v.copy()
    nan[2, d // 2] = np.nan
    return {
        "sorted": v,
        "duplicates": dup,
        "wide": sorted_vertices(rng, d, -0.5, 1.5),
        "unsorted": unsorted,
        "nan": nan,
    }


def cases():
    """(name, kind, img, lut, vertices or None) for every case, float64 values."""
    rng = np.random.default_rng(14)
    out = []

    def lut_for(d, batch):
        return identity_lut(d, np.float64)[None] + rng.normal(0, 0.1, (batch, 3, d, d, d))

    # (D, batch, h, w): plain LUT layout for the small images, packed for the others
    # (at least 2 D^3 pixels per image); 271 x 277 spans three forward work items.
    for d, batch, h, w in [(2, 2, 5, 7), (3, 1, 9, 11), (9, 2, 61, 67), (33, 1, 37, 53)]:
        vs = vertex_variants(rng, d)
        lut = lut_for(d, batch)
        for src in ("photo", "noise", "hostile"):
            if src == "photo":
                img = np.stack([photo_like(rng, h, w) for _ in range(batch)])
            elif src == "noise":
                img = rng.uniform(-0.05, 1.05, (batch, h, w, 3))
            else:
                img = np.stack([hostile(rng, h, w, vs["sorted"]) for _ in range(batch)])
            out.append((f"d{d}_{src}_uniform", "uniform", img, lut, None))
            for vname, v in vs.items():
                verts = np.broadcast_to(v, (batch, 3, d))
                out.append((f"d{d}_{src}_{vname}", "adaptive", img, lut, verts))
    d = 33
    vs = vertex_variants(rng, d)
    lut = lut_for(d, 1)
    big = {
        "photo": photo_like(rng, 271, 277)[None],
        "hostile": hostile(rng, 271, 277, vs["sorted"])[None],
    }
    for src, img in big.items():
        out.append((f"big_{src}_uniform", "uniform", img, lut, None))
        for vname in ("sorted", "duplicates", "nan"):
            out.append((f"big_{src}_{vname}", "adaptive", img, lut, vs[vname][None]))
    d = 64
    img = hostile(rng, 13, 29, np.linspace(0, 1, d))[None]
    out.append(("d64_uniform", "uniform", img, lut_for(d, 1), None))
    out.append(("d64_sorted", "adaptive", img, lut_for(d, 1), sorted_vertices(rng, d)[None]))
    return out


def cotangent(rng, shape):
    """Output cotangents: normal noise with exact zeros, signed zeros and a few large
    values, so the backward's products and float64 partial sums see all of them."""
    g = rng.normal(size=shape)
    flat = g.reshape(-1)
    for s in (0.0, -0.0, 1e20, -1e-30):
        flat[rng.integers(0, flat.size, max(1, flat.size // 50))] = s
    return g


def vjp_fn(fn):
    """(out, *input gradients) of fn for the cotangent g, jitted."""

    def run(g, *args):
        out, back = jax.vjp(fn, *args)
        return (out, *back(g))

    return jax.jit(run)


def compute_all(dtype):
    """Forward output and the gradients for every input of every case."""
    results = {}
    fns = {
        "uniform": vjp_fn(lambda i, l: lut_transform(i, l, impl="ffi")),
        "adaptive": vjp_fn(lambda i, l, v: ailut_transform(i, l, v, impl="ffi")),
    }
    rng = np.random.default_rng(140)
    for name, kind, img, lut, verts in cases():
        args = [x.astype(dtype) for x in (img, lut)]
        if verts is not None:
            args.append(np.asarray(verts).astype(dtype))
        g = cotangent(rng, img.shape).astype(dtype)
        outs = [np.asarray(x) for x in fns[kind](g, *args)]
        for label, out in zip(("out", "d_img", "d_lut", "d_vertices"), outs):
            assert out.dtype == dtype
            results[f"{name}/{label}"] = out
    return results


def main(path: str) -> None:
    module = _native.load_module("cpu")
    saved = {"path": np.array(module.simd_path())}
    for dtype in (np.float32, np.float64):
        with jax.enable_x64(dtype == np.float64):
            per_threads = {}
            for n in (1, 3):
                module.set_num_threads(n)
                per_threads[n] = compute_all(dtype)
        for name, a in per_threads[1].items():
            b = per_threads[3][name]
            assert a.tobytes() == b.tobytes(), f"{name} {dtype.__name__}: 1 vs 3 threads"
            saved[f"{dtype.__name__}/{name}"] = a
    np.savez(path, **saved)


def run_path(tmp_path, name, simd):
    env = {k: v for k, v in os.environ.items() if k not in ("AILUT_SIMD", "AILUT_NUM_THREADS")}
    if simd is not None:
        env["AILUT_SIMD"] = simd
    out = tmp_path / f"{name}.npz"
    subprocess.run([sys.executable, __file__, str(out)], env=env, cwd=ROOT, check=True, timeout=600)
    return dict(np.load(out))


@pytest.fixture(scope="module")
def scalar_results(tmp_path_factory):
    results = run_path(tmp_path_factory.mktemp("scalar"), "scalar", "off")
    assert str(results.pop("path")) == "scalar"
    return results


# (AILUT_SIMD value, the path it must select, the CPU flag that path needs)
PATHS = [
    pytest.param("avx2", "avx2", "avx2", id="avx2"),
    pytest.param(
        None,
        "avx512",
        "avx512f",
        id="avx512",
        # Allowed to skip in CI (tests/conftest.py): AVX-512 code cannot run on a CPU
        # without it.
        marks=pytest.mark.avx512,
    ),
]


@pytest.mark.parametrize("env, path, flag", PATHS)
def test_simd_forward_and_backward_are_bit_identical_to_scalar(
    tmp_path, scalar_results, env, path, flag
):
    if flag not in cpu_flags():
        pytest.skip(f"the CPU lacks {flag}: the {path} path cannot run here")
    simd = run_path(tmp_path, path, env)
    scalar = dict(scalar_results)
    assert str(simd.pop("path")) == path
    assert simd.keys() == scalar.keys() and len(simd) > 400
    print(f"{len(simd)} arrays compared")
    nan_cases = nan_bits = 0
    for key, a in simd.items():
        b = scalar[key]
        assert a.shape == b.shape and a.dtype == b.dtype, key
        uint = np.uint32 if a.dtype == np.float32 else np.uint64
        differ = a.view(uint) != b.view(uint)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        assert np.array_equal(nan_a, nan_b), f"{key}: NaN at different places"
        nan_bits += int((differ & nan_a).sum())
        diff = np.flatnonzero(differ & ~nan_a)
        assert diff.size == 0, f"{key}: {diff.size} values differ, first at {diff[:5]}"
        nan_cases += bool(np.isnan(a).any())
    assert nan_cases > 10, "the hostile cases must reach the kernels' NaN paths"
    print(f"NaN outputs whose sign / payload bits differ: {nan_bits}")


if __name__ == "__main__":
    main(sys.argv[1])
