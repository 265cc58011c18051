"""``ailut convert``: import the authors' PyTorch checkpoints into a model directory.

The authors' state dict (docs/method.md#the-authors-checkpoints) maps one to one onto the Flax
parameters: conv kernels OIHW -> HWIO, linear weights transposed, the basis-LUT bank
``(3 D^3, M)`` transposed and reshaped to ``(M, 3, D, D, D)`` (already ``[c, b, g, r]``).
The architecture is read from the tensors themselves; anything missing, unexpected or of
the wrong shape is refused with the key names.

The command line (``ailut convert SRC --out DIR``) is :mod:`ailut_jax.cli.convert`.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from ailut_jax.modeldir import save_model_dir
from ailut_jax.models import ModelConfig, count_params, empty_model

# Buffers of the original model that carry no parameters.
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_IGNORED_KEYS = ("cnt_iters", "uniform_vertices")


class ConversionError(ValueError):
    """The checkpoint does not fit the AiLUT architecture; the message names the keys."""


def _oihw_to_hwio(w):
    return np.transpose(w, (2, 3, 1, 0))


def _transpose(w):
    return np.transpose(w)


def _same(w):
    return w


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``.pth`` file with ``torch.load(weights_only=True)`` as numpy float32 arrays.

    Accepts a bare state dict or one wrapped as ``{"state_dict": ...}`` (the authors'
    files), and strips a ``module.`` prefix left by DataParallel.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        import torch  # the optional `convert` extra: only the authors' files need it
    except ImportError as exc:
        raise ModuleNotFoundError(
            'reading PyTorch checkpoints needs torch: pip install "ailut-jax[convert]"',
            name="torch",
        ) from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors come in many types
        raise ConversionError(f"{path}: cannot read as a PyTorch checkpoint ({exc})") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a state dict, found {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(
                f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor"
            )
        key = key.removeprefix("module.")
        out[key] = value.detach().cpu().numpy()
    return out


def infer_config(state_dict: Mapping[str, np.ndarray]):
    """The :class:`ModelConfig` that a state dict of the authors' AiLUT describes."""
    bank_key = "lut_generator.basis_luts_bank.weight"
    gen_key = "lut_generator.weights_generator.weight"
    for key in (bank_key, gen_key):
        if key not in state_dict:
            raise ConversionError(f"not an AiLUT checkpoint: missing key {key!r}")
    bank = state_dict[bank_key]
    if bank.ndim != 2:
        raise ConversionError(f"{bank_key} must be 2-D (3*D^3, M), got shape {bank.shape}")
    n_ranks = int(bank.shape[1])
    d = round((bank.shape[0] / 3) ** (1 / 3))
    if 3 * d**3 != bank.shape[0]:
        raise ConversionError(f"{bank_key} has {bank.shape[0]} rows, which is not 3*D^3")
    if "backbone.net.conv1.weight" in state_dict:
        backbone = "resnet18"
    elif "backbone.0.0.weight" in state_dict:
        backbone = "cnn"
    else:
        raise ConversionError(
            "unknown backbone: expected 'backbone.0.0.weight' (CNN) or "
            "'backbone.net.conv1.weight' (ResNet-18)"
        )
    adaint_key = "adaint.intervals_generator.weight"
    en_adaint = adaint_key in state_dict
    adaint_share = False
    if en_adaint:
        rows = state_dict[adaint_key].shape[0]
        if rows not in (d - 1, 3 * (d - 1)):
            raise ConversionError(
                f"{adaint_key} has shape {state_dict[adaint_key].shape}; expected "
                f"({3 * (d - 1)}, F) or ({d - 1}, F) for D={d}"
            )
        adaint_share = rows == d - 1
    input_size = None
    if backbone == "cnn" and not en_adaint:
        # Without the 2x2 pooling the features are the whole map: F = 128 (S/32)^2.
        n_feats = state_dict[gen_key].shape[-1]
        side = math.isqrt(n_feats // 128)
        if 128 * side * side != n_feats:
            raise ConversionError(f"{gen_key} has {n_feats} inputs, not 128 * side^2")
        input_size = 32 * side
    return ModelConfig(
        backbone=backbone,
        n_ranks=n_ranks,
        n_vertices=d,
        en_adaint=en_adaint,
        adaint_share=adaint_share,
        input_size=input_size,
    )


def _resnet_mapping(prefix: str, jax_prefix: tuple) -> dict[str, tuple[tuple, Callable]]:
    """torchvision resnet18 keys -> (path in the Flax state, array transform)."""
    mapping = {}

    def conv(tkey, jpath):
        mapping[f"{prefix}{tkey}.weight"] = (jax_prefix + jpath + ("kernel",), _oihw_to_hwio)

    def bn(tkey, jpath):
        for tname, jname in (
            ("weight", "scale"),
            ("bias", "bias"),
            ("running_mean", "mean"),
            ("running_var", "var"),
        ):
            mapping[f"{prefix}{tkey}.{tname}"] = (jax_prefix + jpath + (jname,), _same)

    conv("conv1", ("conv1",))
    bn("bn1", ("bn1",))
    for layer in range(1, 5):
        for block in range(2):
            t, j = f"layer{layer}.{block}", (f"layer{layer}_{block}",)
            conv(f"{t}.conv1", j + ("conv1",))
            bn(f"{t}.bn1", j + ("bn1",))
            conv(f"{t}.conv2", j + ("conv2",))
            bn(f"{t}.bn2", j + ("bn2",))
            if layer > 1 and block == 0:
                conv(f"{t}.downsample.0", j + ("downsample_conv",))
                bn(f"{t}.downsample.1", j + ("downsample_bn",))
    return mapping


def key_mapping(config) -> dict[str, tuple[tuple, Callable]]:
    """Every tensor of the authors' AiLUT for ``config``: torch key -> (Flax path, transform)."""
    mapping: dict[str, tuple[tuple, Callable]] = {}
    if config.backbone == "cnn":
        for i in range(5):
            mapping[f"backbone.{i}.0.weight"] = (
                ("backbone", f"conv{i + 1}", "kernel"),
                _oihw_to_hwio,
            )
            mapping[f"backbone.{i}.0.bias"] = (("backbone", f"conv{i + 1}", "bias"), _same)
            if i < 4:
                mapping[f"backbone.{i}.2.weight"] = (("backbone", f"norm{i + 1}", "scale"), _same)
                mapping[f"backbone.{i}.2.bias"] = (("backbone", f"norm{i + 1}", "bias"), _same)
    else:
        mapping.update(_resnet_mapping("backbone.net.", ("backbone",)))
    gen = ("lut_generator", "weights_generator")
    mapping["lut_generator.weights_generator.weight"] = (gen + ("kernel",), _transpose)
    mapping["lut_generator.weights_generator.bias"] = (gen + ("bias",), _same)
    d, m = config.n_vertices, config.n_ranks
    mapping["lut_generator.basis_luts_bank.weight"] = (
        ("lut_generator", "basis_luts"),
        lambda w: np.ascontiguousarray(w.T).reshape(m, 3, d, d, d),
    )
    if config.en_adaint:
        ada = ("adaint", "intervals_generator")
        mapping["adaint.intervals_generator.weight"] = (ada + ("kernel",), _transpose)
        mapping["adaint.intervals_generator.bias"] = (ada + ("bias",), _same)
    return mapping


def _ignorable(key: str) -> bool:
    return key in _IGNORED_KEYS or key.endswith(_IGNORED_SUFFIXES)


def _get(tree, path):
    for name in path:
        tree = tree[name]
    return tree


def _set(tree, path, value):
    for name in path[:-1]:
        tree = tree[name]
    tree[path[-1]] = value


def _fill(pure: dict, state_dict: Mapping[str, np.ndarray], mapping, *, what: str) -> dict:
    """Copy ``state_dict`` into the pure-dict ``pure`` along ``mapping``, strictly."""
    missing = sorted(k for k in mapping if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in mapping and not _ignorable(k))
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for key, (path, transform) in mapping.items():
        if key not in state_dict:
            continue
        target = _get(pure, path)
        value = np.asarray(state_dict[key])
        try:
            value = transform(value)
        except ValueError:
            pass  # reported as a shape mismatch below
        if tuple(value.shape) != tuple(target.shape):
            problems.append(
                f"{key}: shape {tuple(state_dict[key].shape)} does not fit {'/'.join(path)} "
                f"{tuple(target.shape)}"
            )
            continue
        _set(pure, path, np.asarray(value, dtype=target.dtype))
    if problems:
        raise ConversionError(f"{what}: " + "; ".join(problems))
    return pure


def model_from_state_dict(state_dict: Mapping[str, np.ndarray], *, what: str = "checkpoint"):
    """Build an :class:`~ailut_jax.models.AiLUT` holding the weights of ``state_dict``."""
    config = infer_config(state_dict)
    model = empty_model(config)
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    pure = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(state))
    _fill(pure, state_dict, key_mapping(config), what=what)
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map(jax.numpy.asarray, pure))
    nnx.update(model, state)
    return model


