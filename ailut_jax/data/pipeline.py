"""grain input pipelines: shuffled, augmented, batched training data and full-image eval.

Training::

    source = ailut_jax.data.open_source("ailut_demo", "train")
    it = make_train_loader(source, batch_size=1, seed=0)
    batch = next(it)            # flat canvases {"input", "target": (B, N, 3), "size": (B, 2)}
    state = it.get_state()      # JSON-serialisable dict; store it with the checkpoint
    it.set_state(state)         # a resumed run continues with the same batches

The stream is infinite: each epoch is reshuffled and re-augmented with seeds derived
from ``seed`` and the epoch number, so it is deterministic for a seed. Crops of any
size are laid flat into one of a few canvas sizes (:mod:`ailut_jax.data.canvas`), so
the training step compiles once per canvas size, not once per crop shape. With several
processes (``jax.process_index()`` of ``jax.process_count()``) each process takes its
own share of every global batch; together they see the single-process stream.
With ``worker_count > 0`` decoding and augmentation run in that many worker processes
(the caller's script needs an ``if __name__ == "__main__":`` guard).
"""

from __future__ import annotations

import functools

import grain
import numpy as np

from ailut_jax.data import augment as aug
from ailut_jax.data import canvas


def to_float_example(example: dict, input_scale: float, target_scale: float = 255.0) -> dict:
    """uint8/uint16 example -> float32 ``[0, 1]`` (divided in float32, as the original)."""
    return {
        "input": np.clip(example["input"].astype(np.float32) / np.float32(input_scale), 0.0, 1.0),
        "target": np.clip(
            example["target"].astype(np.float32) / np.float32(target_scale), 0.0, 1.0
        ),
        "id": example["id"],
    }


def _train_transform(
    example: dict,
    rng: np.random.Generator,
    *,
    input_scale: float,
    augment: bool,
    crop_ratio,
    crop_size,
    resize_to,
    flip_prob: float,
    brightness: float,
    saturation: float,
    with_ids: bool = False,
) -> dict:
    inp, target = example["input"], example["target"]
    if crop_size is not None:
        inp, target = aug.random_crop(inp, target, rng if augment else None, crop_size)
    elif augment and crop_ratio is not None:
        inp, target = aug.random_ratio_crop(inp, target, rng, crop_ratio)
    ex = to_float_example({"input": inp, "target": target, "id": example["id"]}, input_scale)
    inp, target = ex["input"], ex["target"]
    if resize_to is not None:
        inp, target = aug.resize(inp, resize_to), aug.resize(target, resize_to)
    if augment:
        inp, target = aug.random_hflip(inp, target, rng, flip_prob)
        if brightness or saturation:
            inp = aug.color_jitter(inp, rng, brightness, saturation)
    out = {
        "input": np.ascontiguousarray(np.clip(inp, 0.0, 1.0), dtype=np.float32),
        "target": np.ascontiguousarray(target, dtype=np.float32),
    }
    if with_ids:
        out["id"] = example["id"]
    return out


def _process_shard(shard_index, shard_count) -> tuple[int, int]:
    if shard_index is None or shard_count is None:
        import jax

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    return int(shard_index), int(shard_count)


class _ProcessShare(grain.MapDataset):
    """This process's share of each global batch, in order.

    The global stream is cut into batches of ``local * count`` examples; process
    ``index`` takes examples ``[index * local, (index + 1) * local)`` of each. Element
    ``j`` is parent element ``(j // local) * local * count + index * local + j % local``,
    so a process decodes only its own examples, and the processes together see exactly
    the stream a single process would.
    """

    def __init__(self, parent: grain.MapDataset, local: int, index: int, count: int):
        super().__init__(parent)
        self._local, self._index, self._count = local, index, count

    def __len__(self) -> int:
        return len(self._parent) // self._count

    def __getitem__(self, j):
        if isinstance(j, slice):
            return self.slice(j)
        batch, i = divmod(int(j), self._local)
        return self._parent[(batch * self._count + self._index) * self._local + i]

    def __str__(self) -> str:
        return f"ProcessShare(local={self._local}, index={self._index}, count={self._count})"


