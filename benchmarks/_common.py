"""Timing and result files shared by the benchmark scripts (run as scripts from any
folder: each script's own folder is first on sys.path)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path


def median_ms(fn, args, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn(*args)`` in ms over ``repeats`` runs after ``warmup``."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def save_results(path: str | os.PathLike, rows: list[dict], **meta) -> Path:
    """Write ``{"meta": {machine, jax, ...meta}, "results": rows}`` as JSON; returns the path."""
    import jax

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "load_average": os.getloadavg(),
        **meta,
    }
    out.write_text(json.dumps({"meta": info, "results": rows}, indent=2))
    return out
