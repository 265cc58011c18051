"""Training configuration: the schema config files extend, validated once into typed settings.

Config files (``configs/*.py``) define ``get_config()`` returning an
``ml_collections.ConfigDict``; they start from :func:`base_config` (the authors' FiveK
sRGB recipe, ``docs/training.md``) and override what differs. On the command line any key
can be overridden (``--config.optim.lr=1e-3``). :func:`validate_config` checks a config
against the schema before any work starts (unknown keys, wrong types and impossible
values are reported together, naming each key) and returns a frozen
:class:`TrainConfig`: the training code reads only that. Optional settings are ``None``
when unset (no sentinel values); lists are tuples.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections
from ml_collections import config_dict

from ailut_jax.models import ModelConfig

#: Which model outputs the born-again students may be distilled on.
DISTILL_TARGETS = ("output", "lut", "vertices")
IMPLS = ("auto", "ffi", "reference")
SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """The training config is invalid; the message names every offending key."""


def base_config() -> ml_collections.ConfigDict:
    """AdaInt's FiveK sRGB recipe: batch 1, Adam 1e-4, AdaInt at 0.1x, 1.8M steps."""
    c = ml_collections.ConfigDict()
    c.name = "fivek_srgb"
    c.seed = 0
    # Steps per generation; 400 epochs of 4,500 photos at batch 1.
    c.steps = 1_800_000
    # Global batch, split evenly over all devices of all processes.
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
    # Unset: the backbone's default (0.5 for the CNN, 0 for ResNet-18).
    c.model.dropout = config_dict.placeholder(float)
    # Unset: the backbone's default thumbnail size (256 CNN, 224 ResNet-18).
    c.model.input_size = config_dict.placeholder(int)
    # ResNet-18 only: torchvision resnet18 weights (.pth, e.g. ImageNet) to start from;
    # unset, the backbone trains from scratch (ImageNet weights are not downloaded).
    c.model.backbone_weights = config_dict.placeholder(str)

    c.data = ml_collections.ConfigDict()
    c.data.name = "fivek"
    c.data.config = "expert_c"
    # Root of the raw dataset folder; needed only when the TFDS build does not exist yet.
    c.data.source = config_dict.placeholder(str)
    # Where built datasets live; unset: $AILUT_DATA_DIR or ~/.cache/ailut_jax/tensorflow_datasets.
    c.data.data_dir = config_dict.placeholder(str)
    # Optional id lists; unset: the builder's default split (FiveK: a0001-a4500 / rest).
    c.data.train_list = config_dict.placeholder(str)
    c.data.test_list = config_dict.placeholder(str)
    c.data.test_split = "test"
    # A random square crop of this size; unset: the original ratio crop U(0.6, 1) per side.
    c.data.crop_size = config_dict.placeholder(int)
    # Resize after the ratio crop (PPR10K: 448); unset: no resize.
    c.data.resize_to = config_dict.placeholder(int)
    # Crops of different sizes are padded into at most this many canvas sizes, so the
    # training step compiles at most this many times (the loss ignores the padding).
    c.data.canvas_buckets = 4
    c.data.flip_prob = 0.5
    c.data.brightness = 0.2
    c.data.saturation = 0.2
    # Decoding/augmentation worker processes (0: in the training process).
    c.data.worker_count = 0
    # Evaluate on at most this many test images; unset: all of them.
    c.data.eval_limit = config_dict.placeholder(int)

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
    # What is matched: any of "output", "lut", "vertices".
    c.distill.targets = ("output",)

    c.log_every = 100
    # Test-split PSNR every this many steps; unset (or 0): only at the end of each generation.
    c.eval_every = config_dict.placeholder(int)
    c.checkpoint_every = 10_000
    c.keep_checkpoints = 3
    # Test photos shown in each generation's before/after grid.
    c.grid_images = 4
    c.progress = True
    return c


# ------------------------------------------------------------------ typed settings


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    backbone: str
    n_ranks: int
    n_vertices: int
    en_adaint: bool
    adaint_share: bool
    dropout: float | None
    input_size: int | None
    backbone_weights: Path | None

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            backbone=self.backbone,
            n_ranks=self.n_ranks,
            n_vertices=self.n_vertices,
            en_adaint=self.en_adaint,
            adaint_share=self.adaint_share,
            dropout=self.dropout,
            input_size=self.input_size,
        )


