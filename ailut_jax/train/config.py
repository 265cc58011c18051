"""Training configuration: the schema every config file extends, and its validation.

Config files (``configs/*.py``) define ``get_config()`` returning an
``ml_collections.ConfigDict``; they start from :func:`base_config` (the FiveK sRGB
recipe of ADAINT.md section 4) and override what differs. :func:`validate_config`
checks a config against this schema before any work starts: unknown keys, wrong types
and impossible values are reported together, naming the key.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections

#: Which model outputs the born-again students may be distilled on.
DISTILL_TARGETS = ("output", "lut", "vertices")
IMPLS = ("auto", "ffi", "reference")


class ConfigError(ValueError):
    """The training config is invalid; the message names every offending key."""


def base_config() -> ml_collections.ConfigDict:
    """AdaInt's FiveK sRGB recipe: batch 1, Adam 1e-4, AdaInt at 0.1x, 1.8M steps."""
    c = ml_collections.ConfigDict()
    c.name = "fivek_srgb"
    c.seed = 0
    # Steps per generation; 400 epochs of 4,500 photos at batch 1.
    c.steps = 1_800_000
    # Global batch, split evenly over all local devices (and processes).
    c.batch_size = 1
    # Born-again: generation 0 is the teacher, each later one a student of the previous.
    c.generations = 3
    # Transform implementation: native FFI kernel when built, else the pure-JAX reference.
    c.impl = "auto"

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "cnn"
    c.model.n_ranks = 3
    c.model.n_vertices = 33
    c.model.en_adaint = True
    c.model.adaint_share = False
    # -1 picks the backbone's default (0.5 for the CNN, 0 for ResNet-18).
    c.model.dropout = -1.0
    # 0 picks the backbone's default thumbnail size (256 CNN, 224 ResNet-18).
    c.model.input_size = 0

    c.data = ml_collections.ConfigDict()
    c.data.name = "fivek"
    c.data.config = "expert_c"
    # Root of the raw dataset folder; needed only when the TFDS build does not exist yet.
    c.data.source = ""
    # Where built datasets live; "" = $AILUT_DATA_DIR or ~/.cache/ailut_jax/tensorflow_datasets.
    c.data.data_dir = ""
    # Optional id lists: "" = the builder's default split (FiveK: a0001-a4500 / rest).
    c.data.train_list = ""
    c.data.test_list = ""
    c.data.test_split = "test"
    # Random crop of this (square) size; 0 = the original ratio crop U(0.6, 1) (batch 1 only).
    c.data.crop_size = 0
    # Resize after the ratio crop (PPR10K: 448); 0 = no resize.
    c.data.resize_to = 0
    # With the ratio crop, trim each crop to a multiple of this many pixels (top-left
    # kept) so that jit compiles a few dozen shapes instead of one per step (0 = off).
    c.data.shape_multiple = 32
    c.data.flip_prob = 0.5
    c.data.brightness = 0.2
    c.data.saturation = 0.2
    # Decoding/augmentation worker processes (0 = in the training process).
    c.data.worker_count = 0
    # Evaluate on at most this many test images (0 = all).
    c.data.eval_limit = 0

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-4
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0
    # "constant" (the original) or "cosine" (warmup, then decay to 0 over each generation).
    c.optim.schedule = "constant"
    c.optim.warmup_steps = 0
    c.optim.adaint_lr_mult = 0.1
    # AdaInt is frozen for the first 5 epochs (22,500 iterations at batch 1).
    c.optim.n_fix_iters = 22_500

    c.loss = ml_collections.ConfigDict()
    c.loss.sparsity = 1e-4
    c.loss.monotonicity = 10.0
    c.loss.smoothness = 0.0

    c.distill = ml_collections.ConfigDict()
    # Students minimise task loss + weight * MSE(student, frozen previous generation).
    c.distill.weight = 1.0
    # Comma-separated subset of output, lut, vertices.
    c.distill.targets = "output"

    c.log_every = 100
    # Test-split PSNR every this many steps (0 = only at the end of each generation).
    c.eval_every = 50_000
    c.checkpoint_every = 10_000
    c.keep_checkpoints = 3
    # Test photos shown in each generation's before/after grid.
    c.grid_images = 4
    c.progress = True
    return c


def _type_name(value) -> str:
    return type(value).__name__


def _check_types(schema, config, prefix: str, errors: list[str]) -> None:
    for key in config.keys():
        path = f"{prefix}{key}"
        if key not in schema:
            known = ", ".join(sorted(schema.keys()))
            errors.append(f"unknown key config.{path} (known at this level: {known})")
            continue
        want, got = schema[key], config[key]
        if isinstance(want, ml_collections.ConfigDict):
            if not isinstance(got, ml_collections.ConfigDict):
                errors.append(f"config.{path} must be a group of settings, got {got!r}")
            else:
                _check_types(want, got, f"{path}.", errors)
            continue
        ok = isinstance(got, type(want))
        if isinstance(want, bool):
            ok = isinstance(got, bool)
        elif isinstance(want, int):
            ok = isinstance(got, int) and not isinstance(got, bool)
        elif isinstance(want, float):
            ok = isinstance(got, int | float) and not isinstance(got, bool)
        if not ok:
            errors.append(
                f"config.{path} must be {_type_name(want)}, got {_type_name(got)} {got!r}"
            )


