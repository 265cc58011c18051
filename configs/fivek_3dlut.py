"""The uniform 3D-LUT baseline on FiveK sRGB (AdaInt off): same recipe as fivek_srgb.

The 3D-LUT paper's CNN flattens the 8x8 feature map (8,192 features); its TV weight is
1e-4 in the original 3D-LUT code, but this config keeps AdaInt's loss (TV 0) so that the
two differ only in the sampling intervals, as in the AdaInt ablation.

    python train.py --config configs/fivek_3dlut.py --workdir runs/fivek_3dlut
"""

from ailut_jax.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "fivek_3dlut"
    c.model.en_adaint = False
    c.optim.n_fix_iters = 0
    return c
