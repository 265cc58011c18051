"""Training step: optimizer groups and freeze, pmap over 2 CPU devices == one device, one
trace; padded canvases give the loss and gradients of the unpadded crops; one compile per
canvas size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ailut_jax import losses
from ailut_jax.data import canvas
from ailut_jax.models import AiLUT, ModelConfig
from ailut_jax.train import base_config, validate_config
from ailut_jax.train import step as step_lib


def test_adaint_lr_is_a_tenth_and_frozen_for_n_fix_iters():
    optim = base_config().optim
    optim.lr, optim.n_fix_iters = 1e-2, 2
    tx = step_lib.make_optimizer(optim)
    params = {"adaint": {"w": jnp.zeros(3)}, "backbone": {"w": jnp.zeros(3)}}
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    history = []
    for _ in range(4):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        history.append(jax.tree.map(lambda x: float(x[0]), params))
    # Adam on a constant gradient moves each parameter by lr per step (bias-corrected).
    main = [h["backbone"]["w"] for h in history]
    np.testing.assert_allclose(main, [-0.01, -0.02, -0.03, -0.04], rtol=1e-5)
    adaint = [h["adaint"]["w"] for h in history]
    # Frozen for two steps, then 0.1x the learning rate with a fresh Adam state.
    np.testing.assert_allclose(adaint, [0.0, 0.0, -0.001, -0.002], rtol=1e-5)


def test_cosine_schedule_warms_up_then_decays_to_zero_per_group():
    """optim.schedule = "cosine": linear warmup from 0, cosine decay to 0 at the end of the
    generation; AdaInt (0.1x) is frozen for n_fix_iters and runs its own schedule after."""
    optim = base_config().optim
    optim.lr, optim.schedule, optim.warmup_steps, optim.n_fix_iters = 1e-2, "cosine", 2, 3
    steps = 10
    tx = step_lib.make_optimizer(optim, steps)
    params = {"adaint": {"w": jnp.zeros(())}, "backbone": {"w": jnp.zeros(())}}
    grads = jax.tree.map(jnp.ones_like, params)
    state = tx.init(params)
    moves = {"adaint": [], "backbone": []}
    for _ in range(steps):
        updates, state = tx.update(grads, state, params)
        for group in moves:
            moves[group].append(-float(updates[group]["w"]))

    def expected(peak, warmup, total, t):
        if t < warmup:
            return peak * t / warmup
        return 0.5 * peak * (1 + np.cos(np.pi * (t - warmup) / (total - warmup)))

    # Adam on a constant gradient of 1 moves a parameter by the learning rate.
    want = [expected(1e-2, 2, steps, t) for t in range(steps)]
    np.testing.assert_allclose(moves["backbone"], want, rtol=1e-4, atol=1e-9)
    assert moves["backbone"][0] == 0 and max(moves["backbone"]) == pytest.approx(1e-2, rel=1e-4)
    assert moves["backbone"][-1] < 0.05 * 1e-2  # decayed to a few % of the peak at the end
    adaint_want = [0.0] * 3 + [expected(1e-3, 2, steps - 3, t) for t in range(steps - 3)]
    np.testing.assert_allclose(moves["adaint"], adaint_want, rtol=1e-4, atol=1e-10)
    # The constant schedule (the authors') keeps the full rate throughout.
    optim.schedule = "constant"
    const = step_lib.make_optimizer(optim, steps)
    updates, _ = const.update(grads, const.init(params), params)
    assert -float(updates["backbone"]["w"]) == pytest.approx(1e-2, rel=1e-4)


def test_labels_select_exactly_the_adaint_parameters():
    model = AiLUT(ModelConfig(n_vertices=9, input_size=64), rngs=nnx.Rngs(0))
    _, params, _, _ = step_lib.split_model(model)
    labels = jax.tree_util.tree_leaves_with_path(step_lib.param_labels(params))
    adaint = sorted(jax.tree_util.keystr(p) for p, label in labels if label == "adaint")
    assert adaint == [
        "['adaint']['intervals_generator']['bias'].value",
        "['adaint']['intervals_generator']['kernel'].value",
    ]
    assert sum(label == "main" for _, label in labels) == len(labels) - 2


def _setup(distill: bool):
    config = base_config()
    config.optim.lr, config.optim.n_fix_iters = 1e-3, 0
    config.distill.targets = ("output", "lut", "vertices")
    # No dropout: the per-device masks of a pmap run cannot equal one global mask.
    mcfg = ModelConfig(n_vertices=9, input_size=64, dropout=0.0)
    graphdef, params, stats, rng_state = step_lib.split_model(AiLUT(mcfg, rngs=nnx.Rngs(0)))
    tx = step_lib.make_optimizer(config.optim)
    teacher_model = AiLUT(mcfg, rngs=nnx.Rngs(1))
    _, t_params, t_stats, _ = step_lib.split_model(teacher_model)
    cfg = step_lib.step_config(validate_config(config), distill=distill)
    return graphdef, params, stats, rng_state, tx, cfg, (t_params, t_stats)


@pytest.mark.parametrize(
    "distill,optimizer",
    [(False, "sgd"), (True, "sgd"), (True, "adam")],
    ids=["teacher-sgd", "student-sgd", "student-adam"],
)
def test_pmap_step_on_two_devices_equals_single_device_step(distill, optimizer):
    devices = jax.local_devices()
    assert len(devices) == 2, "conftest forces 2 CPU devices"
    graphdef, params, stats, rng_state, tx, cfg, teacher = _setup(distill)
    if optimizer == "sgd":
        # Adam turns a gradient near zero into a full +-lr step, so f32 summation-order
        # noise (one sum over 4 images vs two sums over 2) flips the sign of a few
        # updates. SGD keeps the comparison about the gradient averaging itself.
        tx = optax.sgd(0.01)
    opt_state = tx.init(params)
    rng = np.random.default_rng(0)
    batches = [
        canvas.collate(
            [
                {
                    "input": rng.random((24, 32, 3), dtype=np.float32),
                    "target": rng.random((24, 32, 3), dtype=np.float32),
                }
                for _ in range(4)
            ],
            (1024,),
        )
        for _ in range(3)
    ]
    key = jax.random.key(3)
    tgd = graphdef if distill else None
    single = jax.jit(step_lib.make_train_step(graphdef, rng_state, tx, cfg, teacher_graphdef=tgd))
    traces = []
    p_step = step_lib.pmap_train_step(
        step_lib.make_train_step(
            graphdef,
            rng_state,
            tx,
            cfg,
            axis_name=step_lib.AXIS,
            teacher_graphdef=tgd,
            trace_counter=traces,
        )
    )
    t_single = teacher if distill else None
    t_rep = step_lib.replicate(teacher) if distill else None
    s_params, s_stats, s_opt = params, stats, opt_state
    p_params, p_stats, p_opt = (step_lib.replicate(x) for x in (params, stats, opt_state))
    for i, batch in enumerate(batches):
        s_params, s_stats, s_opt, s_metrics = single(
            s_params, s_stats, s_opt, batch, key, jnp.int32(i), t_single
        )
        p_params, p_stats, p_opt, p_metrics = p_step(
            p_params, p_stats, p_opt, step_lib.shard_batch(batch, 2), key, jnp.int32(i), t_rep
        )
        if i == 0 or optimizer == "sgd":
            np.testing.assert_allclose(
                float(p_metrics["grad_norm"][0]), float(s_metrics["grad_norm"]), rtol=1e-5
            )
            # A student's loss includes the distillation term against its (different)
            # teacher; both paths compute the same one.
            assert ("distill" in s_metrics) == distill
            if distill:
                assert float(s_metrics["distill"]) > 1e-6
                np.testing.assert_allclose(
                    float(p_metrics["distill"][0]), float(s_metrics["distill"]), rtol=1e-5
                )
    assert len(traces) == 1, "the pmap step must trace once"
    if optimizer == "adam":
        return  # see above: only the first step's gradient is comparable
    got = step_lib.unreplicate(p_params)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(s_params), jax.tree_util.tree_leaves(got)
    ):
        np.testing.assert_allclose(
            np.asarray(a), b, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path)
        )
    # Both replicas hold the same parameters, and the metrics are the global-batch ones.
    for leaf in jax.tree_util.tree_leaves(p_params):
        np.testing.assert_array_equal(np.asarray(leaf[0]), np.asarray(leaf[1]))
    np.testing.assert_allclose(float(p_metrics["loss"][0]), float(s_metrics["loss"]), rtol=1e-5)
    # The step moved the parameters (a no-op step would pass the comparison trivially).
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), s_params, params)
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4


def _crop(rng, h, w):
    return {
        "input": rng.random((h, w, 3), dtype=np.float32),
        "target": rng.random((h, w, 3), dtype=np.float32),
    }


@pytest.mark.parametrize("backbone", ["cnn", "resnet18"])
def test_padded_canvas_gives_the_loss_and_gradients_of_the_unpadded_crops(backbone):
    """Two crops of different sizes and orientations, padded into one canvas: the step's
    loss equals the mean of the crops' own losses (model run on each unpadded crop) and
    its update (SGD, lr 1: minus the gradient) equals the mean of their gradients."""
    mcfg = ModelConfig(backbone=backbone, n_vertices=9, input_size=64, dropout=0.0)
    model = AiLUT(mcfg, rngs=nnx.Rngs(0))
    graphdef, params, stats, rng_state = step_lib.split_model(model)
    config = base_config()
    cfg = step_lib.step_config(validate_config(config), distill=False)
    tx = optax.sgd(1.0)
    step = jax.jit(step_lib.make_train_step(graphdef, rng_state, tx, cfg))
    rng = np.random.default_rng(1)
    crops = [_crop(rng, 37, 53), _crop(rng, 61, 29)]
    batch = canvas.collate(crops, (4096,))
    assert batch["input"].shape == (2, 4096, 3)
    key = jax.random.key(0)
    new_params, _, _, metrics = step(params, stats, tx.init(params), batch, key, jnp.int32(0), None)

    def crop_loss(p, crop):
        m = nnx.merge(graphdef, p, stats, rng_state)
        # ResNet-18 trains with batch statistics; each crop alone is a batch of one, as in
        # the canvas (BatchNorm sees the thumbnails of both: compare the CNN exactly, the
        # ResNet-18 through its per-crop path below).
        out = m(crop["input"][None], deterministic=backbone == "resnet18")
        loss, _ = losses.total_loss(out, crop["target"][None], m.basis_luts(), **cfg_weights)
        return loss

    cfg_weights = dict(sparsity=cfg.sparsity, monotonicity=cfg.monotonicity, smoothness=0.0)
    if backbone == "cnn":
        per_crop = [jax.value_and_grad(crop_loss)(params, c) for c in crops]
        want_loss = np.mean([float(v) for v, _ in per_crop])
        np.testing.assert_allclose(float(metrics["loss"]), want_loss, rtol=2e-6)
        want = jax.tree.map(lambda a, b: (a + b) / 2, per_crop[0][1], per_crop[1][1])
        got = jax.tree.map(lambda new, old: old - new, new_params, params)
        # float32: the canvas sums the same terms in another order (bounded by a small
        # fraction of the leaf's largest gradient), and the update is read back as
        # old - new, which rounds each entry to within one ulp of its parameter.
        for (path, g), w, old in zip(
            jax.tree_util.tree_leaves_with_path(got),
            jax.tree_util.tree_leaves(want),
            jax.tree_util.tree_leaves(params),
        ):
            g, w, old = np.asarray(g), np.asarray(w), np.asarray(old)
            bound = 1e-4 * np.abs(w) + 2e-5 * np.abs(w).max() + np.spacing(np.abs(old))
            excess = np.abs(g - w) - bound
            assert (excess <= 0).all(), (
                f"{jax.tree_util.keystr(path)}: {(excess > 0).sum()} of {w.size} entries "
                f"off by up to {float(np.abs(g - w).max()):.3g}"
            )
    # For every backbone: the canvas forward equals the model on each unpadded crop.
    m = nnx.merge(graphdef, params, stats, rng_state)
    flat = step_lib.canvas_forward(
        m, jnp.asarray(batch["input"]), jnp.asarray(batch["size"]), deterministic=True, impl="auto"
    )
    for i, c in enumerate(crops):
        h, w = c["input"].shape[:2]
        ref = m(c["input"][None], deterministic=True)
        np.testing.assert_allclose(
            canvas.unflatten(np.asarray(flat.output[i]), (h, w)), np.asarray(ref.output[0]),
            rtol=1e-5, atol=1e-6,
        )  # fmt: skip
        np.testing.assert_allclose(
            np.asarray(flat.lut[i]), np.asarray(ref.lut[0]), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(flat.vertices[i]), np.asarray(ref.vertices[0]), rtol=1e-5, atol=1e-6
        )


def test_the_step_compiles_once_per_canvas_size():
    """Ratio crops of 10 image sizes (both orientations), batch 1, 30 steps: the step is
    traced once per canvas size seen, never more than the ladder's 4."""
    from ailut_jax.data.pipeline import make_train_loader

    rng = np.random.default_rng(2)
    shapes = [(40, 72), (72, 40), (50, 50), (64, 48), (48, 64), (80, 60), (60, 80), (45, 90),
              (90, 45), (70, 70)]  # fmt: skip

    class Source:
        input_scale = 255.0
        items = [
            {"input": rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
             "target": rng.integers(0, 256, (*hw, 3), dtype=np.uint8), "id": str(i)}
            for i, hw in enumerate(shapes)
        ]  # fmt: skip

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    lo, hi = canvas.crop_pixel_range(shapes, crop_size=None, resize_to=None)
    ladder = canvas.bucket_ladder(lo, hi, 4)
    it = make_train_loader(Source(), batch_size=1, seed=0, ladder=ladder, shard_count=1,
                           shard_index=0)  # fmt: skip
    mcfg = ModelConfig(n_vertices=9, input_size=32, dropout=0.0)
    graphdef, params, stats, rng_state = step_lib.split_model(AiLUT(mcfg, rngs=nnx.Rngs(0)))
    config = validate_config(base_config())
    tx = step_lib.make_optimizer(config.optim, 30)
    traces = []
    step = jax.jit(
        step_lib.make_train_step(
            graphdef, rng_state, tx, step_lib.step_config(config, distill=False),
            trace_counter=traces,
        ),
        donate_argnums=(0, 1, 2),
    )  # fmt: skip
    opt_state = tx.init(params)
    crop_shapes, canvases = set(), set()
    for i in range(30):
        batch = next(it)
        crop_shapes.add(tuple(batch["size"][0].tolist()))
        canvases.add(batch["input"].shape[1])
        params, stats, opt_state, metrics = step(
            params, stats, opt_state, batch, jax.random.key(0), jnp.int32(i), None
        )
    assert np.isfinite(float(metrics["loss"]))
    assert len(crop_shapes) >= 20
    assert 2 <= len(canvases) <= 4
    assert len(traces) == len(canvases)
