"""Full-resolution enhancement with a trained or converted model: Python API and CLI.

Python::

    from ailut_jax import Enhancer
    enhancer = Enhancer.from_checkpoint("models/fivek-srgb")
    out = enhancer(img)              # (H, W, 3) float32, unclamped
    parts = enhancer.predict(img)    # output, lut (3,D,D,D), vertices (3,D), weights (M,)

Command line::

    ailut enhance --checkpoint models/fivek-srgb --out results/ photo1.jpg photo2.tif
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import numpy as np

from ailut_jax.imageio import IMAGE_SUFFIXES


def _predict_lut(graphdef, state, thumbnail):
    from flax import nnx

    return nnx.merge(graphdef, state).predict_lut(thumbnail, deterministic=True)


@functools.cache
def _stages():
    """The three jitted stages shared by every Enhancer.

    Only the first and last see the full-resolution image, and both are cheap to
    compile; the backbone and generators run on the fixed-size thumbnail and are
    compiled once per model structure, so a new photo size costs a fraction of a
    second instead of a full recompile.
    """
    import jax

    from ailut_jax.models import apply_lut, resize_bilinear

    return (
        jax.jit(resize_bilinear, static_argnames="size"),
        jax.jit(_predict_lut, static_argnames="graphdef"),
        jax.jit(apply_lut, static_argnames=("adaptive", "impl")),
    )


class Enhancer:
    """A model ready for inference: jitted stages, parameters held on device.

    Args:
      model: an :class:`~ailut_jax.models.AiLUT`.
      impl: transform implementation, ``"auto"``, ``"ffi"`` or ``"reference"``.
    """

    def __init__(self, model, impl: str = "auto"):
        from flax import nnx

        from ailut_jax.ops.transform import IMPLS

        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        self.model = model
        self.config = model.config
        self.impl = impl
        self._graphdef, self._state = nnx.split(model)

    def _forward(self, batch):
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
            from ailut_jax.convert import load_torch_state_dict, model_from_state_dict

            model = model_from_state_dict(load_torch_state_dict(path), what=str(path))
        else:
            from ailut_jax.modeldir import load_model_dir

            model = load_model_dir(path)
        return cls(model, impl=impl)

    @staticmethod
    def _as_batch(img):
        import jax.numpy as jnp

        from ailut_jax.imageio import to_float

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


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given; directories replaced by the images they hold (sorted)."""
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


def enhance_files(
    enhancer: Enhancer,
    inputs: list[Path],
    out_dir: Path,
    *,
    bit_depth: int = 8,
    progress: bool = True,
) -> list[tuple[Path, str]]:
    """Enhance every file into ``out_dir/<stem>.png``; returns ``(path, error)`` failures.

    A file that cannot be read or enhanced is reported and skipped; the others go on.
    """
    from tqdm import tqdm

    from ailut_jax.imageio import ImageReadError, read_image, write_image

    out_dir.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    bar = tqdm(inputs, desc="enhance", unit="img", disable=not progress, file=sys.stderr)
    for path in bar:
        target = out_dir / f"{path.stem}.png"
        if target.name in seen:
            failures.append((path, f"{path}: same output name {target} as {seen[target.name]}"))
            tqdm.write(f"ailut enhance: error: {failures[-1][1]}", file=sys.stderr)
            continue
        seen[target.name] = path
        try:
            img = read_image(path)
            out = np.asarray(enhancer(img))
            write_image(target, out, bit_depth=bit_depth)
        except (ImageReadError, OSError, ValueError) as exc:
            failures.append((path, str(exc) if str(path) in str(exc) else f"{path}: {exc}"))
            tqdm.write(f"ailut enhance: error: {failures[-1][1]}", file=sys.stderr)
        except Exception as exc:  # e.g. out of memory on a huge image: skip, go on
            failures.append((path, f"{path}: {type(exc).__name__}: {exc}"))
            tqdm.write(f"ailut enhance: error: {failures[-1][1]}", file=sys.stderr)
    return failures


def _run(args: argparse.Namespace) -> int:
    from ailut_jax.modeldir import ModelDirError

    inputs = expand_inputs(args.images)
    if not inputs:
        print("ailut enhance: error: no input images", file=sys.stderr)
        return 2
    try:
        enhancer = Enhancer.from_checkpoint(args.checkpoint, impl=args.impl)
    except (ModelDirError, FileNotFoundError, ValueError, ImportError, RuntimeError) as exc:
        print(f"ailut enhance: error: {exc}", file=sys.stderr)
        return 2
    failures = enhance_files(
        enhancer, inputs, Path(args.out), bit_depth=args.bit_depth, progress=not args.quiet
    )
    done = len(inputs) - len(failures)
    print(f"enhanced {done} of {len(inputs)} images into {args.out}", file=sys.stderr)
    return 1 if failures else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "enhance",
        help="enhance photos at full resolution with a model directory",
        description=(
            "Enhance images (JPEG, PNG, TIFF; 8 or 16 bit; EXIF orientation applied) at full "
            "resolution, writing OUT/<stem>.png as round(clip(y, 0, 1) * max). Unreadable "
            "files are reported and skipped; the exit status is 1 if any failed."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="model directory from `ailut convert` or training (or an authors' .pth)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    parser.add_argument(
        "--impl", choices=("auto", "ffi", "reference"), default="auto", help="transform op"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)