@dataclasses.dataclass(frozen=True)
class DataSettings:
    name: str
    config: str | None
    source: Path | None
    data_dir: Path | None
    train_list: Path | None
    test_list: Path | None
    test_split: str
    crop_size: int | None
    resize_to: int | None
    canvas_buckets: int
    flip_prob: float
    brightness: float
    saturation: float
    worker_count: int
    eval_limit: int | None


@dataclasses.dataclass(frozen=True)
class OptimSettings:
    lr: float
    b1: float
    b2: float
    eps: float
    weight_decay: float
    schedule: str
    warmup_steps: int
    adaint_lr_mult: float
    n_fix_iters: int


@dataclasses.dataclass(frozen=True)
class LossSettings:
    sparsity: float
    monotonicity: float
    smoothness: float


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    weight: float
    targets: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A validated training config (see :func:`base_config` for what each key means)."""

    name: str
    seed: int
    steps: int
    batch_size: int
    generations: int
    impl: str
    model: ModelSettings
    data: DataSettings
    optim: OptimSettings
    loss: LossSettings
    distill: DistillSettings
    log_every: int
    eval_every: int | None
    checkpoint_every: int
    keep_checkpoints: int
    grid_images: int
    progress: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings, tuples as lists."""

        def plain(value):
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return plain(dataclasses.asdict(self))

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)


# ------------------------------------------------------------------ validation


def _declared_type(schema: ml_collections.ConfigDict, key: str):
    ref = schema.get_ref(key)
    return ref.get_type()


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
        kind = _declared_type(schema, key)
        if got is None:
            if want is not None:
                errors.append(f"config.{path} must be set ({kind.__name__}), got None")
            continue
        if kind is bool:
            ok = isinstance(got, bool)
        elif kind is int:
            ok = isinstance(got, int) and not isinstance(got, bool)
        elif kind is float:
            ok = isinstance(got, int | float) and not isinstance(got, bool)
        elif kind is tuple:
            ok = isinstance(got, tuple | list) and all(isinstance(x, str) for x in got)
        else:
            ok = isinstance(got, kind)
        if not ok:
            errors.append(
                f"config.{path} must be {kind.__name__}, got {type(got).__name__} {got!r}"
            )


def _merged(schema, config) -> dict:
    """``config`` as a plain dict, with the schema's defaults for missing keys."""
    out = {}
    for key in schema.keys():
        if isinstance(schema[key], ml_collections.ConfigDict):
            sub = config[key] if key in config else ml_collections.ConfigDict()
            out[key] = _merged(schema[key], sub)
        else:
            out[key] = config[key] if key in config else schema[key]
    return out


def _path(value) -> Path | None:
    return Path(value).expanduser() if value else None


