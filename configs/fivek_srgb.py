"""AdaInt on FiveK sRGB 480p, Expert C (docs/training.md#recipes), with born-again students.

Batch 1, Adam 1e-4 (0.9, 0.999), AdaInt at 0.1x and frozen for 22,500 steps, 400 epochs
(1.8M steps) per generation, ratio crop U(0.6, 1), flip, brightness/saturation 0.2.

    ailut build-dataset fivek --source /data/FiveK
    python train.py --config configs/fivek_srgb.py --workdir runs/fivek_srgb

Quick local variant: ``--config configs/fivek_srgb.py:local`` (a few hundred steps).
"""

from ailut_jax.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "fivek_srgb"
    c.data.name = "fivek"
    c.data.config = "expert_c"
    if arg == "local":
        c.steps = 300
        c.generations = 2
        c.optim.n_fix_iters = 50
        c.log_every = 10
        c.eval_every = 100
        c.checkpoint_every = 100
        c.data.eval_limit = 20
    return c
