"""``ailut evaluate``: score a model on paired images (the original's ``tools/test.py``).

Each input is enhanced at full resolution, the output clamped and rounded to the
target's bit depth (8 bits for FiveK / PPR10K, as the authors' saved PNGs were) and
scored with :mod:`ailut_jax.metrics`: PSNR, SSIM (standard), SSIM (the authors' MATLAB
variant) and Delta-E 1976. ``--identity`` also scores the unmodified input, the baseline
every enhancement must beat.

Written to the report folder: ``metrics.csv`` (one row per image) and ``summary.json``
(means, images/s, model time per image); enhanced PNGs go to ``--save-path``. The command
line (``ailut evaluate``) is :mod:`ailut_jax.cli.evaluate`.

Pairs come from a built dataset (``--dataset fivek --split test``) or from two folders
(``--inputs DIR --targets DIR``), matched by file stem.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from ailut_jax import metrics
from ailut_jax.imageio import IMAGE_SUFFIXES, quantize, read_image_raw, to_float, write_image


@dataclasses.dataclass(frozen=True)
class PairFiles:
    name: str
    input_path: Path
    target_path: Path


def find_pairs(inputs_dir: str | Path, targets_dir: str | Path) -> list[PairFiles]:
    """Image pairs of two folders, matched by file stem and sorted by name.

    Raises ``FileNotFoundError`` for a missing folder and ``ValueError`` when no pair is
    found, when an input has no target, or when a stem is ambiguous (``a.jpg`` and
    ``a.png`` in one folder); the message lists the offending names.
    """

    def by_stem(folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        found: dict[str, list[Path]] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(path.stem, []).append(path)
        ambiguous = {s: p for s, p in found.items() if len(p) > 1}
        if ambiguous:
            listed = "; ".join(", ".join(p.name for p in ps) for ps in ambiguous.values())
            raise ValueError(f"{folder}: several images share a name: {listed}")
        return {stem: paths[0] for stem, paths in found.items()}

    inputs, targets = by_stem(Path(inputs_dir)), by_stem(Path(targets_dir))
    if not inputs:
        raise ValueError(f"{inputs_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    missing = sorted(set(inputs) - set(targets))
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ValueError(
            f"{len(missing)} of {len(inputs)} inputs have no target in {targets_dir}: {shown}"
        )
    return [PairFiles(stem, inputs[stem], targets[stem]) for stem in sorted(inputs)]


def iter_folder_pairs(pairs: Sequence[PairFiles]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, input, target)`` integer arrays for pairs of files."""
    for pair in pairs:
        yield pair.name, read_image_raw(pair.input_path), read_image_raw(pair.target_path)


