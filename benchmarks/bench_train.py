"""Benchmark one AdaInt training step (FiveK model, D = 33): native op vs reference.

The real training step of ``ailut_jax.train`` (forward, loss with regularisers, backward,
pmean, Adam with the AdaInt group) at batch 1 on an 854x480 crop of a real photo, with
the native FFI transform and with the pure-JAX reference; then the same with N forced CPU
devices (global batch N, one image per device). Median of the timed steps after warm-up.

    python benchmarks/bench_train.py [--repeats 10] [--devices 2] \
        [--out benchmarks/results/train.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def run_case(impl: str, repeats: int, distill: bool) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from _common import median_ms
    from bench_transform import photo
    from flax import nnx

    from ailut_jax.models import AiLUT, ModelConfig
    from ailut_jax.train import base_config
    from ailut_jax.train import step as step_lib
    from ailut_jax.train.config import validate_config

    n = jax.local_device_count()
    config = base_config()
    config.impl = impl
    config.optim.n_fix_iters = 0
    config = validate_config(config)
    graphdef, params, stats, rng_state = step_lib.split_model(
        AiLUT(ModelConfig(), rngs=nnx.Rngs(0))
    )
    tx = step_lib.make_optimizer(config.optim, config.steps)
    fn = step_lib.make_train_step(
        graphdef,
        rng_state,
        tx,
        step_lib.step_config(config, distill=distill),
        axis_name=step_lib.AXIS,
        teacher_graphdef=graphdef if distill else None,
    )
    p_step = step_lib.pmap_train_step(fn)
    state = [step_lib.replicate(x) for x in (params, stats, tx.init(params))]
    teacher = step_lib.replicate((params, stats)) if distill else None
    # One 854x480 crop per device, as a flat canvas of exactly its size (no padding).
    img = photo(480, 854).reshape(1, -1, 3)
    target = np.clip(img**0.8 * np.array([1.0, 0.97, 0.9], np.float32), 0, 1)
    batch = step_lib.shard_batch(
        {
            "input": np.repeat(img, n, axis=0),
            "target": np.repeat(target, n, axis=0).astype(np.float32),
            "size": np.tile(np.int32([[480, 854]]), (n, 1)),
        },
        n,
    )
    key = jax.random.key(0)
    counter = [0]

    def step():
        counter[0] += 1
        state[0], state[1], state[2], metrics = p_step(
            state[0], state[1], state[2], batch, key, jnp.int32(counter[0]), teacher
        )
        return metrics["loss"]

    ms = median_ms(step, (), repeats)
    return {
        "impl": impl,
        "devices": n,
        "global_batch": n,
        "distill": distill,
        "crop": "854x480",
        "ms_per_step": round(ms, 1),
        "steps_per_s": round(1000.0 / ms, 2),
        "images_per_s": round(1000.0 * n / ms, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--devices", type=int, default=2, help="forced CPU devices (0: skip)")
    parser.add_argument("--out", default=None, help="JSON results file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from ailut_jax import native_available

    impls = ["ffi", "reference"] if native_available("cpu") else ["reference"]
    if args.child:
        rows = [run_case(impl, args.repeats, False) for impl in impls]
        print("ROWS " + json.dumps(rows))
        return 0

    rows = []
    for impl in impls:
        rows.append(run_case(impl, args.repeats, False))
    rows.append(run_case(impls[0], args.repeats, True))
    if args.devices > 1:
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        env["XLA_FLAGS"] = (
            env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={args.devices}"
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--repeats", str(args.repeats)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("ROWS ")][-1]
        rows.extend(json.loads(line[5:]))

    print(f"{'impl':<10} {'devices':>7} {'batch':>5} {'distill':>7} {'ms/step':>8} {'img/s':>6}")
    for r in rows:
        print(
            f"{r['impl']:<10} {r['devices']:>7} {r['global_batch']:>5} {str(r['distill']):>7} "
            f"{r['ms_per_step']:>8.1f} {r['images_per_s']:>6.2f}"
        )
    if args.out:
        from _common import save_results

        print(f"wrote {save_results(args.out, rows, benchmark='train_step')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
