"""Training batches of images of any size in a few fixed shapes ("canvases").

The authors train on ratio crops of photos of many sizes and both orientations, so each
batch has a new shape and a jitted step would compile again and again. The transform
is per pixel, so a crop can be laid out flat: its ``h * w`` pixels row-major in a
``(N, 3)`` canvas, padded to ``N``, one of a few sizes (the *bucket ladder*, at most
``config.data.canvas_buckets`` of them) that cover every crop the data can produce. The
step then compiles once per bucket. The batch also carries each crop's ``(h, w)``: the
backbone's thumbnail is resized from the valid pixels only
(:func:`ailut_jax.models.layers.resize_bilinear_flat`) and the loss ignores the padding,
so loss and gradients are those of the unpadded crop.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

#: Canvas sizes are multiples of this many pixels.
GRANULE = 1024
#: Canvas sizes planned when the caller does not say (``config.data.canvas_buckets``).
DEFAULT_BUCKETS = 4


def _area(size) -> int:
    if isinstance(size, int):
        return size * size
    h, w = size
    return int(h) * int(w)


def crop_pixel_range(
    sizes: Sequence[tuple[int, int]],
    *,
    crop_size,
    resize_to,
    crop_ratio: tuple[float, float] = (0.6, 1.0),
) -> tuple[int, int]:
    """Smallest and largest number of pixels of a training crop, for images of ``sizes``.

    ``crop_size`` / ``resize_to``: an int or ``(h, w)``; either fixes the crop's size.
    """
    if resize_to is not None:
        return _area(resize_to), _area(resize_to)
    if crop_size is not None:
        return _area(crop_size), _area(crop_size)
    if not sizes:
        raise ValueError("no image sizes to plan canvases for")
    lo, hi = crop_ratio
    smallest = min(max(1, int(h * lo)) * max(1, int(w * lo)) for h, w in sizes)
    largest = max(max(1, int(h * hi)) * max(1, int(w * hi)) for h, w in sizes)
    return smallest, largest


def bucket_ladder(min_pixels: int, max_pixels: int, n_buckets: int) -> tuple[int, ...]:
    """At most ``n_buckets`` canvas sizes, geometrically spaced from ``min_pixels`` up to
    ``max_pixels`` (each rounded up to a multiple of :data:`GRANULE`), ascending."""
    if not 1 <= min_pixels <= max_pixels:
        raise ValueError(f"bad pixel range [{min_pixels}, {max_pixels}]")
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")

    def up(n: float) -> int:
        return int(math.ceil(n / GRANULE)) * GRANULE

    if n_buckets == 1 or up(min_pixels) >= up(max_pixels):
        return (up(max_pixels),)
    ratio = max_pixels / min_pixels
    steps = [min_pixels * ratio ** (k / (n_buckets - 1)) for k in range(n_buckets)]
    ladder = sorted({up(n) for n in steps[:-1]} | {up(max_pixels)})
    return tuple(ladder)


def bucket_index(n_pixels: int, ladder: Sequence[int]) -> int:
    """Index of the smallest canvas holding ``n_pixels``."""
    for i, size in enumerate(ladder):
        if n_pixels <= size:
            return i
    raise ValueError(f"a crop of {n_pixels} pixels exceeds the largest canvas ({ladder[-1]})")


def collate(examples: Sequence[dict], ladder: Sequence[int]) -> dict:
    """Lay a list of ``{"input", "target": (h, w, 3)}`` crops flat into one canvas size.

    Returns ``{"input", "target": (B, N, 3) float32, "size": (B, 2) int32}`` with ``N``
    the smallest bucket holding the largest crop; padding is zero.
    """
    sizes = np.array([ex["input"].shape[:2] for ex in examples], np.int32)
    n = ladder[bucket_index(int((sizes[:, 0] * sizes[:, 1]).max()), ladder)]
    out = {}
    for key in ("input", "target"):
        canvas = np.zeros((len(examples), n, 3), np.float32)
        for i, ex in enumerate(examples):
            flat = np.asarray(ex[key], np.float32).reshape(-1, 3)
            canvas[i, : flat.shape[0]] = flat
        out[key] = canvas
    out["size"] = sizes
    if "id" in examples[0]:
        out["id"] = np.array([str(ex["id"]) for ex in examples])
    return out


def pad_to(batch: dict, n: int) -> dict:
    """``batch`` with its canvases padded to ``n`` pixels (another process's bucket)."""
    have = batch["input"].shape[1]
    if have == n:
        return batch
    if have > n:
        raise ValueError(f"cannot shrink a canvas of {have} pixels to {n}")
    pad = ((0, 0), (0, n - have), (0, 0))
    return dict(batch, input=np.pad(batch["input"], pad), target=np.pad(batch["target"], pad))


def valid_mask(sizes, n: int):
    """``(B, N)`` booleans: which canvas entries hold pixels (works on numpy and jax)."""
    import jax.numpy as jnp

    count = sizes[:, 0] * sizes[:, 1]
    return jnp.arange(n)[None, :] < count[:, None]


def unflatten(canvas: np.ndarray, size) -> np.ndarray:
    """One image ``(h, w, 3)`` back from its flat canvas row."""
    h, w = int(size[0]), int(size[1])
    return np.asarray(canvas)[: h * w].reshape(h, w, 3)


def image_sizes(name: str, split: str, *, config: str | None, data_dir) -> list[tuple[int, int]]:
    """``(h, w)`` of every input image of a built split, from the encoded images' headers
    (no pixel is decoded: about 2 ms an image)."""
    import tensorflow_datasets as tfds
    from PIL import Image

    from ailut_jax.data import _resolve

    cls, config, data_dir, _ = _resolve(name, config, data_dir)
    builder = cls(data_dir=data_dir, config=config)
    source = builder.as_data_source(
        split=split,
        decoders={"input": tfds.decode.SkipDecoding(), "target": tfds.decode.SkipDecoding()},
    )
    sizes = []
    for i in range(len(source)):
        with Image.open(io.BytesIO(source[i]["input"])) as im:
            w, h = im.size
        sizes.append((h, w))
    return sizes
