"""The Flax AiLUT models: sizes, initialisation, layers that must match PyTorch, outputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _models import filled_model
from flax import nnx

from ailut_jax import identity_lut, lut_transform, uniform_vertices
from ailut_jax.models import (
    ADAINT_PARAMS,
    AiLUT,
    ModelConfig,
    ModelOutput,
    count_params,
)
from ailut_jax.models.layers import adaptive_avg_pool, flatten_channel_major, resize_bilinear

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the converter extra is optional
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch (the convert extra) not installed")


@functools.cache
def _split_model(config):
    return nnx.split(AiLUT(config, rngs=nnx.Rngs(0)))


def _model(**kw):
    """A fresh model object per call; each config is initialised once per session."""
    return nnx.merge(*_split_model(ModelConfig(**kw)))


@nnx.jit(static_argnames="deterministic")
def _run(model, img, deterministic=True):
    return model(img, deterministic=deterministic)


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({}, 619_724),  # FiveK AdaInt, docs/method.md#sizes
        ({"en_adaint": False}, 593_516),  # the 3D-LUT baseline: F = 8192, no AdaInt
        ({"adaint_share": True}, 619_724 - 2 * 32 * 513),
        # torchvision resnet18 without fc (11,176,512) + generator + 5 bases + AdaInt
        ({"backbone": "resnet18", "n_ranks": 5}, 11_176_512 + 2_565 + 539_055 + 49_248),
    ],
)
def test_parameter_counts(kw, expected):
    abstract = nnx.eval_shape(lambda: AiLUT(ModelConfig(**kw), rngs=nnx.Rngs(0)))
    assert count_params(abstract) == expected


def test_config_defaults_and_round_trip():
    cnn, res = ModelConfig(), ModelConfig(backbone="resnet18")
    assert (cnn.input_size, cnn.dropout, cnn.n_features) == (256, 0.5, 512)
    assert (res.input_size, res.dropout, res.n_features) == (224, 0.0, 512)
    assert ModelConfig(en_adaint=False).n_features == 8192
    for cfg in (cnn, res, ModelConfig(n_ranks=5, n_vertices=17, adaint_share=True)):
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"backbone": "cnn", "depth": 3})
    with pytest.raises(ValueError, match="backbone"):
        ModelConfig(backbone="vgg")
    with pytest.raises(ValueError, match="multiple of 32"):
        ModelConfig(input_size=250)


def test_initialisation_matches_the_authors():
    model = _model()
    d = 33
    basis = np.asarray(model.basis_luts())
    assert basis.shape == (3, 3, d, d, d)
    np.testing.assert_array_equal(basis[0], identity_lut(d))
    np.testing.assert_array_equal(basis[1:], 0.0)
    np.testing.assert_array_equal(model.lut_generator.weights_generator.bias[...], 1.0)
    kernel = np.asarray(model.lut_generator.weights_generator.kernel[...])
    bound = 1 / np.sqrt(512)
    assert kernel.shape == (512, 3) and np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.9 * bound  # uniform over the whole range
    np.testing.assert_array_equal(model.adaint.intervals_generator.kernel[...], 0.0)
    np.testing.assert_array_equal(model.adaint.intervals_generator.bias[...], 1.0)
    # Xavier-normal (untruncated) conv kernels: std sqrt(2 / (9 cin + 9 cout)).
    k5 = np.asarray(model.backbone.conv5.kernel[...])
    assert k5.shape == (3, 3, 128, 128)
    std = np.sqrt(2 / (9 * 128 + 9 * 128))
    assert abs(k5.std() / std - 1) < 0.01
    assert np.abs(k5).max() > 3.5 * std  # a truncated normal stops at 2 std
    b5 = np.asarray(model.backbone.conv5.bias[...])
    assert np.abs(b5).max() <= 1 / np.sqrt(9 * 128)
    scales = np.concatenate([np.asarray(model.backbone.norm4.scale[...])])
    assert abs(scales.mean() - 1) < 0.01 and 0.01 < scales.std() < 0.03
    np.testing.assert_array_equal(model.backbone.norm1.bias[...], 0.0)


def test_vertices_uniform_at_init_and_output_shapes():
    model = _model()
    img = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3))
    out = _run(model, img)
    assert isinstance(out, ModelOutput)
    assert out.output.shape == (2, 32, 32, 3) and out.output.dtype == jnp.float32
    assert out.lut.shape == (2, 3, 33, 33, 33)
    assert out.vertices.shape == (2, 3, 33)
    assert out.weights.shape == (2, 3)
    np.testing.assert_allclose(
        out.vertices, np.broadcast_to(np.arange(33) / 32, (2, 3, 33)), atol=3e-7
    )
    # LUT = sum_m w_m basis_m, with only the identity basis non-zero at init.
    expected_lut = np.asarray(out.weights[:, 0])[:, None, None, None, None] * identity_lut(33)
    np.testing.assert_allclose(out.lut, expected_lut, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        out.output, np.asarray(out.weights[:, 0])[:, None, None, None] * img, rtol=2e-5, atol=1e-6
    )


def test_output_is_not_clamped():
    model = _model()
    # Scale the identity basis up: bright pixels must leave [0, 1].
    model.lut_generator.basis_luts[...] = model.lut_generator.basis_luts[...] * 3.0
    out = _run(model, jnp.full((2, 32, 32, 3), 0.9))
    assert float(out.output.max()) > 1.5


def test_baseline_without_adaint_uses_uniform_lut_transform():
    model = filled_model(ModelConfig(en_adaint=False))
    assert model.adaint is None
    img = jax.random.uniform(jax.random.key(2), (1, 32, 32, 3))
    out = _run(model, img)
    np.testing.assert_array_equal(out.vertices[0], uniform_vertices(33))
    np.testing.assert_array_equal(out.output, lut_transform(img, out.lut))


def test_shared_adaint_repeats_one_row():
    model = filled_model(ModelConfig(adaint_share=True))
    kernel = model.adaint.intervals_generator.kernel
    kernel[...] = np.random.default_rng(3).normal(0, 0.01, kernel.shape).astype(np.float32)
    v = np.asarray(_run(model, jax.random.uniform(jax.random.key(4), (1, 32, 32, 3))).vertices[0])
    np.testing.assert_array_equal(v[0], v[1])
    np.testing.assert_array_equal(v[0], v[2])
    assert np.all(np.diff(v[0]) > 0) and v[0, 0] == 0 and abs(v[0, -1] - 1) < 1e-6
    assert np.abs(v[0] - np.arange(33) / 32).max() > 1e-3


def test_adaint_filter_selects_only_adaint():
    model = _model()
    paths = [p for p, _ in nnx.to_flat_state(nnx.state(model, ADAINT_PARAMS))]
    assert sorted(paths) == [
        ("adaint", "intervals_generator", "bias"),
        ("adaint", "intervals_generator", "kernel"),
    ]


def test_dropout_only_in_training():
    model = _model()
    img = jax.random.uniform(jax.random.key(5), (2, 32, 32, 3))
    a, b = _run(model, img), _run(model, img)
    np.testing.assert_array_equal(a.weights, b.weights)
    c, d = _run(model, img, deterministic=False), _run(model, img, deterministic=False)
    assert not np.allclose(a.weights, c.weights)
    assert not np.allclose(c.weights, d.weights)  # a fresh mask each call


def test_resnet_batch_stats_update_in_training_only():
    model = filled_model(ModelConfig(backbone="resnet18", n_ranks=5))
    img = jax.random.uniform(jax.random.key(6), (2, 40, 40, 3))
    mean0 = np.asarray(model.backbone.bn1.mean[...])
    _run(model, img)
    np.testing.assert_array_equal(model.backbone.bn1.mean[...], mean0)
    out = _run(model, img, deterministic=False)
    assert not np.array_equal(model.backbone.bn1.mean[...], mean0)
    assert out.weights.shape == (2, 5)


@pytest.mark.parametrize(
    "bad", [np.zeros((16, 16, 3), np.float32), np.zeros((1, 16, 16, 4), np.float32)]
)
def test_bad_input_shape(bad):
    with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
        _model()(jnp.asarray(bad))


def test_bad_input_dtype():
    with pytest.raises(ValueError, match="uint8"):
        _model()(jnp.zeros((1, 8, 8, 3), jnp.uint8))


# ----------------------------------------------------------------- layers


@pytest.mark.parametrize("src, dst", [((480, 722), (256, 256)), ((5, 7), (12, 3))])
def test_resize_matches_jax_image_resize(src, dst):
    img = jax.random.uniform(jax.random.key(7), (2, *src, 3))
    ours = resize_bilinear(img, dst)
    ref = jax.image.resize(img, (2, *dst, 3), "linear", antialias=False)
    np.testing.assert_allclose(ours, ref, atol=5e-7)


def test_resize_is_a_gather_not_a_dense_matrix():
    jaxpr = str(
        jax.make_jaxpr(lambda x: resize_bilinear(x, (256, 256)))(jnp.zeros((1, 2160, 3840, 3)))
    )
    assert "dot_general" not in jaxpr
    assert "gather" in jaxpr


@needs_torch
@pytest.mark.parametrize("src", [(480, 722), (2000, 3008), (100, 90)])
def test_resize_matches_torch(src):
    img = np.random.default_rng(0).random((1, *src, 3), dtype=np.float32)
    ours = np.asarray(resize_bilinear(jnp.asarray(img), (256, 256)))
    ref = F.interpolate(
        torch.from_numpy(img).permute(0, 3, 1, 2),
        size=(256, 256),
        mode="bilinear",
        align_corners=False,
    )
    np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=2.5e-7)


@needs_torch
@pytest.mark.parametrize("size", [8, 7, 5])
def test_adaptive_pool_and_flatten_match_torch(size):
    x = np.random.default_rng(1).random((2, size, size, 6), dtype=np.float32)
    ours = np.asarray(flatten_channel_major(adaptive_avg_pool(jnp.asarray(x), 2)))
    ref = F.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 2).flatten(1).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