def validate_config(config: ml_collections.ConfigDict | TrainConfig) -> TrainConfig:
    """Check ``config`` against :func:`base_config` and return it as a :class:`TrainConfig`.

    Raises:
      ConfigError: listing every unknown key, wrong type and out-of-range value.
    """
    if isinstance(config, TrainConfig):
        return config
    schema = base_config()
    errors: list[str] = []
    _check_types(schema, config, "", errors)
    if errors:
        raise ConfigError("invalid training config:\n  " + "\n  ".join(errors))
    c = _merged(schema, config)
    m, d, o, lo, di = c["model"], c["data"], c["optim"], c["loss"], c["distill"]

    def need(cond, message):
        if not cond:
            errors.append(message)

    need(c["steps"] >= 1, f"config.steps must be >= 1, got {c['steps']}")
    need(c["batch_size"] >= 1, f"config.batch_size must be >= 1, got {c['batch_size']}")
    need(c["generations"] >= 1, f"config.generations must be >= 1, got {c['generations']}")
    need(c["impl"] in IMPLS, f"config.impl must be one of {IMPLS}, got {c['impl']!r}")
    need(o["lr"] > 0, f"config.optim.lr must be > 0, got {o['lr']}")
    need(o["n_fix_iters"] >= 0, "config.optim.n_fix_iters must be >= 0")
    need(
        o["schedule"] in SCHEDULES,
        f"config.optim.schedule must be one of {SCHEDULES}, got {o['schedule']!r}",
    )
    need(o["warmup_steps"] >= 0, "config.optim.warmup_steps must be >= 0")
    need(c["log_every"] >= 1, f"config.log_every must be >= 1, got {c['log_every']}")
    need(c["eval_every"] is None or c["eval_every"] >= 0, "config.eval_every must be >= 0")
    need(c["checkpoint_every"] >= 1, "config.checkpoint_every must be >= 1")
    need(c["keep_checkpoints"] >= 1, "config.keep_checkpoints must be >= 1")
    need(c["grid_images"] >= 0, "config.grid_images must be >= 0")
    need(di["weight"] >= 0, "config.distill.weight must be >= 0")
    targets = tuple(di["targets"])
    bad = [t for t in targets if t not in DISTILL_TARGETS]
    need(
        not bad and len(set(targets)) == len(targets) and (targets or di["weight"] == 0),
        f"config.distill.targets must be a subset of {DISTILL_TARGETS}, got {targets!r}",
    )
    for key in ("crop_size", "resize_to", "eval_limit"):
        need(d[key] is None or d[key] >= 1, f"config.data.{key} must be >= 1 when set")
    need(d["canvas_buckets"] >= 1, "config.data.canvas_buckets must be >= 1")
    need(d["worker_count"] >= 0, "config.data.worker_count must be >= 0")
    for key in ("flip_prob", "brightness", "saturation"):
        need(0 <= d[key] <= 1, f"config.data.{key} must be in [0, 1], got {d[key]}")
    need(m["dropout"] is None or 0 <= m["dropout"] < 1, "config.model.dropout must be in [0, 1)")
    model = ModelSettings(
        backbone=m["backbone"],
        n_ranks=m["n_ranks"],
        n_vertices=m["n_vertices"],
        en_adaint=m["en_adaint"],
        adaint_share=m["adaint_share"],
        dropout=None if m["dropout"] is None else float(m["dropout"]),
        input_size=m["input_size"],
        backbone_weights=_path(m["backbone_weights"]),
    )
    try:
        model.model_config()
    except ValueError as exc:
        errors.append(f"config.model: {exc}")
    if model.backbone_weights is not None:
        need(model.backbone == "resnet18", "config.model.backbone_weights needs backbone resnet18")
        need(
            model.backbone_weights.is_file(),
            f"config.model.backbone_weights: {model.backbone_weights} does not exist",
        )
    from ailut_jax.data import DATASETS, builder_class

    if d["name"] not in DATASETS:
        errors.append(f"config.data.name: unknown dataset {d['name']!r}; known: {list(DATASETS)}")
    else:
        cls = builder_class(d["name"])
        configs = cls.builder_configs
        if d["config"] and getattr(cls, "ANY_CONFIG_NAME", False):
            try:
                cls.check_config_name(d["config"])
            except ValueError as exc:
                errors.append(f"config.data.config: {exc}")
        elif d["config"] and d["config"] not in configs:
            errors.append(
                f"config.data.config: {d['name']} has no config {d['config']!r}; "
                f"known: {', '.join(configs)}"
            )
    for key in ("source", "train_list", "test_list"):
        value = d[key]
        if value and d["name"] == "pairs":
            errors.append(
                f"config.data.{key}: pairs datasets are built beforehand, with `ailut "
                "build-dataset pairs --inputs DIR --targets DIR [--split-file ...]`; unset it"
            )
        elif value and not Path(value).expanduser().exists():
            errors.append(f"config.data.{key}: {value} does not exist")
    if errors:
        raise ConfigError("invalid training config:\n  " + "\n  ".join(errors))
    return TrainConfig(
        name=c["name"],
        seed=c["seed"],
        steps=c["steps"],
        batch_size=c["batch_size"],
        generations=c["generations"],
        impl=c["impl"],
        model=model,
        data=DataSettings(
            name=d["name"],
            config=d["config"] or None,
            source=_path(d["source"]),
            data_dir=_path(d["data_dir"]),
            train_list=_path(d["train_list"]),
            test_list=_path(d["test_list"]),
            test_split=d["test_split"],
            crop_size=d["crop_size"],
            resize_to=d["resize_to"],
            canvas_buckets=d["canvas_buckets"],
            flip_prob=float(d["flip_prob"]),
            brightness=float(d["brightness"]),
            saturation=float(d["saturation"]),
            worker_count=d["worker_count"],
            eval_limit=d["eval_limit"],
        ),
        optim=OptimSettings(**{f.name: o[f.name] for f in dataclasses.fields(OptimSettings)}),
        loss=LossSettings(**{k: float(lo[k]) for k in ("sparsity", "monotonicity", "smoothness")}),
        distill=DistillSettings(weight=float(di["weight"]), targets=targets),
        log_every=c["log_every"],
        eval_every=c["eval_every"] or None,
        checkpoint_every=c["checkpoint_every"],
        keep_checkpoints=c["keep_checkpoints"],
        grid_images=c["grid_images"],
        progress=c["progress"],
    )
