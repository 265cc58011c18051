"""Feature extractors: the authors' 5-layer CNN and a torchvision-layout ResNet-18.

Both take a batch of full-resolution images ``(B, H, W, 3)`` in ``[0, 1]``, resize it to a
square thumbnail (bilinear, half-pixel centres, no antialias: :func:`resize_bilinear`) and
return features ``(B, F)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ailut_jax.models.config import ModelConfig
from ailut_jax.models.layers import (
    PRECISION,
    InstanceNorm,
    adaptive_avg_pool,
    flatten_channel_major,
    kaiming_normal_fan_out,
    resize_bilinear,
    torch_default_uniform,
    xavier_normal,
)

CNN_CHANNELS = (3, 16, 32, 64, 128, 128)


def _conv(cin, cout, kernel, stride, padding, *, use_bias, kernel_init, rngs):
    return nnx.Conv(
        cin,
        cout,
        (kernel, kernel),
        strides=stride,
        # Explicit PyTorch padding: "SAME" with stride 2 pads (0, 1), not (1, 1).
        padding=((padding, padding), (padding, padding)),
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=torch_default_uniform(cin * kernel * kernel),
        precision=PRECISION,
        rngs=rngs,
    )


class CNNBackbone(nnx.Module):
    """The "TPAMI" backbone of AdaInt (FiveK): five Conv3x3/2 -> LeakyReLU(0.2) blocks.

    Blocks 1-4 end with an InstanceNorm *after* the activation; block 5 has none. Then
    dropout (training only) and, with AdaInt, a 2x2 adaptive average pool; the map is
    flattened channel-major: ``F = 512`` (pooled) or ``128 * (S/32)^2`` (``8192`` at 256).
    Parameters are named ``conv{1..5}`` and ``norm{1..4}``.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.input_size = config.input_size
        self.pool = config.en_adaint
        for i in range(5):
            cin, cout = CNN_CHANNELS[i], CNN_CHANNELS[i + 1]
            conv = _conv(cin, cout, 3, 2, 1, use_bias=True, kernel_init=xavier_normal(), rngs=rngs)
            setattr(self, f"conv{i + 1}", conv)
            if i < 4:
                setattr(self, f"norm{i + 1}", InstanceNorm(cout, rngs=rngs))
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)

    def __call__(self, img: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = resize_bilinear(img, (self.input_size, self.input_size))
        for i in range(1, 6):
            x = jax.nn.leaky_relu(getattr(self, f"conv{i}")(x), 0.2)
            if i < 5:
                x = getattr(self, f"norm{i}")(x)
        x = self.dropout(x, deterministic=deterministic)
        if self.pool:
            x = adaptive_avg_pool(x, 2)
        return flatten_channel_major(x)


def _batch_norm(features, rngs):
    # PyTorch BatchNorm2d: eps 1e-5, running stats updated with momentum 0.1.
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, use_fast_variance=False, rngs=rngs)


class BasicBlock(nnx.Module):
    """torchvision's ResNet ``BasicBlock`` (two 3x3 convs, identity or 1x1 shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        init = kaiming_normal_fan_out()
        self.conv1 = _conv(cin, cout, 3, stride, 1, use_bias=False, kernel_init=init, rngs=rngs)
        self.bn1 = _batch_norm(cout, rngs)
        self.conv2 = _conv(cout, cout, 3, 1, 1, use_bias=False, kernel_init=init, rngs=rngs)
        self.bn2 = _batch_norm(cout, rngs)
        if stride != 1 or cin != cout:
            self.downsample_conv = _conv(
                cin, cout, 1, stride, 0, use_bias=False, kernel_init=init, rngs=rngs
            )
            self.downsample_bn = _batch_norm(cout, rngs)
        else:
            self.downsample_conv = None
            self.downsample_bn = None

    def __call__(self, x, *, train: bool):
        ura = not train
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        y = self.bn2(self.conv2(y), use_running_average=ura)
        if self.downsample_conv is not None:
            x = self.downsample_bn(self.downsample_conv(x), use_running_average=ura)
        return jax.nn.relu(y + x)


class ResNet18Backbone(nnx.Module):
    """torchvision ``resnet18`` without ``fc`` (PPR10K): ``F = 512``, no input normalisation.

    Attribute names mirror torchvision's state dict (``conv1``, ``bn1``,
    ``layer{1..4}_{0,1}``) so user-supplied weights map one to one; BatchNorm uses its
    batch statistics when ``deterministic=False`` and its running averages otherwise.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.input_size = config.input_size
        self.conv1 = _conv(
            3, 64, 7, 2, 3, use_bias=False, kernel_init=kaiming_normal_fan_out(), rngs=rngs
        )
        self.bn1 = _batch_norm(64, rngs)
        cin = 64
        for layer, cout in enumerate((64, 128, 256, 512), start=1):
            for block in range(2):
                stride = 2 if (layer > 1 and block == 0) else 1
                setattr(self, f"layer{layer}_{block}", BasicBlock(cin, cout, stride, rngs=rngs))
                cin = cout
        self.dropout = nnx.Dropout(config.dropout, rngs=rngs)

    def __call__(self, img: jax.Array, *, deterministic: bool = True) -> jax.Array:
        x = resize_bilinear(img, (self.input_size, self.input_size))
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=deterministic))
        x = jax.lax.reduce_window(
            x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
        )
        for layer in range(1, 5):
            for block in range(2):
                x = getattr(self, f"layer{layer}_{block}")(x, train=not deterministic)
        x = x.mean(axis=(1, 2))
        return self.dropout(x, deterministic=deterministic)