def _fill_defaults(schema, config) -> None:
    with config.unlocked():
        for key in schema.keys():
            if key not in config:
                config[key] = schema[key]
            elif isinstance(schema[key], ml_collections.ConfigDict) and isinstance(
                config[key], ml_collections.ConfigDict
            ):
                _fill_defaults(schema[key], config[key])


def validate_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Check ``config`` against :func:`base_config`; return a copy with missing keys filled.

    Raises:
      ConfigError: listing every unknown key, wrong type and out-of-range value.
    """
    schema = base_config()
    errors: list[str] = []
    _check_types(schema, config, "", errors)
    if errors:
        raise ConfigError("invalid training config:\n  " + "\n  ".join(errors))
    config = ml_collections.ConfigDict(config.to_dict())
    _fill_defaults(schema, config)
    c = config

    def need(cond, message):
        if not cond:
            errors.append(message)

    need(c.steps >= 1, f"config.steps must be >= 1, got {c.steps}")
    need(c.batch_size >= 1, f"config.batch_size must be >= 1, got {c.batch_size}")
    need(c.generations >= 1, f"config.generations must be >= 1, got {c.generations}")
    need(c.impl in IMPLS, f"config.impl must be one of {IMPLS}, got {c.impl!r}")
    need(c.optim.lr > 0, f"config.optim.lr must be > 0, got {c.optim.lr}")
    need(c.optim.n_fix_iters >= 0, "config.optim.n_fix_iters must be >= 0")
    need(
        c.optim.schedule in ("constant", "cosine"),
        f"config.optim.schedule must be 'constant' or 'cosine', got {c.optim.schedule!r}",
    )
    need(c.optim.warmup_steps >= 0, "config.optim.warmup_steps must be >= 0")
    need(c.log_every >= 1, f"config.log_every must be >= 1, got {c.log_every}")
    need(c.eval_every >= 0, "config.eval_every must be >= 0")
    need(c.data.shape_multiple >= 0, "config.data.shape_multiple must be >= 0")
    need(c.checkpoint_every >= 1, "config.checkpoint_every must be >= 1")
    need(c.keep_checkpoints >= 1, "config.keep_checkpoints must be >= 1")
    need(c.distill.weight >= 0, "config.distill.weight must be >= 0")
    targets = [t.strip() for t in c.distill.targets.split(",") if t.strip()]
    bad = [t for t in targets if t not in DISTILL_TARGETS]
    need(
        not bad and (targets or c.distill.weight == 0),
        f"config.distill.targets must be a comma-separated subset of {DISTILL_TARGETS}, "
        f"got {c.distill.targets!r}",
    )
    if c.batch_size > 1:
        need(
            c.data.crop_size > 0 or c.data.resize_to > 0,
            "config.batch_size > 1 needs equal image sizes: set config.data.crop_size "
            "or config.data.resize_to",
        )
    try:
        model_config(c)
    except ValueError as exc:
        errors.append(f"config.model: {exc}")
    from ailut_jax.data import DATASETS, builder_class

    if c.data.name not in DATASETS:
        errors.append(f"config.data.name: unknown dataset {c.data.name!r}; known: {list(DATASETS)}")
    else:
        configs = builder_class(c.data.name).builder_configs
        if c.data.config and c.data.config not in configs:
            errors.append(
                f"config.data.config: {c.data.name} has no config {c.data.config!r}; "
                f"known: {', '.join(configs)}"
            )
    for key in ("source", "train_list", "test_list"):
        value = c.data[key]
        if value and not Path(value).expanduser().exists():
            errors.append(f"config.data.{key}: {value} does not exist")
    if errors:
        raise ConfigError("invalid training config:\n  " + "\n  ".join(errors))
    return config


def model_config(config):
    """The :class:`~ailut_jax.models.ModelConfig` of a training config."""
    from ailut_jax.models import ModelConfig

    m = config.model
    return ModelConfig(
        backbone=m.backbone,
        n_ranks=m.n_ranks,
        n_vertices=m.n_vertices,
        en_adaint=m.en_adaint,
        adaint_share=m.adaint_share,
        dropout=None if m.dropout < 0 else float(m.dropout),
        input_size=None if m.input_size <= 0 else m.input_size,
    )


def distill_targets(config) -> tuple[str, ...]:
    return tuple(t.strip() for t in config.distill.targets.split(",") if t.strip())
