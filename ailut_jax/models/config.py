"""The model configuration: one dataclass, serialised as JSON in every model directory."""

from __future__ import annotations

import dataclasses
from typing import Any

BACKBONES = ("cnn", "resnet18")
_DEFAULT_INPUT_SIZE = {"cnn": 256, "resnet18": 224}
# The original ResNet-18 backbone is torchvision's, which has no dropout.
_DEFAULT_DROPOUT = {"cnn": 0.5, "resnet18": 0.0}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of an :class:`~ailut_jax.models.AiLUT` model (docs/method.md).

    Attributes:
      backbone: ``"cnn"`` (the authors' 5-layer "TPAMI" CNN, FiveK) or ``"resnet18"``
        (torchvision layout without the classifier, PPR10K).
      n_ranks: number of basis LUTs ``M`` (3 for FiveK, 5 for PPR10K).
      n_vertices: lattice points per axis ``D``.
      en_adaint: predict non-uniform vertices (AdaInt); off gives the uniform 3D-LUT
        baseline, whose CNN backbone then skips the 2x2 pooling (8192 features).
      adaint_share: predict one row of intervals shared by the three channels.
      dropout: dropout rate on the backbone features, training only. ``None`` picks the
        original's value for the backbone: 0.5 for the CNN, 0 for ResNet-18.
      input_size: side of the square thumbnail the backbone sees. ``None`` picks 256 for
        the CNN and 224 for ResNet-18.
    """

    backbone: str = "cnn"
    n_ranks: int = 3
    n_vertices: int = 33
    en_adaint: bool = True
    adaint_share: bool = False
    dropout: float | None = None
    input_size: int | None = None

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.input_size is None:
            object.__setattr__(self, "input_size", _DEFAULT_INPUT_SIZE[self.backbone])
        if self.dropout is None:
            object.__setattr__(self, "dropout", _DEFAULT_DROPOUT[self.backbone])
        if not (isinstance(self.n_ranks, int) and self.n_ranks >= 1):
            raise ValueError(f"n_ranks must be a positive int, got {self.n_ranks!r}")
        if not (isinstance(self.n_vertices, int) and self.n_vertices >= 2):
            raise ValueError(f"n_vertices must be an int >= 2, got {self.n_vertices!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        min_size = 32
        if not (isinstance(self.input_size, int) and self.input_size >= min_size):
            raise ValueError(f"input_size must be an int >= {min_size}, got {self.input_size!r}")
        if self.backbone == "cnn" and self.input_size % 32:
            raise ValueError(
                f"the CNN backbone halves its input five times; input_size must be a multiple "
                f"of 32, got {self.input_size}"
            )

    @property
    def n_features(self) -> int:
        """Length ``F`` of the feature vector the backbone hands to the generators."""
        if self.backbone == "resnet18":
            return 512
        side = 2 if self.en_adaint else self.input_size // 32
        return 128 * side * side

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a newer format)."""
        if not isinstance(data, dict):
            raise ValueError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)
