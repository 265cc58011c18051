"""Test-split evaluation of each generation, the ensemble, and the results table.

Outputs are rounded to 8 bits before scoring (as a saved photo would be); PSNR, SSIM
(standard Gaussian) and Delta-E (CIE76) come from :mod:`ailut_jax.metrics`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from ailut_jax import metrics
from ailut_jax.imageio import quantize

METRIC_NAMES = ("psnr", "ssim", "delta_e")


class Forward:
    """A jitted full-resolution forward ``(params, batch_stats, img) -> ModelOutput``.

    One compile per image shape, shared by every generation (same architecture).
    """

    def __init__(self, graphdef, rng_state, impl: str = "auto"):
        def forward(params, batch_stats, img):
            model = nnx.merge(graphdef, params, batch_stats, rng_state)
            return model(img, deterministic=True, impl=impl)

        self._forward = jax.jit(forward)

    def __call__(self, weights, img: np.ndarray):
        params, batch_stats = weights
        return self._forward(params, batch_stats, img)


def eval_examples(source, limit: int = 0) -> list[dict]:
    """Test examples as float32 ``(1, H, W, 3)`` input, uint8 target, id."""
    from ailut_jax.data.pipeline import make_eval_loader

    loader = make_eval_loader(source)
    n = len(loader) if not limit else min(limit, len(loader))
    out = []
    for i in range(n):
        ex = loader[i]
        out.append({"input": ex["input"], "target": quantize(ex["target"][0], 8), "id": ex["id"]})
    return out


def score(output: np.ndarray, target_u8: np.ndarray, names=METRIC_NAMES) -> dict[str, float]:
    out = quantize(np.asarray(output, np.float32), 8)
    return {name: float(metrics.METRICS[name](out, target_u8)) for name in names}


def _mean(rows: Sequence[dict]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def identity_scores(examples, names=METRIC_NAMES) -> dict[str, float]:
    return _mean([score(ex["input"][0], ex["target"], names) for ex in examples])


def evaluate(forward: Forward, weights, examples, names=METRIC_NAMES) -> dict[str, float]:
    """Mean metrics of one model over ``examples``."""
    rows = []
    for ex in examples:
        out = np.asarray(forward(weights, ex["input"]).output[0])
        rows.append(score(out, ex["target"], names))
    return _mean(rows)


def evaluate_ensemble(forward: Forward, all_weights, examples) -> dict[str, float]:
    """Mean metrics of the average of the generations' (unclamped) output images."""
    rows = []
    for ex in examples:
        outs = [np.asarray(forward(w, ex["input"]).output[0]) for w in all_weights]
        rows.append(score(np.mean(outs, axis=0), ex["target"]))
    return _mean(rows)


def results_table(rows: list[dict]) -> str:
    """Markdown table: one row per entry ``{"model", "psnr", "ssim", "delta_e", ...}``."""
    lines = [
        "| model | PSNR (dB) | SSIM | Delta-E |",
        "|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['delta_e']:.2f} |")
    return "\n".join(lines)


def write_results(workdir: Path, rows: list[dict], extra: dict) -> str:
    table = results_table(rows)
    document = dict(extra, rows=rows)
    (workdir / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    header = f"# Results: {extra.get('config', '')}\n\n"
    notes = (
        f"\nTest split: {extra.get('test_images')} images of {extra.get('dataset')}. "
        f"Outputs rounded to 8 bits; SSIM is the standard Gaussian SSIM on RGB.\n"
    )
    (workdir / "results.md").write_text(header + table + "\n" + notes)
    return table
