"""Per-entry error bounds for the transform's gradients, which are sums over pixels.

A gradient entry summed over many pixels in another order (float64 accumulators on the
CPU, atomics on the GPU, XLA's scatter in the reference) differs by rounding that grows
with the sum of the magnitudes of its terms, not with the entry itself (terms cancel).
:func:`absolute_sums` computes, in float64 numpy and independently of the op, that sum
of |terms| for every entry of the image, LUT and vertex gradients; tolerances scaled by
it are per entry, so a wrong cell or a lost term shows up even where the gradient is
small, and heavy cancellation does not fail a correct kernel.
"""

from __future__ import annotations

import numpy as np


def _positions(x: np.ndarray, row: np.ndarray):
    """Cell, fraction and denominator of each value of ``x`` in the sorted ``row``
    (the op's semantics: lower bound, minus one, clamped; eps 1e-10)."""
    d = row.shape[0]
    k = np.clip(np.searchsorted(row, x, side="left") - 1, 0, d - 2)
    denom = row[k + 1] - row[k] + 1e-10
    return k, (x - row[k]) / denom, denom


def absolute_sums(img, lut, vertices, cot):
    """``(S_img, S_lut, S_vertices)``: per entry, the sum over pixels and channels of the
    absolute values of the terms the gradient of ``sum(cot * out)`` adds up.

    Shapes as the op's: ``img``/``cot`` (..., H, W, 3), ``lut`` (..., 3, D, D, D),
    ``vertices`` (..., 3, D) with sorted rows.
    """
    img, lut, vertices, cot = (np.asarray(a, np.float64) for a in (img, lut, vertices, cot))
    batch = img.shape[:-3]
    d = lut.shape[-1]
    s_img = np.zeros(img.shape)
    s_lut = np.zeros(lut.shape)
    s_vert = np.zeros(vertices.shape)
    for b in np.ndindex(*batch):
        px = img[b].reshape(-1, 3)
        g = cot[b].reshape(-1, 3)
        table = lut[b].reshape(3, -1)
        ks, ts, dens = zip(*(_positions(px[:, c], vertices[b][c]) for c in range(3)))
        base = (ks[2] * d + ks[1]) * d + ks[0]
        w = [np.stack([1 - t, t]) for t in ts]  # per axis: weights of steps 0 and 1
        corners = [(h, i, j) for j in (0, 1) for i in (0, 1) for h in (0, 1)]
        lut_abs = np.zeros((3, d**3))
        # dout_c / dt_axis as a sum of |weight * lattice difference| terms, per channel.
        dt_abs = np.zeros((px.shape[0], 3))  # per axis, summed over output channels
        for h, i, j in corners:
            idx = base + (j * d + i) * d + h
            weight = np.abs(w[0][h] * w[1][i] * w[2][j])
            for c in range(3):
                lut_abs[c] += np.bincount(idx, np.abs(g[:, c]) * weight, minlength=d**3)
        for axis in range(3):
            step = (1, d, d * d)[axis]
            others = [a for a in range(3) if a != axis]
            for s0 in (0, 1):
                for s1 in (0, 1):
                    offset = s0 * (1, d, d * d)[others[0]] + s1 * (1, d, d * d)[others[1]]
                    weight = np.abs(w[others[0]][s0] * w[others[1]][s1])
                    for c in range(3):
                        # The difference of two lattice values is rounded relative to
                        # the values, not to the (possibly much smaller) difference.
                        ends = np.abs(table[c, base + offset + step]) + np.abs(
                            table[c, base + offset]
                        )
                        dt_abs[:, axis] += np.abs(g[:, c]) * weight * ends
        s_lut[b] = lut_abs.reshape(3, d, d, d)
        for axis in range(3):
            row, k = vertices[b][axis], ks[axis]
            # d/dx = G / denom, and denom = v[k+1] - v[k] + eps is itself a difference:
            # its rounding, relative to the vertices, is amplified by |v| / denom.
            cond = 1 + (np.abs(row[k]) + np.abs(row[k + 1]) + np.abs(px[:, axis])) / np.abs(
                dens[axis]
            )
            per_pixel = dt_abs[:, axis] / np.abs(dens[axis]) * cond
            s_img[b][..., axis] = per_pixel.reshape(img.shape[-3:-1])
            t = ts[axis]
            s_vert[b][axis] += np.bincount(k, per_pixel * np.abs(1 - t), minlength=d)
            s_vert[b][axis] += np.bincount(k + 1, per_pixel * np.abs(t), minlength=d)
    return s_img, s_lut, s_vert


def assert_gradients_within(got, want, sums, dtype, *, ulps: float, rtol: float = 0.0):
    """Each entry: ``|got - want| <= rtol * |want| + ulps * eps(dtype) * S``, S the
    entry's sum of |terms|. Reports the worst entry of each gradient."""
    eps = float(np.finfo(dtype).eps)
    for name, a, b, s in zip(("img", "lut", "vertices"), got, want, sums):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        bound = rtol * np.abs(b) + ulps * eps * s
        excess = np.abs(a - b) - bound
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        assert excess[worst] <= 0, (
            f"gradient w.r.t. {name}: entry {worst} is {a[worst]!r}, expected {b[worst]!r} "
            f"(sum of |terms| {s[worst]:.3g}, allowed difference {bound[worst]:.3g})"
        )


def worst_ratio(got, want, sums, dtype) -> list[float]:
    """Per gradient, the largest ``|got - want| / (eps * S)`` (for calibrating ``ulps``)."""
    eps = float(np.finfo(dtype).eps)
    out = []
    for a, b, s in zip(got, want, sums):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.abs(a - b) / (eps * s)
        out.append(float(np.nanmax(np.where(s > 0, r, np.where(a == b, 0, np.inf)))))
    return out