def load_resnet18_weights(model, state_dict: Mapping[str, np.ndarray]):
    """Load user-supplied torchvision ``resnet18`` weights into a ResNet-18 AiLUT backbone.

    ``state_dict`` holds torchvision's keys (``conv1.weight``, ``layer1.0.bn1.running_mean``
    ...); its ``fc.*`` classifier is ignored. Returns ``model``, updated in place.
    """
    if model.config.backbone != "resnet18":
        raise ValueError(f"model has backbone {model.config.backbone!r}, not 'resnet18'")
    state = nnx.state(model.backbone, (nnx.Param, nnx.BatchStat))
    pure = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(state))
    weights = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    _fill(pure, weights, _resnet_mapping("", ()), what="resnet18 weights")
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map(jax.numpy.asarray, pure))
    nnx.update(model.backbone, state)
    return model


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_checkpoint(src: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert the authors' ``.pth`` at ``src`` into a model directory at ``out``."""
    src = Path(src)
    state_dict = load_torch_state_dict(src)
    model = model_from_state_dict(state_dict, what=str(src))
    metadata = {
        "source": "pytorch-checkpoint",
        "source_file": src.name,
        "source_sha256": file_sha256(src),
        "n_params": count_params(model),
    }
    return save_model_dir(out, model, extra_metadata=metadata)
