"""Model directories and the photo shared by the export-cube, evaluate and plot tests.

Each is made once per test session (per xdist worker): the directory lives under the
session's base temp folder and is reused by every test file that asks for it.

The authors' files (checkpoints, a4739.jpg) are found by :func:`official_file` only:
``$AILUT_OFFICIAL_DIR``, else ``../shared/official`` beside the repository.
"""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ailut_jax.models import empty_model

REPO = Path(__file__).resolve().parents[1]
SRGB_NAME = "AiLUT-FiveK-sRGB.pth"
XYZ_NAME = "AiLUT-FiveK-XYZ.pth"
PHOTO_NAME = "a4739.jpg"


def official_dir() -> Path:
    """Where the authors' files are: ``$AILUT_OFFICIAL_DIR`` or ``../shared/official``."""
    env = os.environ.get("AILUT_OFFICIAL_DIR")
    return Path(env) if env else REPO.parent / "shared" / "official"


def official_file(name: str) -> Path:
    """One of the authors' files; the calling test is skipped (a failure in CI) if absent."""
    path = official_dir() / name
    if not path.is_file():
        pytest.skip(f"{path} is missing (set AILUT_OFFICIAL_DIR to the authors' files)")
    return path


def official_srgb_dir(tmp_path_factory) -> Path:
    """The authors' FiveK sRGB checkpoint converted with ``ailut convert``."""
    checkpoint = official_file(SRGB_NAME)
    pytest.importorskip("torch", reason="converting a .pth needs torch (pip install .[convert])")
    out = tmp_path_factory.getbasetemp() / "official-fivek-srgb"
    if not (out / "config.json").is_file():
        from ailut_jax.cli import main

        assert main(["convert", str(checkpoint), "--out", str(out)]) == 0
    return out


def random_model_dir(tmp_path_factory) -> Path:
    """A small randomly initialised AiLUT (D = 9) with non-trivial LUTs and vertices.

    At initialisation the extra basis LUTs are zero and the vertices uniform; both are
    randomised here so that exports and plots exercise a genuinely non-uniform lattice.
    """
    out = tmp_path_factory.getbasetemp() / "random-ailut-d9"
    if (out / "config.json").is_file():
        return out
    import jax.numpy as jnp
    from flax import nnx

    from ailut_jax.modeldir import save_model_dir
    from ailut_jax.models import AiLUT, ModelConfig

    model = AiLUT(ModelConfig(n_vertices=9, n_ranks=3, input_size=64), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    basis = np.array(model.lut_generator.basis_luts[...])
    basis[1:] = rng.normal(0, 0.05, basis[1:].shape)
    model.lut_generator.basis_luts[...] = jnp.asarray(basis)
    kernel = model.adaint.intervals_generator.kernel
    kernel[...] = jnp.asarray(rng.normal(0, 0.01, kernel.shape), jnp.float32)
    save_model_dir(out, model)
    return out


def photo(width: int = 722, height: int = 480) -> np.ndarray:
    """a4739.jpg resized with PIL bicubic (722x480 is the FiveK 480p size), uint8."""
    from PIL import Image

    with Image.open(official_file(PHOTO_NAME)) as im:
        return np.asarray(im.convert("RGB").resize((width, height), Image.BICUBIC))


def filled_model(config, seed=0, scale=0.1):
    """A model with seeded numpy-random parameters: no JAX initialiser is compiled."""
    model = empty_model(config)
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    rng = np.random.default_rng(seed)

    def fill(path, x):
        value = rng.normal(0, scale, x.shape)
        if path[-1].key == "var":  # BatchNorm running variance
            value = np.abs(value) + 0.5
        return jnp.asarray(value.astype(np.float32))

    pure = jax.tree_util.tree_map_with_path(fill, nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model
