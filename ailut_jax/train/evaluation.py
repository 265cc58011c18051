"""Test-split evaluation of each generation, the ensemble, and the results table.

The test split is streamed: one image is decoded, enhanced and scored at a time, and only
running sums (plus the few images of the report's grid) are kept, so memory does not
grow with the split. Models run through :class:`ailut_jax.enhance.Enhancer`, the
predictor ``ailut enhance`` and ``ailut evaluate`` use (compiled once per model
structure, plus a cheap resize and transform per image size). Outputs are rounded to 8
bits before scoring (as a saved photo would be) and scored with every metric of
:data:`ailut_jax.metrics.METRIC_NAMES`, the list ``ailut evaluate`` reports too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ailut_jax import metrics
from ailut_jax.enhance import Enhancer
from ailut_jax.imageio import quantize

IDENTITY = "identity"
ENSEMBLE = "ensemble"


def iter_test_images(source, limit: int | None = None):
    """``(id, input (H, W, 3) float32, target uint8)`` of the first ``limit`` test pairs."""
    from ailut_jax.data.pipeline import make_eval_loader

    loader = make_eval_loader(source)
    n = len(loader) if limit is None else min(limit, len(loader))
    for i in range(n):
        ex = loader[i]
        yield ex["id"], ex["input"][0], quantize(ex["target"][0], 8)


def score(
    output: np.ndarray, target_u8: np.ndarray, names=metrics.METRIC_NAMES
) -> dict[str, float]:
    """``names`` of the output, rounded to 8 bits as a saved photo is, against the target."""
    return metrics.all_metrics(quantize(np.asarray(output, np.float32), 8), target_u8, names)


def evaluate(
    source,
    enhancers: Mapping[str, Enhancer],
    *,
    limit: int | None = None,
    identity: bool = False,
    ensemble: bool = False,
    names=metrics.METRIC_NAMES,
    visit: Callable | None = None,
) -> dict[str, dict[str, float]]:
    """Mean metrics over the test split, per model, in one streaming pass.

    Args:
      source: the test split (random access).
      enhancers: label -> :class:`Enhancer`.
      identity: also score the unchanged input (label :data:`IDENTITY`).
      ensemble: also score the mean of all enhancers' unclamped outputs (label
        :data:`ENSEMBLE`).
      visit: called as ``visit(index, id, input, target_u8, predictions)`` for each
        image, ``predictions`` mapping each label to ``Enhancer.predict``'s dict (for
        figures); nothing is kept unless it keeps it.

    Returns:
      label -> {metric: mean}; also ``"images"``: the number of images scored.
    """
    sums: dict[str, dict[str, float]] = {}
    count = 0

    def add(label, output, target):
        row = score(output, target, names)
        acc = sums.setdefault(label, dict.fromkeys(names, 0.0))
        for k, v in row.items():
            acc[k] += v

    for index, (image_id, inp, target) in enumerate(iter_test_images(source, limit)):
        predictions = {label: e.predict(inp) for label, e in enhancers.items()}
        outputs = {label: np.asarray(p["output"]) for label, p in predictions.items()}
        for label, out in outputs.items():
            add(label, out, target)
        if identity:
            add(IDENTITY, inp, target)
        if ensemble and outputs:
            add(ENSEMBLE, np.mean(list(outputs.values()), axis=0), target)
        if visit is not None:
            visit(index, image_id, inp, target, predictions)
        count += 1
    if count == 0:
        raise ValueError("the test split holds no images")
    result = {label: {k: v / count for k, v in acc.items()} for label, acc in sums.items()}
    result["images"] = count
    return result


def results_table(rows: list[dict]) -> str:
    """Markdown table: one row per entry ``{"model": label, <metric>: value, ...}``,
    one column per metric of :data:`ailut_jax.metrics.METRIC_NAMES`."""
    names = metrics.METRIC_NAMES
    lines = [
        "| model | " + " | ".join(metrics.METRIC_LABELS[m][0] for m in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for r in rows:
        values = " | ".join(metrics.format_metric(m, r[m]) for m in names)
        lines.append(f"| {r['model']} | {values} |")
    return "\n".join(lines)


def write_results(workdir: Path, rows: list[dict], extra: dict) -> str:
    table = results_table(rows)
    document = dict(extra, rows=rows)
    (workdir / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    header = f"# Results: {extra.get('config', '')}\n\n"
    notes = (
        f"\nTest split: {extra.get('test_images')} images of {extra.get('dataset')}. "
        "Outputs rounded to 8 bits; SSIM is the standard Gaussian SSIM on RGB, SSIM (paper) "
        "the authors' MATLAB variant (docs/metrics.md).\n"
    )
    (workdir / "results.md").write_text(header + table + "\n" + notes)
    return table
