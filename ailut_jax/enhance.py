"""Full-resolution enhancement with a trained or converted model: Python API and CLI.

Python::

    from ailut_jax import Enhancer
    enhancer = Enhancer.from_checkpoint("models/fivek-srgb")
    out = enhancer(img)              # (H, W, 3) float32, unclamped
    parts = enhancer.predict(img)    # output, lut (3,D,D,D), vertices (3,D), weights (M,)

The command line (``ailut enhance``) is :mod:`ailut_jax.cli.enhance`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ailut_jax.imageio import IMAGE_SUFFIXES, read_image, to_float, write_image
from ailut_jax.modeldir import load_model_dir
from ailut_jax.models import apply_lut, resize_bilinear
from ailut_jax.ops.transform import IMPLS


def _predict_lut(graphdef, state, thumbnail):
    return nnx.merge(graphdef, state).predict_lut(thumbnail, deterministic=True)


@functools.cache
def _stages():
    """The three jitted stages shared by every Enhancer.

    Only the first and last see the full-resolution image, and both are cheap to
    compile; the backbone and generators run on the fixed-size thumbnail and are
    compiled once per model structure, so a new photo size costs a fraction of a
    second instead of a full recompile.
    """
    return (
        jax.jit(resize_bilinear, static_argnames="size"),
        jax.jit(_predict_lut, static_argnames="graphdef"),
        jax.jit(apply_lut, static_argnames=("adaptive", "impl")),
    )


#: Image shapes compiled for since the caches were last emptied (shared by all Enhancers,
#: as the stages are).
_shapes_seen: set[tuple[int, ...]] = set()

#: How many distinct image shapes the jitted stages may be compiled for before JAX's
#: caches are emptied. Each shape keeps roughly 10 MB of executables and buffers, so a
#: folder or test split of photos that all differ in size (FiveK's) would otherwise grow
#: without bound: about 2.7 GB for 500 photos at 480p. Emptying costs one recompile of the
#: thumbnail network (about a second) per this many new shapes.
MAX_CACHED_SHAPES = 32


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere (looked up once: ``find_library`` runs
    a subprocess)."""
    libc = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(libc), "malloc_trim", None) if libc else None


def _release_compiled_shapes() -> None:
    """Empty JAX's compilation caches and hand the freed memory back to the system."""
    jax.clear_caches()
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:  # glibc: freed executables go back to the OS, not a free list
        trim(0)
    _shapes_seen.clear()


def _note_shape(shape: tuple[int, ...]) -> None:
    if shape not in _shapes_seen:
        if len(_shapes_seen) >= MAX_CACHED_SHAPES:
            _release_compiled_shapes()
        _shapes_seen.add(shape)


class Enhancer:
    """A model ready for inference: jitted stages, parameters held on device.

    Args:
      model: an :class:`~ailut_jax.models.AiLUT`.
      impl: transform implementation, ``"auto"``, ``"ffi"`` or ``"reference"``.
    """

    def __init__(self, model, impl: str = "auto"):
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.model = model
        self.config = model.config
        self.impl = impl
        self._graphdef, self._state = nnx.split(model)

    def _forward(self, batch):
        _note_shape(tuple(batch.shape))
        resize, predict, apply = _stages()
        size = self.config.input_size
        thumbnail = resize(batch, size=(size, size))
        lut, vertices, weights = predict(self._graphdef, self._state, thumbnail)
        output = apply(batch, lut, vertices, adaptive=self.config.en_adaint, impl=self.impl)
        return {"output": output, "lut": lut, "vertices": vertices, "weights": weights}

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, impl: str = "auto") -> Enhancer:
        """Load a model directory (``ailut convert`` / training) or an authors' ``.pth``."""
        path = Path(path)
        if path.suffix == ".pth" and path.is_file():
            # torch (the convert extra) is needed only for the authors' files.
            from ailut_jax.convert import load_torch_state_dict, model_from_state_dict

            model = model_from_state_dict(load_torch_state_dict(path), what=str(path))
        else:
            model = load_model_dir(path)
        return cls(model, impl=impl)

    @staticmethod
    def _as_batch(img):
        if not hasattr(img, "shape") or not hasattr(img, "dtype"):
            img = np.asarray(img)
        dtype = np.dtype(img.dtype)
        if img.ndim not in (3, 4) or img.shape[-1] != 3:
            raise ValueError(
                f"expected an RGB image (H, W, 3) or a batch (B, H, W, 3), got shape "
                f"{tuple(img.shape)} dtype {dtype}"
            )
        if min(img.shape[-3:-1]) < 1:
            raise ValueError(f"image has no pixels: shape {tuple(img.shape)}")
        if dtype in (np.uint8, np.uint16):
            img = to_float(np.asarray(img))
        elif not np.issubdtype(dtype, np.floating):
            raise ValueError(
                f"expected float images in [0, 1] or uint8/uint16, got dtype {dtype} "
                f"(shape {tuple(img.shape)})"
            )
        img = jnp.asarray(img, jnp.float32)
        return (img[None], True) if img.ndim == 3 else (img, False)

    def predict(self, img) -> dict:
        """Enhance one image and return the intermediate predictions too.

        Args:
          img: ``(H, W, 3)`` float in ``[0, 1]`` (or uint8 / uint16, scaled), any size;
            a batch ``(B, H, W, 3)`` gives batched results.

        Returns:
          ``{"output": (H, W, 3) float32 unclamped, "lut": (3, D, D, D),
          "vertices": (3, D), "weights": (M,)}`` as JAX arrays.
        """
        batch, single = self._as_batch(img)
        result = self._forward(batch)
        return {k: v[0] for k, v in result.items()} if single else result

    def __call__(self, img):
        """The enhanced image, float32 with ``img``'s shape, **not clamped**."""
        return self.predict(img)["output"]


def expand_inputs(items: list[str | os.PathLike]) -> list[Path]:
    """Files as given; folders replaced by the images they hold (sorted by name)."""
    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths.extend(
                sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
            )
        else:
            paths.append(p)
    return paths


def output_names(inputs: list[Path], out_dir: Path, suffix: str = ".png"):
    """``(targets, clashes)``: ``out_dir/<stem><suffix>`` for each input, and the inputs
    whose output name an earlier input already takes, as ``(path, message)``."""
    targets: dict[Path, Path] = {}
    clashes: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    for path in inputs:
        target = out_dir / f"{path.stem}{suffix}"
        if target.name in seen:
            clashes.append((path, f"{path}: same output name {target} as {seen[target.name]}"))
            continue
        if target.exists() and target.resolve() == path.resolve():
            clashes.append((path, f"{path}: refusing to overwrite the input with its output"))
            continue
        seen[target.name] = path
        targets[path] = target
    return targets, clashes


def enhance_file(enhancer: Enhancer, path: Path, target: Path, *, bit_depth: int = 8) -> None:
    """Read ``path``, enhance it and write ``target`` (PNG/TIFF, 8 or 16 bit)."""
    out = np.asarray(enhancer(read_image(path)))
    write_image(target, out, bit_depth=bit_depth)
