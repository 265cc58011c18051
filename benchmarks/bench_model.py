"""Benchmark full AiLUT inference: backbone + LUT generator + AdaInt + transform, jitted.

At 854x480 and 3840x2160, batch 1, with the native FFI transform and the pure-JAX
reference, median of N timed runs after warm-up; the thumbnail branch alone (resize,
backbone, generators) is timed too. Each configuration runs in its own process so that
its peak resident memory (ru_maxrss) is its own; XLA's buffer plan (arguments + outputs
+ temporaries) is reported as well. Uses the authors' FiveK sRGB weights when torch and
../shared/official are available, else a seeded random model (same cost).

    python benchmarks/bench_model.py [--repeats 7] [--out benchmarks/results/model.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import median_ms, save_results

SIZES = {"480p": (480, 854), "4K": (2160, 3840)}
OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "official" / "AiLUT-FiveK-sRGB.pth"


def _load_model():
    from flax import nnx

    from ailut_jax.models import AiLUT, ModelConfig

    if OFFICIAL.is_file():
        try:
            from ailut_jax.convert import load_torch_state_dict, model_from_state_dict

            return model_from_state_dict(load_torch_state_dict(OFFICIAL)), "official FiveK sRGB"
        except ImportError:
            pass
    return AiLUT(ModelConfig(), rngs=nnx.Rngs(0)), "random init (seed 0)"


def run_one(impl: str, size: str, repeats: int) -> dict:
    """Time one (impl, size) in this process; returns a result row."""
    import jax
    import numpy as np
    from flax import nnx

    from ailut_jax import Enhancer, native_available

    if impl == "ffi" and not native_available():
        return {"impl": impl, "size": size, "error": "native module not built"}
    model, weights = _load_model()
    graphdef, state = nnx.split(model)
    h, w = SIZES[size]
    rng = np.random.default_rng(0)
    img = jax.device_put(rng.random((1, h, w, 3), dtype=np.float32))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def full(state, img):
        return nnx.merge(graphdef, state)(img, impl=impl).output

    def thumbnail_branch(state, img):
        module = nnx.merge(graphdef, state)
        features = module.backbone(img)
        weights, lut = module.lut_generator(features)
        return lut, module.adaint(features)

    full_jit = jax.jit(full)
    compiled = full_jit.lower(state, img).compile()
    mem = compiled.memory_analysis()
    t0 = time.perf_counter()
    jax.block_until_ready(full_jit(state, img))
    first_call_s = time.perf_counter() - t0
    full_ms = median_ms(full_jit, (state, img), repeats)
    branch_ms = median_ms(jax.jit(thumbnail_branch), (state, img), repeats)
    enhancer = Enhancer(model, impl=impl)  # what `ailut enhance` runs: three jitted stages
    enhancer_ms = median_ms(lambda x: enhancer.predict(x)["output"], (img,), repeats)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    xla_bytes = None
    if mem is not None:
        xla_bytes = int(
            mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
        )
    return {
        "impl": impl,
        "size": size,
        "height": h,
        "width": w,
        "weights": weights,
        "full_ms": full_ms,
        "thumbnail_branch_ms": branch_ms,
        "enhancer_ms": enhancer_ms,
        "transform_ms_approx": full_ms - branch_ms,
        "first_call_s": first_call_s,
        "xla_buffers_mib": None if xla_bytes is None else xla_bytes / 2**20,
        "xla_temp_mib": None if mem is None else mem.temp_size_in_bytes / 2**20,
        "peak_rss_mib": peak_rss / 1024,
        "rss_before_compile_mib": rss_before / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--impls", nargs="+", default=["ffi", "reference"])
    parser.add_argument("--out", default="benchmarks/results/model.json")
    parser.add_argument("--child", nargs=2, metavar=("IMPL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.repeats)))
        return

    import jax

    print(f"backend={jax.default_backend()} cpus={os.cpu_count()} repeats={args.repeats}")
    rows = []
    for size in args.sizes:
        for impl in args.impls:
            cmd = [sys.executable, __file__, "--repeats", str(args.repeats), "--child", impl, size]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"benchmark child {impl} {size} failed")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            if "error" in row:
                print(f"  {size:>4} {impl:<9} skipped: {row['error']}", flush=True)
                continue
            print(
                f"  {size:>4} {impl:<9} full {row['full_ms']:9.2f} ms  thumbnail branch "
                f"{row['thumbnail_branch_ms']:7.2f} ms  peak RSS {row['peak_rss_mib']:7.0f} MiB  "
                f"XLA buffers {row['xla_buffers_mib']:7.0f} MiB",
                flush=True,
            )
    print()
    print(
        "| size | transform | full inference (ms) | Enhancer (ms) | thumbnail branch (ms) "
        "| peak RSS (MiB) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            continue
        name = {"ffi": "native", "reference": "pure-JAX reference"}.get(r["impl"], r["impl"])
        print(
            f"| {r['size']} ({r['width']}x{r['height']}) | {name} | {r['full_ms']:.1f} | "
            f"{r['enhancer_ms']:.1f} | {r['thumbnail_branch_ms']:.1f} | {r['peak_rss_mib']:.0f} |"
        )
    out = save_results(args.out, rows, repeats=args.repeats)
    print(f"\nsaved {out}")


if __name__ == "__main__":
    main()
