"""Benchmark the AiLUT transform: native FFI op vs the jitted pure-JAX reference.

Forward and forward+backward (``jax.value_and_grad`` of an MSE loss: the forward output
and the gradients for img, lut and vertices) at 854x480 and 3840x2160, D = 33, batch 1,
median of N timed runs after warm-up. The image is a real
photo resized to each size (or uniform noise with --input noise); the LUT is an
identity plus noise and the vertices are non-uniform. Prints a table and writes JSON.

    python benchmarks/bench_transform.py [--repeats 7] [--out benchmarks/results/transform.json]
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
from _common import median_ms, save_results

from ailut_jax import ailut_transform, native_available

SIZES = {"480p": (480, 854), "4K": (2160, 3840)}


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
    args = parser.parse_args()
    if not native_available():
        raise SystemExit("the native module is not built; install the package first")

    backend = jax.default_backend()
    print(
        f"backend={backend} devices={jax.devices()} cpus={os.cpu_count()} D={args.d} "
        f"input={args.input}"
    )
    rows = []
    for size in args.sizes:
        h, w = SIZES[size]
        inputs = make_inputs(h, w, args.d, source=args.input)
        # What any XLA op that reads the image and writes a new one of the same size
        # costs here (allocation, first-touch page faults, memory traffic): a floor
        # under the forward pass that no kernel can go below.
        floor_ms = median_ms(jax.jit(lambda i: i * 2.0 + 1.0), inputs[:1], args.repeats)
        print(f"  {size:>4} floor: y = 2x + 1 on the same image {floor_ms:9.2f} ms", flush=True)
        for mode in ("forward", "forward+backward"):
            ms = {
                impl: median_ms(build(impl, mode), inputs, args.repeats)
                for impl in ("ffi", "reference")
            }
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
                }
            )
            r = rows[-1]
            print(
                f"  {size:>4} {mode:<17} native {r['native_ms']:9.2f} ms   reference "
                f"{r['reference_ms']:9.2f} ms   x{r['speedup']:.1f}",
                flush=True,
            )

    print()
    print("| size | pass | native (ms) | jitted reference (ms) | speed-up | `2x+1` floor (ms) |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['size']} ({r['width']}x{r['height']}) | {r['mode']} | {r['native_ms']:.2f} | "
            f"{r['reference_ms']:.2f} | {r['speedup']:.1f}x | {r['elementwise_floor_ms']:.2f} |"
        )
    out = save_results(args.out, rows, d=args.d, input=args.input, repeats=args.repeats)
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
