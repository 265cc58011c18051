"""AdaInt on PPR10K (expert a, six augmented inputs per photo): ResNet-18, M = 5.

Batch 16, ratio crop then resize to 448x448, flip, no colour jitter, 200 epochs of the
53,250 augmented training pairs (665,625 steps), AdaInt frozen for the first 5 epochs.
ImageNet weights are not reachable offline: the backbone trains from scratch.

    ailut build-dataset ppr10k --config target_a_aug --source /data/PPR10K
    python train.py --config configs/ppr10k.py --workdir runs/ppr10k
"""

from ailut_jax.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "ppr10k"
    c.model.backbone = "resnet18"
    c.model.n_ranks = 5
    c.data.name = "ppr10k"
    c.data.config = "target_a_aug"
    c.data.resize_to = 448
    c.data.brightness = 0.0
    c.data.saturation = 0.0
    c.batch_size = 16
    c.steps = 665_625
    c.optim.n_fix_iters = 16_640
    c.checkpoint_every = 5_000
    c.eval_every = 20_000
    return c
