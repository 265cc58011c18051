"""AdaInt's training objective (docs/training.md#losses).

``L = MSE(out, target) + 1e-4 * mean(w^2) + 10 * mono(basis) + 0 * tv(basis)``

``basis`` is the ``(M, 3, D, D, D)`` stack of basis LUTs (``model.basis_luts()``). The
regularisers follow the authors' ``LUTGenerator.regularizations``: for each lattice axis,
the steps ``T[k] - T[k+1]`` along it are penalised, summed over the ``M`` ranks and
averaged over everything else, and the three axes are added up.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Weights of the FiveK AdaInt configuration.
DEFAULT_WEIGHTS = {"sparsity": 1e-4, "monotonicity": 10.0, "smoothness": 0.0}


def mse(output: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error over all elements."""
    if output.shape != target.shape:
        raise ValueError(f"output {output.shape} and target {target.shape} shapes differ")
    return jnp.mean(jnp.square(output - target))


def masked_mse(output: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error of flat, padded images: ``(B, N, C)`` with ``mask`` ``(B, N)``
    marking the valid pixels. Each image's error is averaged over its own valid
    elements, then the images are averaged: for images of one size this is
    :func:`mse` of the unpadded batch, and padding never contributes."""
    if output.shape != target.shape or output.shape[:2] != mask.shape:
        raise ValueError(
            f"output {output.shape}, target {target.shape} and mask {mask.shape} do not match"
        )
    mask = mask.astype(output.dtype)
    sq = jnp.square(output - target).sum(axis=-1)
    per_image = (sq * mask).sum(axis=1) / (mask.sum(axis=1) * output.shape[-1])
    return jnp.mean(per_image)


def rank_sparsity(weights: jax.Array) -> jax.Array:
    """``mean(w^2)`` over the ``(B, M)`` rank weights."""
    return jnp.mean(jnp.square(weights))


def _check_basis(basis: jax.Array) -> None:
    if basis.ndim != 5 or basis.shape[1] != 3 or len(set(basis.shape[2:])) != 1:
        raise ValueError(f"basis must have shape (M, 3, D, D, D), got {basis.shape}")


def _decreasing_steps(basis: jax.Array):
    """``T[k] - T[k+1]`` along each lattice axis (b, g, r): three arrays."""
    _check_basis(basis)
    return [-jnp.diff(basis, axis=axis) for axis in (2, 3, 4)]


def monotonicity(basis: jax.Array) -> jax.Array:
    """``sum_axes sum_m mean(relu(T[k] - T[k+1]))``: zero for non-decreasing LUTs."""
    return sum(jax.nn.relu(step).sum(axis=0).mean() for step in _decreasing_steps(basis))


def smoothness(basis: jax.Array) -> jax.Array:
    """``sum_axes sum_m mean((T[k] - T[k+1])^2)``, the total-variation term."""
    return sum(jnp.square(step).sum(axis=0).mean() for step in _decreasing_steps(basis))


def total_loss(
    out,
    target: jax.Array,
    basis: jax.Array,
    *,
    sparsity: float = DEFAULT_WEIGHTS["sparsity"],
    monotonicity: float = DEFAULT_WEIGHTS["monotonicity"],
    smoothness: float = DEFAULT_WEIGHTS["smoothness"],
    mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The full objective for one batch.

    Args:
      out: the model's :class:`~ailut_jax.models.ModelOutput` (``output``, ``weights``).
      target: ``(B, H, W, 3)`` ground truth, or ``(B, N, 3)`` flat canvases with ``mask``.
      basis: ``(M, 3, D, D, D)`` basis LUTs.
      sparsity, monotonicity, smoothness: weights of the regularisers.
      mask: ``(B, N)`` valid pixels of flat, padded canvases (:func:`masked_mse`).

    Returns:
      ``(loss, terms)`` where ``terms`` holds the unweighted ``mse``, ``sparsity``,
      ``monotonicity`` and ``smoothness`` values and the weighted ``loss``.
    """
    terms = {
        "mse": mse(out.output, target) if mask is None else masked_mse(out.output, target, mask),
        "sparsity": rank_sparsity(out.weights),
        "monotonicity": _monotonicity(basis),
        "smoothness": _smoothness(basis),
    }
    loss = (
        terms["mse"]
        + sparsity * terms["sparsity"]
        + monotonicity * terms["monotonicity"]
        + smoothness * terms["smoothness"]
    )
    terms["loss"] = loss
    return loss, terms


# total_loss's keyword arguments shadow the functions inside it.
_monotonicity = monotonicity
_smoothness = smoothness
