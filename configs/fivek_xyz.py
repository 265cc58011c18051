"""AdaInt on FiveK with 16-bit XYZ PNG inputs (Expert C targets): no colour jitter.

ailut build-dataset fivek --config xyz_expert_c --source /data/FiveK
python train.py --config configs/fivek_xyz.py --workdir runs/fivek_xyz
"""

from ailut_jax.train.config import base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "fivek_xyz"
    c.data.name = "fivek"
    c.data.config = "xyz_expert_c"
    c.data.brightness = 0.0
    c.data.saturation = 0.0
    return c
