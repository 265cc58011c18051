"""Train AdaInt with born-again generations (the project's main job).

    python train.py          # the demo: builds ailut_demo, trains 3 generations
    python train.py --config configs/fivek_srgb.py --workdir runs/fivek_srgb
    python train.py --config configs/demo.py --config.steps=200 --config.generations=2

A rerun with the same --workdir resumes from its latest checkpoint. Several processes
(multi-host) call jax.distributed.initialize() when JAX_COORDINATOR_ADDRESS is set.
"""

import os
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

_HERE = Path(__file__).resolve().parent
_CONFIG = config_flags.DEFINE_config_file(
    "config", str(_HERE / "configs" / "demo.py"), "Training config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config.name>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import jax
    from absl import logging

    # orbax logs every save at INFO; the progress bar and summaries are what matter here.
    logging.set_verbosity(logging.WARNING)

    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
    from ailut_jax.train import ConfigError, TrainingDiverged, train

    config = _CONFIG.value
    workdir = _WORKDIR.value or str(Path("runs") / config.name)
    try:
        train(config, workdir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