def iter_dataset_pairs(source) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, input, target)`` from an :func:`ailut_jax.data.open_source` split."""
    for index in range(len(source)):
        example = source[index]
        yield example["id"], np.asarray(example["input"]), np.asarray(example["target"])


def output_path(save_path: Path, name: str) -> Path:
    """Where the enhanced image of example ``name`` goes: ``save_path/<name>.png``.

    Dataset ids may hold ``/`` (the demo's are ``photo/crop``): they become subfolders.
    Parts that could leave ``save_path`` (``..``, empty, absolute) are replaced by ``_``.
    """
    parts = [p if p not in ("", ".", "..") else "_" for p in PurePosixPath(name).parts]
    parts = [p.replace("\\", "_") for p in parts if p != "/"] or ["_"]
    return save_path.joinpath(*parts[:-1], f"{parts[-1]}.png")


def _match_depth(img: np.ndarray, target: np.ndarray) -> np.ndarray:
    """An integer input at the target's bit depth (for the identity baseline)."""
    if img.dtype == target.dtype:
        return img
    return quantize(to_float(img), 16 if target.dtype == np.uint16 else 8)


def evaluate_pairs(
    pairs: Iterator[tuple[str, np.ndarray, np.ndarray]],
    enhance: Callable[[np.ndarray], np.ndarray] | None,
    *,
    total: int | None = None,
    identity: bool = False,
    save_path: Path | None = None,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Score ``enhance`` (float ``(H, W, 3)`` in [0, 1] -> float output) on ``pairs``.

    Returns ``(rows, summary)``: one dict per image (``name``, the metrics, ``model_ms``
    and, with ``identity``, ``identity_<metric>``) and the means plus timing. Metrics and
    image writing run on a worker thread while the model works on the next image.
    ``enhance=None`` scores the identity only.
    """
    if enhance is None and not identity:
        raise ValueError("nothing to evaluate: give a model or ask for the identity baseline")
    if save_path is not None:
        save_path.mkdir(parents=True, exist_ok=True)

    def finish(name, output, img, target, model_ms):
        row: dict = {"name": name}
        if output is not None:
            bits = 16 if target.dtype == np.uint16 else 8
            output_q = quantize(output, bits)
            row.update(metrics.all_metrics(output_q, target))
            row["model_ms"] = model_ms
            if save_path is not None:
                target_path = output_path(save_path, name)
                target_path.parent.mkdir(parents=True, exist_ok=True)
                write_image(target_path, output_q)
        if identity:
            if img.shape != target.shape:
                raise ValueError(f"{name}: input {img.shape} and target {target.shape} differ")
            scores = metrics.all_metrics(_match_depth(img, target), target)
            row.update({f"identity_{k}": v for k, v in scores.items()})
        return row

    rows: list[dict] = []
    model_seconds: list[float] = []
    start = time.perf_counter()
    # numpy releases the GIL in its array loops, so scoring overlaps with the model.
    workers = min(2, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[concurrent.futures.Future] = []
        for name, img, target in tqdm(
            pairs, total=total, desc="evaluate", unit="img", disable=not progress
        ):
            output, model_ms = None, None
            if enhance is not None:
                t0 = time.perf_counter()
                output = np.asarray(enhance(to_float(img)))  # blocks until computed
                model_seconds.append(time.perf_counter() - t0)
                model_ms = 1e3 * model_seconds[-1]
                if output.shape != target.shape:
                    raise ValueError(
                        f"{name}: output {output.shape} and target {target.shape} differ"
                    )
            pending.append(pool.submit(finish, name, output, img, target, model_ms))
            # Bound the images held in memory.
            while len(pending) > workers + 1:
                rows.append(pending.pop(0).result())
        rows.extend(f.result() for f in pending)
    wall = time.perf_counter() - start
    return rows, summarize(rows, model_seconds, wall)


def summarize(rows: list[dict], model_seconds: Sequence[float], wall_seconds: float) -> dict:
    """Mean metrics over ``rows`` and the timing figures."""
    summary: dict = {"count": len(rows), "wall_seconds": wall_seconds}
    summary["images_per_s"] = len(rows) / wall_seconds if wall_seconds > 0 else None
    for prefix, key in (("", "model"), ("identity_", "identity")):
        if rows and f"{prefix}psnr" in rows[0]:
            summary[key] = {
                m: float(np.mean([r[f"{prefix}{m}"] for r in rows])) for m in metrics.METRIC_NAMES
            }
    if model_seconds:
        # The first call compiles for its shape; report the steady state without it too.
        steady = list(model_seconds[1:]) or list(model_seconds)
        summary["model_ms_first"] = 1e3 * model_seconds[0]
        summary["model_ms_median"] = 1e3 * float(np.median(steady))
        summary["model_images_per_s"] = len(steady) / float(np.sum(steady))
    return summary


def write_report(folder: Path, rows: list[dict], summary: dict) -> tuple[Path, Path]:
    """``metrics.csv`` and ``summary.json`` in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = folder / "metrics.csv", folder / "summary.json"
    fields = list(rows[0]) if rows else ["name"]
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()}
            )
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    return csv_path, json_path


def format_summary(summary: dict) -> str:
    lines = [f"{summary['count']} images"]
    for key in ("model", "identity"):
        if key in summary:
            values = "  ".join(
                f"{metrics.METRIC_LABELS[m][0]} {metrics.format_metric(m, summary[key][m])}"
                for m in metrics.METRIC_NAMES
            )
            lines.append(f"{key:>8}: {values}")
    if "model_images_per_s" in summary:
        lines.append(
            f"model: {summary['model_ms_median']:.1f} ms/image median "
            f"({summary['model_images_per_s']:.2f} images/s; first call "
            f"{summary['model_ms_first']:.0f} ms incl. compilation)"
        )
    lines.append(f"overall: {summary['images_per_s']:.2f} images/s including I/O and metrics")
    return "\n".join(lines)
