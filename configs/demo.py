"""The default run: AdaInt + two born-again students on the built-in ailut_demo photos.

    python train.py                    # same as --config configs/demo.py --workdir runs/demo

Sized to finish (dataset build, three generations, evaluation) within 10 minutes on a
2-core CPU. It departs from the FiveK recipe on purpose: a **higher learning rate
(1e-3 instead of 1e-4)**, batch 4 of fixed 160x160 crops, a 128x128 thumbnail for the
backbone, D = 17 lattice points, AdaInt frozen for only the first 100 steps, and a
few hundred steps per generation.
"""

from ailut_jax.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "demo"
    c.data.name = "ailut_demo"
    c.data.config = "retouch"
    c.data.crop_size = 160
    c.batch_size = 4
    c.model.n_vertices = 17
    c.model.input_size = 128
    c.steps = 400
    c.optim.lr = 1e-3
    c.optim.n_fix_iters = 100
    c.log_every = 10
    c.eval_every = 200
    c.checkpoint_every = 100
    c.keep_checkpoints = 2
    return c
