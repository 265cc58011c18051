"""Train AdaInt with born-again generations (the project's main job).

    python train.py          # the demo: builds ailut_demo, trains 3 generations
    python train.py --config configs/fivek_srgb.py --workdir runs/fivek_srgb
    python train.py --config configs/demo.py --config.steps=200 --config.generations=2

The same as ``ailut train``; the flags and the training itself live in the package
(``ailut_jax/cli/train.py``, ``ailut_jax/train/``). A rerun with the same --workdir
resumes from its latest checkpoint.
"""

import sys

from ailut_jax.cli.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))
