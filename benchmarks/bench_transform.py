"""Benchmark the AiLUT transform: native FFI op vs the jitted pure-JAX reference.

Forward and forward+backward (``jax.value_and_grad`` of an MSE loss: the forward output
and the gradients for img, lut and vertices) at 854x480, 1920x1080 and 3840x2160, D = 33,
batch 1, median of N timed runs after warm-up. The image is a real photo resized to each
size (or uniform noise with --input noise); the LUT is an identity plus noise and the
vertices are non-uniform. Prints a table and writes JSON.

Per size it also reports how far the native op is from the machine's limits, measured
in the same run: ns per pixel per core (wall time x the op's threads / pixels), and the
forward's achieved memory bandwidth (image read + output written, over its wall time)
against a plain numpy copy of the same bytes (one thread, into a preallocated buffer)
and against XLA's `2x + 1` on the image (allocation and first-touch included, like the
op's output), and the forward against a plain numpy implementation (``numpy_forward``,
checked against the op's output first; --no-numpy skips it). With --simd-compare
(default) the native forward is timed again in subprocesses on the other paths this CPU
can run: AILUT_SIMD=off (the scalar loop) and, where the default is AVX-512,
AILUT_SIMD=avx2 (see xla_ffi/ailut_simd.h).

    python benchmarks/bench_transform.py [--repeats 7] [--out benchmarks/results/transform.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from _common import median_ms, save_results

from ailut_jax import ailut_transform, native_available
from ailut_jax.ops import _native

SIZES = {"480p": (480, 854), "1080p": (1080, 1920), "4K": (2160, 3840)}


def numpy_forward(img: np.ndarray, lut: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """A plain numpy AiLUT forward (one image, float32, the semantics of
    docs/transform.md for sorted vertices): the baseline the native op is compared with.
    Vectorised over pixels: ``np.searchsorted`` per channel, then the 8 corners gathered
    with fancy indexing and blended."""
    d = lut.shape[-1]
    pix = img.reshape(-1, 3)
    k, t = [], []
    for c in range(3):
        v = vertices[c]
        kc = np.clip(np.searchsorted(v, pix[:, c], side="left") - 1, 0, d - 2)
        v0 = v[kc]
        k.append(kc)
        t.append((pix[:, c] - v0) / (v[kc + 1] - v0 + np.float32(1e-10)))
    flat = lut.reshape(3, -1)
    base = (k[2] * d + k[1]) * d + k[0]
    out = np.zeros_like(pix)
    for corner in range(8):
        bits = [(corner >> a) & 1 for a in range(3)]  # red, green, blue steps
        w = np.ones_like(t[0])
        for a in range(3):
            w = w * (t[a] if bits[a] else 1 - t[a])
        entry = flat[:, base + bits[2] * d * d + bits[1] * d + bits[0]]
        out += w[:, None] * entry.T
    return out.reshape(img.shape)


def numpy_forward_ms(inputs, repeats: int, native_out: np.ndarray) -> float:
    """Median ms of :func:`numpy_forward` on the benchmark's inputs, after checking that
    it computes what the native op does."""
    args = tuple(np.asarray(x)[0] for x in inputs)
    err = float(np.max(np.abs(numpy_forward(*args) - native_out[0])))
    assert err < 1e-4, f"numpy baseline disagrees with the native op by {err}"
    return median_ms(numpy_forward, args, repeats, warmup=0)  # the check above warmed it


def photo(h: int, w: int) -> np.ndarray:
    """A real photograph (scikit-image's bundled 'coffee') resized to h x w, in [0, 1]."""
    from PIL import Image
    from skimage import data

    im = Image.fromarray(data.coffee()).resize((w, h), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(im, np.float32) / 255.0, 0, 1)


def make_inputs(h: int, w: int, d: int, seed: int = 0, source: str = "photo"):
    rng = np.random.default_rng(seed)
    if source == "photo":
        img = photo(h, w)[None]
    else:  # uniform noise: every pixel in a random cell, the worst case for caches
        img = rng.uniform(0, 1, (1, h, w, 3)).astype(np.float32)
    grid = np.arange(d, dtype=np.float32) / (d - 1)
    b, g, r = np.meshgrid(grid, grid, grid, indexing="ij")
    lut = np.stack([r, g, b])[None] + rng.normal(0, 0.05, (1, 3, d, d, d)).astype(np.float32)
    intervals = rng.uniform(0.5, 1.5, (1, 3, d - 1))
    vertices = np.concatenate(
        [np.zeros((1, 3, 1)), np.cumsum(intervals, -1) / intervals.sum(-1, keepdims=True)], -1
    ).astype(np.float32)
    return tuple(jax.device_put(x) for x in (img, lut.astype(np.float32), vertices))


def build(impl: str, mode: str):
    if mode == "forward":
        return jax.jit(lambda i, l, v: ailut_transform(i, l, v, impl=impl))

    # A training-like loss (MSE against the input) through value_and_grad: the loss value
    # and its cotangent both need the forward output, so XLA keeps the forward pass. (A
    # plain grad of a linear loss never reads the output and XLA drops the forward.)
    def loss(i, l, v):
        return jnp.mean((ailut_transform(i, l, v, impl=impl) - i) ** 2)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def copy_ms(src: np.ndarray, repeats: int) -> float:
    """Median ms of a plain copy of ``src`` into a preallocated buffer (reads + writes
    the same bytes as the forward's image in and output out)."""
    dst = np.empty_like(src)
    return median_ms(np.copyto, (dst, src), repeats, warmup=1)


def path_forward_ms(args, simd: str) -> tuple[dict, str]:
    """The native forward's ms per size with AILUT_SIMD=simd, from a subprocess; returns
    ({size: ms}, the path the module chose)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, f"{simd}.json")
        cmd = [sys.executable, __file__, "--native-forward-only", "--out", out]
        cmd += ["--repeats", str(args.repeats), "--d", str(args.d), "--input", args.input]
        cmd += ["--sizes", *args.sizes]
        subprocess.run(cmd, env={**os.environ, "AILUT_SIMD": simd}, check=True)
        with open(out) as f:
            data = json.load(f)
    return {r["size"]: r["native_ms"] for r in data["results"]}, data["meta"]["simd_path"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--d", type=int, default=33)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument(
        "--input",
        default="photo",
        choices=["photo", "noise"],
        help="a real photo resized to each size (default) or uniform noise (cache worst case)",
    )
    parser.add_argument("--out", default="benchmarks/results/transform.json")
    parser.add_argument(
        "--simd-compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the native forward with AILUT_SIMD=off and, where the default is "
        "AVX-512, AILUT_SIMD=avx2 (subprocesses)",
    )
    parser.add_argument(
        "--numpy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time a plain numpy forward (numpy_forward) at each size",
    )
    parser.add_argument("--native-forward-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not native_available():
        raise SystemExit("the native module is not built; install the package first")
    module = _native.load_module("cpu")
    simd_path, threads = module.simd_path(), module.num_threads()

    if args.native_forward_only:  # a path_forward_ms subprocess
        rows = []
        for size in args.sizes:
            inputs = make_inputs(*SIZES[size], args.d, source=args.input)
            ms = median_ms(build("ffi", "forward"), inputs, args.repeats)
            rows.append({"size": size, "native_ms": ms})
        save_results(args.out, rows, simd_path=simd_path, threads=threads)
        return

    backend = jax.default_backend()
    print(
        f"backend={backend} devices={jax.devices()} cpus={os.cpu_count()} D={args.d} "
        f"input={args.input} simd={simd_path} threads={threads} load={os.getloadavg()}"
    )
    rows = []
    limits = []
    for size in args.sizes:
        h, w = SIZES[size]
        inputs = make_inputs(h, w, args.d, source=args.input)
        # What any XLA op that reads the image and writes a new one of the same size
        # costs here (allocation, first-touch page faults, memory traffic): a floor
        # under the forward pass that no kernel can go below.
        floor_ms = median_ms(jax.jit(lambda i: i * 2.0 + 1.0), inputs[:1], args.repeats)
        print(f"  {size:>4} floor: y = 2x + 1 on the same image {floor_ms:9.2f} ms", flush=True)
        copy = copy_ms(np.asarray(inputs[0]), args.repeats)
        for mode in ("forward", "forward+backward"):
            ms = {
                impl: median_ms(build(impl, mode), inputs, args.repeats)
                for impl in ("ffi", "reference")
            }
            numpy_ms = None
            if mode == "forward" and args.numpy:
                native_out = np.asarray(build("ffi", "forward")(*inputs))
                numpy_ms = numpy_forward_ms(inputs, min(args.repeats, 3), native_out)
            rows.append(
                {
                    "size": size,
                    "height": h,
                    "width": w,
                    "mode": mode,
                    "native_ms": ms["ffi"],
                    "reference_ms": ms["reference"],
                    "speedup": ms["reference"] / ms["ffi"],
                    "elementwise_floor_ms": floor_ms,
                    "ns_per_pixel_per_core": ms["ffi"] * 1e6 * threads / (h * w),
                    "numpy_ms": numpy_ms,
                    "numpy_ratio": None if numpy_ms is None else numpy_ms / ms["ffi"],
                }
            )
            r = rows[-1]
            extra = (
                "" if numpy_ms is None else f"   numpy {numpy_ms:.1f} ms x{r['numpy_ratio']:.1f}"
            )
            print(
                f"  {size:>5} {mode:<17} native {r['native_ms']:9.2f} ms   reference "
                f"{r['reference_ms']:9.2f} ms   x{r['speedup']:.1f}   "
                f"{r['ns_per_pixel_per_core']:.1f} ns/pixel/core{extra}",
                flush=True,
            )
        fwd = rows[-2]
        nbytes = 2 * np.asarray(inputs[0]).nbytes  # image read + output written
        limits.append(
            {
                "size": size,
                "bytes": nbytes,
                "forward_ms": fwd["native_ms"],
                "forward_gb_s": nbytes / fwd["native_ms"] / 1e6,
                "numpy_copy_ms": copy,
                "numpy_copy_gb_s": nbytes / copy / 1e6,
                "xla_2x_plus_1_gb_s": nbytes / floor_ms / 1e6,
            }
        )

    # The other paths this CPU can run: the scalar loop, and AVX2 where the default is AVX-512.
    others = {"scalar": "off", "avx2": "avx2"} if simd_path == "avx512" else {"scalar": "off"}
    if args.simd_compare and simd_path != "scalar":
        for name, value in others.items():
            times, chosen = path_forward_ms(args, value)
            assert chosen == name, (name, chosen)
            for lim in limits:
                lim[f"{name}_forward_ms"] = times[lim["size"]]
                lim[f"{simd_path}_speedup_over_{name}"] = times[lim["size"]] / lim["forward_ms"]

    print()
    print(
        "| size | pass | native (ms) | ns/pixel/core | jitted reference (ms) | speed-up "
        "| plain numpy (ms) | vs numpy | `2x+1` floor (ms) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        np_cols = (
            "| | |"
            if r["numpy_ms"] is None
            else f"| {r['numpy_ms']:.1f} | {r['numpy_ratio']:.1f}x |"
        )
        print(
            f"| {r['size']} ({r['width']}x{r['height']}) | {r['mode']} | {r['native_ms']:.2f} | "
            f"{r['ns_per_pixel_per_core']:.1f} | {r['reference_ms']:.2f} | "
            f"{r['speedup']:.1f}x {np_cols} {r['elementwise_floor_ms']:.2f} |"
        )
    print()
    print(
        f"Forward against the memory limit (image in + output out; op on {threads} "
        f"thread(s), {simd_path} path):"
    )
    head = "| size | MB moved | forward GB/s | numpy copy GB/s | XLA `2x+1` GB/s |"
    sep = "|---|---:|---:|---:|---:|"
    compared = [n for n in others if f"{n}_forward_ms" in limits[0]] if limits else []
    for name in compared:
        head += f" {name} forward (ms) | {simd_path} speed-up |"
        sep += "---:|---:|"
    print(head)
    print(sep)
    for lim in limits:
        line = (
            f"| {lim['size']} | {lim['bytes'] / 1e6:.1f} | {lim['forward_gb_s']:.2f} | "
            f"{lim['numpy_copy_gb_s']:.2f} | {lim['xla_2x_plus_1_gb_s']:.2f} |"
        )
        for name in compared:
            speedup = lim[f"{simd_path}_speedup_over_{name}"]
            line += f" {lim[f'{name}_forward_ms']:.2f} | {speedup:.2f}x |"
        print(line)
    out = save_results(
        args.out,
        rows,
        d=args.d,
        input=args.input,
        repeats=args.repeats,
        simd_path=simd_path,
        threads=threads,
        limits=limits,
    )
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
