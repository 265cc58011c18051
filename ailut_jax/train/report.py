"""What the user sees: TensorBoard events, a CSV of metrics, per-generation figures."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


class MetricWriter:
    """TensorBoard event files under ``workdir/tensorboard`` plus ``workdir/metrics.csv``
    (long format: generation, step, name, value; appended across restarts).
    Writes nothing when ``enabled`` is False (processes other than 0)."""

    def __init__(self, workdir: Path, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self._tb = SummaryWriter(str(workdir / "tensorboard"))
        path = workdir / "metrics.csv"
        new = not path.exists()
        self._file = open(path, "a", newline="")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(["generation", "global_step", "step", "name", "value"])

    def write(self, generation: int, global_step: int, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        for name, value in scalars.items():
            value = float(value)
            self._tb.add_scalar(f"gen{generation}/{name}", value, global_step)
            self._csv.writerow([generation, global_step, step, name, f"{value:.8g}"])
        self._file.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._file.close()


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_grid(path: Path, rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], title: str):
    """Before/after grid: one row per photo (input | output | target)."""
    plt = _plt()
    n = len(rows)
    fig, axes = plt.subplots(n, 3, figsize=(10, 3.0 * n), squeeze=False, layout="constrained")
    for i, (name, inp, out, target) in enumerate(rows):
        for j, (img, label) in enumerate(((inp, "input"), (out, "output"), (target, "target"))):
            ax = axes[i, j]
            ax.imshow(np.clip(img, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label)
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_vertex_plot(path: Path, vertices: np.ndarray, title: str) -> None:
    """Learned vertices ``(N, 3, D)`` of N test photos (mean and range per channel)
    against the uniform grid: :func:`ailut_jax.plot.draw_vertices`, the figure
    ``ailut plot`` draws for one photo."""
    from ailut_jax.plot import save_figure, vertex_figure

    save_figure(vertex_figure(vertices, title=title), path, dpi=80)
