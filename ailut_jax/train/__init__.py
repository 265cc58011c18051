"""Training: config schema, optimizer and pmap step, born-again loop, checkpoints, reports.

Entry point: ``python train.py --config configs/NAME.py --workdir DIR`` or
:func:`ailut_jax.train.train` from Python.
"""

from ailut_jax.train.config import ConfigError, base_config, validate_config
from ailut_jax.train.loop import TrainingDiverged, train

__all__ = ["ConfigError", "TrainingDiverged", "base_config", "train", "validate_config"]