def make_train_dataset(
    source,
    *,
    batch_size: int,
    seed: int,
    ladder=None,
    crop_size=None,
    resize_to=None,
    augment: bool = True,
    crop_ratio=(0.6, 1.0),
    flip_prob: float = 0.5,
    brightness: float = 0.2,
    saturation: float = 0.2,
    worker_count: int = 0,
    worker_buffer_size: int = 2,
    read_threads: int = 2,
    prefetch_batches: int = 4,
    shard_index: int | None = None,
    shard_count: int | None = None,
    with_ids: bool = False,
) -> grain.IterDataset:
    """The infinite training stream as a ``grain.IterDataset`` (see :func:`make_train_loader`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shard_index, shard_count = _process_shard(shard_index, shard_count)
    if len(source) == 0:
        raise ValueError(f"{source!r} holds no examples")
    if ladder is None:
        ladder = _default_ladder(source, crop_size, resize_to, crop_ratio)
    transform = functools.partial(
        _train_transform,
        input_scale=float(getattr(source, "input_scale", 255.0)),
        augment=augment,
        crop_ratio=crop_ratio,
        crop_size=crop_size,
        resize_to=resize_to,
        flip_prob=flip_prob,
        brightness=brightness,
        saturation=saturation,
        with_ids=with_ids,
    )
    # One global stream of single crops (the same in every process), shuffled and
    # augmented per element index; each process then takes its share of every global
    # batch and lays it flat into one of the ladder's canvas sizes.
    ds = (
        grain.MapDataset.source(source)
        .shuffle(seed=seed % 2**32)
        .random_map(transform, seed=(seed + 1) % 2**32)
        .repeat(None)
    )
    ds = _ProcessShare(ds, batch_size, shard_index, shard_count)
    ds = ds.batch(
        batch_size,
        drop_remainder=True,
        batch_fn=functools.partial(canvas.collate, ladder=tuple(ladder)),
    )
    # grain's default read-ahead (16 threads, 500 elements) would decode hundreds of
    # batches ahead, per worker, and again after every set_state: keep it small.
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    )
    if worker_count > 0:
        _mark_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
            )
        )
    return it_ds


def _default_ladder(source, crop_size, resize_to, crop_ratio) -> tuple[int, ...]:
    """A ladder for sources that can report their image sizes (or fixed-size crops)."""
    if crop_size is not None or resize_to is not None:
        lo, hi = canvas.crop_pixel_range(
            [], crop_size=crop_size, resize_to=resize_to, crop_ratio=crop_ratio
        )
        return canvas.bucket_ladder(lo, hi, 1)
    sizes = [tuple(source[i]["input"].shape[:2]) for i in range(len(source))]
    lo, hi = canvas.crop_pixel_range(sizes, crop_size=None, resize_to=None, crop_ratio=crop_ratio)
    return canvas.bucket_ladder(lo, hi, canvas.DEFAULT_BUCKETS)


def make_train_loader(source, **kwargs) -> grain.DatasetIterator:
    """Infinite iterator of training batches from a random-access ``source``.

    ``source[i]`` must give ``{"input": uint8|uint16, "target": uint8, "id": str}`` (a
    :class:`ailut_jax.data.PairSource`; its ``input_scale`` says 255 or 65535).

    Keyword arguments: ``batch_size`` (this process's batch), ``seed`` (required);
    ``ladder``: the canvas sizes (:func:`ailut_jax.data.canvas.bucket_ladder`; by
    default planned from the source's image sizes, which decodes every image once:
    the trainer passes one planned from the encoded headers instead); ``crop_size``
    (int or (h, w): a random crop of that size instead of the ratio crop) or
    ``resize_to`` (int or (h, w): bilinear resize after the ratio crop, as PPR10K
    does); ``augment`` (False: no crop ratio, flip or jitter; a ``crop_size`` crop is
    then centred); ``crop_ratio`` (0.6, 1.0), ``flip_prob`` 0.5, ``brightness`` 0.2,
    ``saturation`` 0.2 (set both to 0 for the XYZ and PPR10K recipes);
    ``worker_count`` (0 = decode in this process, with ``read_threads`` threads),
    ``worker_buffer_size`` (batches queued per worker), ``prefetch_batches`` (batches
    decoded ahead by each reader); ``shard_index`` / ``shard_count`` (default
    ``jax.process_index()`` / ``jax.process_count()``): this process's share of each
    global batch of ``batch_size * shard_count`` examples; ``with_ids`` adds the
    examples' ids (a ``(B,)`` str array, not a JAX type: drop it before ``device_put``).

    Yields flat canvases (:func:`ailut_jax.data.canvas.collate`): ``{"input",
    "target": (B, N, 3) float32 in [0, 1], "size": (B, 2) int32}``, crop ``b`` of
    ``size[b] = (h, w)`` row-major in the first ``h * w`` rows, zeros after; ``N`` is
    the smallest ladder size that holds the batch's largest crop.
    The iterator's ``get_state()`` / ``set_state(state)`` save and restore the position.
    """
    return iter(make_train_dataset(source, **kwargs))


def make_eval_loader(source, *, shard_index: int = 0, shard_count: int = 1) -> grain.MapDataset:
    """Full images in order, one at a time, no augmentation.

    Iterating yields ``{"input": (1, H, W, 3) float32, "target": (1, H, W, 3) float32,
    "id": str}``; ``len()`` is the number of images (of this shard).
    """
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    return ds.map(
        functools.partial(_eval_transform, input_scale=float(getattr(source, "input_scale", 255.0)))
    )


def _eval_transform(example: dict, *, input_scale: float) -> dict:
    ex = to_float_example(example, input_scale)
    return {"input": ex["input"][None], "target": ex["target"][None], "id": ex["id"]}


def _mark_absl_flags_parsed() -> None:
    # grain's worker processes read absl flags; a script not run via absl.app has not
    # parsed them, which grain reports as an error.
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
