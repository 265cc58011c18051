"""The optimizer and the jitted, data-parallel training step.

Batches are flat canvases (:mod:`ailut_jax.data.canvas`): ``{"input", "target": (B, N,
3), "size": (B, 2)}``, each crop row-major in the first ``h * w`` rows of its canvas.
The backbone sees the thumbnail of each crop's valid pixels only
(:func:`~ailut_jax.models.layers.resize_bilinear_flat`), the transform runs per pixel,
and the loss is masked to the valid pixels, so loss and gradients are those of the
unpadded crops while one compiled step serves every crop of the canvas size.

State is kept functional: ``params`` (``nnx.Param`` state), ``batch_stats``
(``nnx.BatchStat`` state, empty for the CNN backbone) and an optax ``opt_state``, so
one step is a pure function that ``jax.pmap`` maps over local devices. Gradients (and
BatchNorm statistics) are averaged with ``lax.pmean`` over the device axis; with equal
per-device batches that is exactly the gradient of the global-batch loss.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ailut_jax import losses
from ailut_jax.data.canvas import valid_mask
from ailut_jax.models import AiLUT, ModelOutput, apply_lut
from ailut_jax.models.layers import resize_bilinear_flat

AXIS = "devices"


class FreezeState(NamedTuple):
    count: jax.Array
    inner: optax.OptState


def frozen_for(inner: optax.GradientTransformation, n_steps: int) -> optax.GradientTransformation:
    """``inner``, except that for its first ``n_steps`` updates it does nothing at all.

    As PyTorch's ``requires_grad = False`` in the original: the parameters do not move
    and the inner optimizer's state (Adam moments, step count) does not advance, so
    Adam's bias correction starts afresh when the parameters are released.
    """

    def init(params):
        return FreezeState(jnp.zeros([], jnp.int32), inner.init(params))

    def update(updates, state, params=None):
        new_updates, new_inner = inner.update(updates, state.inner, params)
        frozen = state.count < n_steps
        new_updates = jax.tree.map(lambda u: jnp.where(frozen, jnp.zeros_like(u), u), new_updates)
        new_inner = jax.tree.map(lambda a, b: jnp.where(frozen, a, b), state.inner, new_inner)
        return new_updates, FreezeState(optax.safe_increment(state.count), new_inner)

    return optax.GradientTransformation(init, update)


def _is_adaint(path) -> bool:
    return any(getattr(k, "key", None) == "adaint" for k in path)


def param_labels(params):
    """``"adaint"`` for the AdaInt interval generator's parameters, ``"main"`` otherwise."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "adaint" if _is_adaint(path) else "main", params
    )


