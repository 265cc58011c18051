"""The AiLUT model: backbone -> rank weights -> per-image LUT, AdaInt vertices, transform."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ailut_jax.models.backbones import CNNBackbone, ResNet18Backbone
from ailut_jax.models.config import ModelConfig
from ailut_jax.models.layers import PRECISION, torch_default_uniform
from ailut_jax.ops import ailut_transform, identity_lut, lut_transform, uniform_vertices

#: Selects the AdaInt parameters (``model.adaint``), e.g. for their 0.1x learning rate
#: and the initial freeze: ``nnx.state(model, ADAINT_PARAMS)``.
ADAINT_PARAMS = nnx.All(nnx.Param, nnx.PathContains("adaint"))


class ModelOutput(NamedTuple):
    """What :class:`AiLUT` returns for a batch of ``B`` images.

    Attributes:
      output: ``(B, H, W, 3)`` enhanced images, **not clamped**.
      lut: ``(B, 3, D, D, D)`` per-image LUTs indexed ``[c, b, g, r]``.
      vertices: ``(B, 3, D)`` sampling coordinates, rows R, G, B, from 0 to ~1.
      weights: ``(B, M)`` rank weights of the basis LUTs.
    """

    output: jax.Array
    lut: jax.Array
    vertices: jax.Array
    weights: jax.Array


class LUTGenerator(nnx.Module):
    """Rank weights ``w = Linear(F -> M)(feat)`` and ``LUT = sum_m w_m * basis_m``.

    ``basis_luts`` is ``(M, 3, D, D, D)`` (the authors' ``basis_luts_bank.weight``
    transposed and reshaped): basis 0 starts as the identity LUT, the others at zero.
    The rank-weight bias starts at 1, its weight at PyTorch's default U(+-1/sqrt(F)).
    """

    def __init__(self, n_features: int, n_ranks: int, n_vertices: int, *, rngs: nnx.Rngs):
        self.weights_generator = nnx.Linear(
            n_features,
            n_ranks,
            kernel_init=torch_default_uniform(n_features),
            bias_init=jax.nn.initializers.ones,
            precision=PRECISION,
            rngs=rngs,
        )
        basis = np.zeros((n_ranks, 3) + (n_vertices,) * 3, np.float32)
        basis[0] = identity_lut(n_vertices)
        self.basis_luts = nnx.Param(jnp.asarray(basis))

    def __call__(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        weights = self.weights_generator(features)
        basis = self.basis_luts[...].astype(weights.dtype)
        flat = basis.reshape(basis.shape[0], -1)
        lut = jnp.matmul(weights, flat, precision=PRECISION)
        return weights, lut.reshape((features.shape[0],) + basis.shape[1:])


class AdaInt(nnx.Module):
    """Adaptive intervals: ``Linear(F -> 3 (D-1))``, softmax per row, cumsum, pad 0.

    Starts with weight 0 and bias 1, so the vertices are exactly uniform at init. With
    ``share=True`` one row of ``D-1`` intervals is predicted and used for R, G and B.
    """

    def __init__(self, n_features: int, n_vertices: int, share: bool, *, rngs: nnx.Rngs):
        self.n_vertices = n_vertices
        self.share = share
        self.intervals_generator = nnx.Linear(
            n_features,
            (n_vertices - 1) * (1 if share else 3),
            kernel_init=jax.nn.initializers.zeros,
            bias_init=jax.nn.initializers.ones,
            precision=PRECISION,
            rngs=rngs,
        )

    def __call__(self, features: jax.Array) -> jax.Array:
        logits = self.intervals_generator(features)
        logits = logits.reshape(features.shape[0], -1, self.n_vertices - 1)
        if self.share:
            logits = jnp.repeat(logits, 3, axis=1)
        intervals = jax.nn.softmax(logits, axis=-1)
        vertices = jnp.cumsum(intervals, axis=-1)
        return jnp.pad(vertices, ((0, 0), (0, 0), (1, 0)))


class AiLUT(nnx.Module):
    """AdaInt: image-adaptive 3D LUTs with learned non-uniform sampling intervals.

    Sub-modules: ``backbone``, ``lut_generator`` and, when ``config.en_adaint``,
    ``adaint`` (select its parameters with :data:`ADAINT_PARAMS`).
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        backbone_cls = {"cnn": CNNBackbone, "resnet18": ResNet18Backbone}[config.backbone]
        self.backbone = backbone_cls(config, rngs=rngs)
        self.lut_generator = LUTGenerator(
            config.n_features, config.n_ranks, config.n_vertices, rngs=rngs
        )
        if config.en_adaint:
            self.adaint = AdaInt(
                config.n_features, config.n_vertices, config.adaint_share, rngs=rngs
            )
        else:
            self.adaint = None

    def basis_luts(self) -> jax.Array:
        """The ``(M, 3, D, D, D)`` basis LUTs (the regularisers act on these)."""
        return self.lut_generator.basis_luts[...]

    def predict_lut(
        self, img: jax.Array, *, deterministic: bool = True
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The per-image ``(lut, vertices, weights)`` for a batch ``(B, H, W, 3)``.

        Only the thumbnail (``config.input_size`` squared) is seen here, so passing the
        already-resized thumbnail gives the same result as the full image.
        """
        _check_images(img)
        features = self.backbone(img, deterministic=deterministic)
        weights, lut = self.lut_generator(features)
        lut = lut.astype(img.dtype)
        d = self.config.n_vertices
        if self.adaint is not None:
            vertices = self.adaint(features).astype(img.dtype)
        else:
            vertices = jnp.broadcast_to(uniform_vertices(d, img.dtype), (img.shape[0], 3, d))
        return lut, vertices, weights

    def __call__(
        self, img: jax.Array, *, deterministic: bool = True, impl: str = "auto"
    ) -> ModelOutput:
        """Enhance a batch ``(B, H, W, 3)`` of float images in ``[0, 1]``, any H and W.

        ``deterministic=False`` enables dropout (and batch statistics for ResNet-18);
        ``impl`` selects the transform implementation (see :func:`ailut_transform`).
        """
        lut, vertices, weights = self.predict_lut(img, deterministic=deterministic)
        output = apply_lut(img, lut, vertices, adaptive=self.adaint is not None, impl=impl)
        return ModelOutput(output=output, lut=lut, vertices=vertices, weights=weights)


def _check_images(img) -> None:
    if getattr(img, "ndim", None) != 4 or img.shape[-1] != 3:
        raise ValueError(
            f"AiLUT expects a batch of RGB images (B, H, W, 3), got shape "
            f"{getattr(img, 'shape', type(img).__name__)}"
        )
    if not jnp.issubdtype(img.dtype, jnp.floating):
        raise ValueError(
            f"AiLUT expects float images in [0, 1], got dtype {img.dtype}; "
            "scale integer images first (e.g. ailut_jax.imageio.to_float)"
        )


def apply_lut(img, lut, vertices, *, adaptive: bool = True, impl: str = "auto") -> jax.Array:
    """The full-resolution half of :class:`AiLUT`: transform ``img`` with predicted LUTs.

    ``adaptive=False`` (the 3D-LUT baseline) uses the uniform-grid transform and
    ignores ``vertices``.
    """
    if adaptive:
        return ailut_transform(img, lut, vertices, impl=impl)
    return lut_transform(img, lut, impl=impl)


def empty_model(config: ModelConfig, *, seed: int = 0) -> AiLUT:
    """An :class:`AiLUT` with the right structure and all parameters zero.

    For filling from a checkpoint: no random initialiser runs (on CPU, compiling those
    takes seconds), only an abstract trace of the constructor. The dropout RNG streams
    start from ``seed``.
    """
    abstract = nnx.eval_shape(lambda: AiLUT(config, rngs=nnx.Rngs(seed)))
    graphdef, state = nnx.split(abstract)

    def concrete(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            key = jax.random.key(seed)
            return jax.random.split(key, x.shape) if x.shape else key
        return jax.device_put(np.zeros(x.shape, x.dtype))

    return nnx.merge(graphdef, jax.tree_util.tree_map(concrete, state))


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param``; BatchNorm statistics excluded)."""
    leaves = jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))
    return int(sum(np.prod(x.shape) for x in leaves))
