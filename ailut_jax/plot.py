"""``ailut plot``: what a model does to one image, in one figure.

Top: the input and the enhanced output side by side. Bottom, from left to right: the
learned sampling vertices of the three channels against the uniform grid (AdaInt puts
more vertices where the colour mapping bends), the same vertices as tick marks on
``[0, 1]``, and the response of each output channel along the grey axis
``(t, t, t)``, against the identity.
"""

from __future__ import annotations

import io
from pathlib import Path

import jax.numpy as jnp
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.gridspec import GridSpec
from PIL import Image

from ailut_jax.ops import ailut_transform

CHANNEL_COLORS = ("#d62728", "#2ca02c", "#1f77b4")  # R, G, B
CHANNEL_NAMES = ("R", "G", "B")


def grey_axis_response(lut, vertices, n: int = 256, *, impl: str = "auto"):
    """``(t, out)``: the transform of the grey ramp ``(t, t, t)``, ``out`` of shape ``(n, 3)``."""
    lut = jnp.asarray(lut)
    t = np.linspace(0.0, 1.0, n)
    ramp = jnp.asarray(np.repeat(t[None, :, None], 3, axis=-1), lut.dtype)
    out = ailut_transform(ramp, lut, jnp.asarray(vertices, lut.dtype), impl=impl)
    return t, np.asarray(out[0], np.float64)


def draw_vertices(ax, vertices) -> None:
    """The learned sampling vertices of R, G and B against the uniform grid, on ``ax``.

    The one vertex plot of the project: ``ailut plot`` draws it for one image and each
    training generation's ``vertices.png`` for its test images.

    Args:
      ax: a matplotlib axes.
      vertices: ``(3, D)`` for one image (one curve per channel), or ``(N, 3, D)`` for
        ``N`` images (the mean curve per channel and, shaded, the range over the images).
    """
    vertices = np.asarray(vertices, np.float64)
    if vertices.ndim == 2:
        vertices = vertices[None]
    if vertices.ndim != 3 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must be (3, D) or (N, 3, D), got shape {vertices.shape}")
    n, _, d = vertices.shape
    uniform = np.arange(d) / (d - 1)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="uniform")
    mean = vertices.mean(axis=0)
    for c in range(3):
        if n > 1:
            ax.fill_between(uniform, vertices[:, c].min(0), vertices[:, c].max(0),
                            color=CHANNEL_COLORS[c], alpha=0.2, lw=0)  # fmt: skip
        ax.plot(uniform, mean[c], color=CHANNEL_COLORS[c], marker=".", ms=4, lw=1.2,
                label=CHANNEL_NAMES[c])  # fmt: skip
    what = f"D = {d}" if n == 1 else f"D = {d}, mean and range over {n} images"
    ax.set_title(f"learned vertices ({what})")
    ax.set_xlabel("vertex index / (D - 1)")
    ax.set_ylabel("sampling coordinate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_box_aspect(1)
    ax.legend(loc="upper left", fontsize="small")


def vertex_figure(vertices, *, title: str | None = None):
    """A figure holding only :func:`draw_vertices` (training reports' ``vertices.png``)."""
    matplotlib.use("Agg", force=False)
    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    draw_vertices(ax, vertices)
    if title:
        fig.suptitle(title)
    return fig


def make_figure(
    img: np.ndarray,
    output: np.ndarray,
    lut,
    vertices,
    *,
    weights=None,
    title: str | None = None,
    impl: str = "auto",
):
    """The matplotlib figure for one image: float ``(H, W, 3)`` input and output in [0, 1],
    the ``(3, D, D, D)`` LUT, ``(3, D)`` vertices and optionally the ``(M,)`` rank weights.
    """
    # Off-screen rendering unless the caller already chose a backend.
    matplotlib.use("Agg", force=False)
    vertices = np.asarray(vertices, np.float64)
    uniform = np.arange(vertices.shape[-1]) / (vertices.shape[-1] - 1)

    fig = plt.figure(figsize=(12, 8.2), layout="constrained")
    grid = GridSpec(2, 6, figure=fig, height_ratios=(1.25, 1))
    for k, (image, label) in enumerate(((img, "input"), (output, "output"))):
        ax = fig.add_subplot(grid[0, 3 * k : 3 * k + 3])
        ax.imshow(np.clip(image, 0, 1), interpolation="lanczos")
        ax.set_title(label)
        ax.set_axis_off()

    draw_vertices(fig.add_subplot(grid[1, 0:2]), vertices)

    ax = fig.add_subplot(grid[1, 2:4])
    rows = [uniform, *vertices]
    ax.eventplot(rows[::-1], colors=["0.5", *CHANNEL_COLORS][::-1], lineoffsets=range(4),
                 linelengths=0.7, linewidths=1.2)  # fmt: skip
    ax.set_yticks(range(4), ["B", "G", "R", "uniform"])
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("input value")
    ax.set_title("vertex positions")

    ax = fig.add_subplot(grid[1, 4:6])
    t, response = grey_axis_response(lut, vertices, impl=impl)
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="identity")
    for c in range(3):
        ax.plot(t, response[:, c], color=CHANNEL_COLORS[c], lw=1.5, label=f"out {CHANNEL_NAMES[c]}")
    ax.set_title("response along the grey axis")
    ax.set_xlabel("input grey level t  (R = G = B = t)")
    ax.set_ylabel("output")
    ax.set_xlim(0, 1)
    low, high = min(0.0, response.min()), max(1.0, response.max())
    ax.set_ylim(low - 0.02, high + 0.02)
    ax.set_box_aspect(1)
    ax.legend(loc="upper left", fontsize="small")

    if weights is not None:
        w = ", ".join(f"{x:+.3f}" for x in np.ravel(weights))
        title = f"{title}\nrank weights [{w}]" if title else f"rank weights [{w}]"
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, path: str | Path, *, dpi: int = 100, colors: int | None = None) -> None:
    """Save ``fig`` as PNG; ``colors`` quantises it to a palette to keep the file small."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        im = im.convert("RGB")
        if colors is not None:
            im = im.quantize(
                colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
            )
        tmp = path.with_name(f".{path.name}.tmp.png")
        try:
            im.save(tmp, format="PNG", optimize=True)
            tmp.replace(path)
        finally:
            if tmp.exists():
                tmp.unlink()