def learning_rate(optim, peak: float, steps: int):
    """Constant ``peak`` (the original) or, with ``optim.schedule == "cosine"``, a linear
    warmup over ``optim.warmup_steps`` then cosine decay to 0 at ``steps``."""
    if optim.schedule == "constant":
        return peak
    warmup = min(optim.warmup_steps, max(steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(steps, warmup + 1))


def make_optimizer(optim, steps: int = 1) -> optax.GradientTransformation:
    """Adam (AdamW when ``weight_decay``) at ``lr``; AdaInt at ``adaint_lr_mult * lr``,
    frozen for its first ``n_fix_iters`` steps. ``steps``: length of a generation (for
    a decaying schedule; AdaInt's schedule starts when it is released)."""

    def adam(lr):
        if optim.weight_decay:
            return optax.adamw(lr, optim.b1, optim.b2, optim.eps, weight_decay=optim.weight_decay)
        return optax.adam(lr, optim.b1, optim.b2, optim.eps)

    adaint_steps = max(steps - optim.n_fix_iters, 1)
    return optax.multi_transform(
        {
            "main": adam(learning_rate(optim, optim.lr, steps)),
            "adaint": frozen_for(
                adam(learning_rate(optim, optim.lr * optim.adaint_lr_mult, adaint_steps)),
                optim.n_fix_iters,
            ),
        },
        param_labels,
    )


class StepConfig(NamedTuple):
    """What the step needs besides state: loss weights, distillation, transform impl."""

    sparsity: float
    monotonicity: float
    smoothness: float
    distill_weight: float = 0.0
    distill_targets: tuple[str, ...] = ("output",)
    impl: str = "auto"


def step_config(config, *, distill: bool) -> StepConfig:
    """The :class:`StepConfig` of a validated :class:`~ailut_jax.train.config.TrainConfig`."""
    return StepConfig(
        sparsity=config.loss.sparsity,
        monotonicity=config.loss.monotonicity,
        smoothness=config.loss.smoothness,
        distill_weight=config.distill.weight if distill else 0.0,
        distill_targets=config.distill.targets,
        impl=config.impl,
    )


def canvas_forward(model: AiLUT, pixels, sizes, *, deterministic: bool, impl: str):
    """The model on flat canvases ``(B, N, 3)`` holding crops of ``sizes`` ``(B, 2)``.

    Equal to ``model(crop)`` for each crop: the thumbnail is resized from the crop's own
    pixels, and the transform is per pixel (padding is transformed too, and ignored by
    the loss). Returns a :class:`~ailut_jax.models.ModelOutput` whose ``output`` is
    ``(B, N, 3)``.
    """
    size = model.config.input_size
    thumbnail = resize_bilinear_flat(pixels, sizes, (size, size))
    lut, vertices, weights = model.predict_lut(thumbnail, deterministic=deterministic)
    output = apply_lut(
        pixels[:, None], lut, vertices, adaptive=model.adaint is not None, impl=impl
    )[:, 0]
    return ModelOutput(output=output, lut=lut, vertices=vertices, weights=weights)


def split_model(model: AiLUT):
    """``(graphdef, params, batch_stats, rng_state)`` of a model."""
    return nnx.split(model, nnx.Param, nnx.BatchStat, ...)


def _with_dropout_key(rng_state, key):
    # The dropout stream is re-keyed every step from (generation seed, step, device), so
    # a resumed run draws exactly the masks the uninterrupted one did.
    def leaf(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return key if not x.shape else jax.random.split(key, x.shape)
        return jnp.zeros_like(x)

    return jax.tree.map(leaf, rng_state)


def make_train_step(
    graphdef,
    rng_state,
    tx: optax.GradientTransformation,
    cfg: StepConfig,
    *,
    axis_name: str | None = None,
    teacher_graphdef=None,
    trace_counter: list | None = None,
):
    """The per-device training step (un-jitted; :func:`pmap_train_step` wraps it).

    ``step(params, batch_stats, opt_state, batch, key, step, teacher)`` with ``batch``
    flat canvases ``{"input", "target": (b, N, 3), "size": (b, 2)}``, ``key`` the
    generation's PRNG key, ``step`` an int32 scalar and ``teacher`` ``(params,
    batch_stats)`` of the frozen previous generation or ``None``. Returns ``(params,
    batch_stats, opt_state, metrics)``.
    ``axis_name``: average gradients and metrics over that ``pmap`` axis.
    """
    distill = cfg.distill_weight > 0 and teacher_graphdef is not None

    def step(params, batch_stats, opt_state, batch, key, step, teacher):
        if trace_counter is not None:
            trace_counter.append(1)
        key = jax.random.fold_in(key, step)
        if axis_name is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        inp, target, sizes = batch["input"], batch["target"], batch["size"]
        mask = valid_mask(sizes, inp.shape[1])

        teacher_out = None
        if distill:
            t_params, t_stats = teacher
            t_params, t_stats = jax.lax.stop_gradient((t_params, t_stats))
            t_model = nnx.merge(teacher_graphdef, t_params, t_stats, rng_state)
            teacher_out = canvas_forward(t_model, inp, sizes, deterministic=True, impl=cfg.impl)
            teacher_out = jax.lax.stop_gradient(teacher_out)

        def loss_fn(params):
            # Built inside the differentiated function: nnx variables may only be
            # mutated (the dropout RNG count) at the trace level that created them.
            dropout_state = _with_dropout_key(rng_state, key)
            stats = jax.tree.map(lambda x: x, batch_stats)
            model = nnx.merge(graphdef, params, stats, dropout_state)
            out = canvas_forward(model, inp, sizes, deterministic=False, impl=cfg.impl)
            loss, terms = losses.total_loss(
                out,
                target,
                model.basis_luts(),
                sparsity=cfg.sparsity,
                monotonicity=cfg.monotonicity,
                smoothness=cfg.smoothness,
                mask=mask,
            )
            if distill:
                dist = sum(
                    losses.masked_mse(out.output, teacher_out.output, mask)
                    if name == "output"
                    else losses.mse(getattr(out, name), getattr(teacher_out, name))
                    for name in cfg.distill_targets
                )
                terms["distill"] = dist
                loss = loss + cfg.distill_weight * dist
                terms["loss"] = loss
            new_stats = nnx.state(model, nnx.BatchStat)
            return loss, (terms, new_stats)

        (loss, (terms, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            terms = jax.lax.pmean(terms, axis_name)
            new_stats = jax.lax.pmean(new_stats, axis_name)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        terms["grad_norm"] = optax.global_norm(grads)
        terms["param_norm"] = optax.global_norm(params)
        terms["psnr"] = -10.0 * jnp.log10(jnp.maximum(terms["mse"], 1e-12))
        return params, new_stats, opt_state, terms

    return step


def pmap_train_step(step_fn):
    """``jax.pmap`` of a step made with ``axis_name=AXIS``: state replicated (donated),
    the batch split along a leading device axis, key and step broadcast."""
    return jax.pmap(
        step_fn,
        axis_name=AXIS,
        in_axes=(0, 0, 0, 0, None, None, 0),
        donate_argnums=(0, 1, 2),
    )


def shard_batch(batch: dict, n_devices: int) -> dict:
    """``(B, ...)`` -> ``(n_devices, B / n_devices, ...)`` for the arrays of a canvas batch."""

    def split(x):
        if x.shape[0] % n_devices:
            raise ValueError(f"batch of {x.shape[0]} does not split over {n_devices} devices")
        return x.reshape((n_devices, x.shape[0] // n_devices) + x.shape[1:])

    return {k: split(batch[k]) for k in ("input", "target", "size")}


def replicate(tree):
    """Copy a pytree onto each local device (a leading device axis).

    Placed by a ``pmap`` over :data:`AXIS`, so the arrays carry the same sharding as the
    step's outputs: the step then traces once instead of again on its second call. With
    several processes, every process calls it with the same tree.
    """
    import numpy as np

    n = jax.local_device_count()
    if not jax.tree_util.tree_leaves(tree):
        return tree
    stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), tree)
    return jax.pmap(lambda t: t, axis_name=AXIS)(stacked)


def unreplicate(tree):
    """The first local device's copy of a replicated pytree, as host arrays."""

    def first(x):
        shard = x.addressable_shards[0].data
        return jax.device_get(shard[0] if shard.ndim == x.ndim else shard)

    return jax.tree.map(first, tree)
