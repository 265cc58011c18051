"""Learn your own editing style from before/after pairs (30 to 500 of them) on a CPU.

    ailut build-dataset pairs --name mystyle --inputs before/ --targets after/
    ailut train --config configs/pairs.py --config.data.config=mystyle --workdir runs/mystyle
    ailut enhance --checkpoint runs/mystyle/model --out enhanced/ new_photos/*.jpg

The ``pairs`` dataset (see ailut_jax/data/pairs.py and docs/pairs.md) stores the photos
at a short edge of 480 pixels by default. The recipe follows configs/demo.py, sized so
that training takes minutes on a laptop CPU whatever the number of pairs (the steps, not
the epochs, are fixed):

- the **learning rate 1e-3** (not the original 1e-4) with a 20-step warmup and cosine
  decay, AdaInt at 0.1x and frozen for the first 50 steps;
- batch 4 of fixed 160x160 random crops (one compiled shape), a 128x128 thumbnail for
  the backbone, D = 17 lattice points and M = 8 basis LUTs;
- 1000 steps and **one generation** (born-again students would triple the time;
  ``--config.generations=3`` adds them).

About 2.5 minutes on a shared 2-core CPU; docs/pairs.md has the figures. With more
pairs or a GPU, raise ``--config.steps``; the held-out PSNR, logged every 250 steps and at
the end, says whether it helps.
"""

from ailut_jax.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "pairs"
    c.data.name = "pairs"
    # The dataset's name given to `ailut build-dataset pairs --name NAME`.
    c.data.config = arg or "default"
    c.data.crop_size = 160
    c.batch_size = 4
    c.generations = 1
    c.model.n_vertices = 17
    c.model.n_ranks = 8
    c.model.input_size = 128
    c.steps = 1000
    c.optim.lr = 1e-3
    c.optim.schedule = "cosine"
    c.optim.warmup_steps = 20
    c.optim.n_fix_iters = 50
    c.log_every = 10
    c.eval_every = 250
    c.checkpoint_every = 50
    c.keep_checkpoints = 2
    return c
