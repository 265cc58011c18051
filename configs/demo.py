"""The default run: AdaInt + two born-again students on the built-in ailut_demo photos.

    python train.py                    # same as --config configs/demo.py --workdir runs/demo

Sized to finish (dataset build, three generations, evaluation, table) within 10 minutes
on a 2-core CPU. It departs from the FiveK recipe on purpose, for speed:

- a **higher learning rate: 1e-3 instead of 1e-4**, with a 20-step warmup and cosine
  decay to 0 over each generation (the original is constant), AdaInt at 0.1x as usual,
  frozen for the first 50 steps instead of 5 epochs;
- batch 4 of fixed 160x160 crops (fixed shapes: one compile), a 128x128 thumbnail for the
  backbone, D = 17 lattice points and M = 8 basis LUTs (the demo's retouches vary in
  more ways than M = 3 spans);
- 400 steps per generation.
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
    c.model.n_ranks = 8
    c.model.input_size = 128
    c.steps = 400
    c.optim.lr = 1e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 20
    c.optim.n_fix_iters = 50
    c.log_every = 10
    c.eval_every = 200
    c.checkpoint_every = 50
    c.keep_checkpoints = 2
    return c
