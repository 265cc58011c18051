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

import importlib.util
from pathlib import Path


def _demo_config():
    """configs/demo.py, the recipe this one starts from (read beside this file, so it works
    from a checkout and from the installed package alike)."""
    spec = importlib.util.spec_from_file_location(
        "_ailut_demo_config", Path(__file__).with_name("demo.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config(arg: str | None = None):
    # The demo's CPU recipe (crops of 160, batch 4, 17 vertices, 8 ranks, a 128-pixel
    # thumbnail, lr 1e-3 with cosine decay), on the user's pairs: one generation of 1000
    # steps, the held-out PSNR every 250.
    c = _demo_config()
    c.name = "pairs"
    c.data.name = "pairs"
    # The dataset's name given to `ailut build-dataset pairs --name NAME`.
    c.data.config = arg or "default"
    c.generations = 1
    c.steps = 1000
    c.eval_every = 250
    return c
