"""grain pipeline: augmentation statistics, determinism, epochs, canvases, process shares,
state save/restore."""

from __future__ import annotations

import numpy as np
import pytest

from ailut_jax.data import augment as aug
from ailut_jax.data import build_dataset, canvas, open_source
from ailut_jax.data.pipeline import (
    _train_transform,
    make_eval_loader,
    make_train_loader,
)

H, W = 100, 80


class ListSource:
    """A tiny in-memory source with the PairSource interface."""

    input_scale = 255.0

    def __init__(self, n=10, shape=(H, W)):
        rng = np.random.default_rng(0)
        self.items = [
            {
                "input": rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
                "target": rng.integers(0, 256, (*shape, 3), dtype=np.uint8),
                "id": f"img{i:02d}",
            }
            for i in range(n)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _coordinate_example(grey: bool) -> dict:
    """Input and target encode (row, col) in R and G so the crop box and flip can be read back."""
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    inp = np.stack([rows + 50, cols + 50, np.full_like(rows, 128)], -1).astype(np.uint8)
    if grey:  # grey input: saturation jitter is a no-op, brightness is a pure scale
        inp = np.full((H, W, 3), 150, np.uint8)
    target = np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)
    return {"input": inp, "target": target, "id": "coords"}


def _transform(example, rng, **overrides):
    kwargs = dict(
        input_scale=255.0,
        augment=True,
        crop_ratio=(0.6, 1.0),
        crop_size=None,
        resize_to=None,
        flip_prob=0.5,
        brightness=0.2,
        saturation=0.2,
    )
    kwargs.update(overrides)
    return _train_transform(example, rng, **kwargs)


def test_augmentation_statistics():
    rng = np.random.default_rng(1)
    ex = _coordinate_example(grey=False)
    grey = _coordinate_example(grey=True)
    ratios_h, ratios_w, flips, gains = [], [], [], []
    for _ in range(500):
        out = _transform(ex, rng)
        t = np.rint(out["target"] * 255).astype(int)
        h, w = t.shape[:2]
        ratios_h.append(h / H)
        ratios_w.append(w / W)
        flipped = t[0, 0, 1] > t[0, -1, 1]
        flips.append(flipped)
        # The target is an exact crop (and maybe flip) of the original target: untouched.
        y0, x0 = t[0, :, 0].min(), t[0, :, 1].min()
        want = ex["target"][y0 : y0 + h, x0 : x0 + w].astype(int)
        np.testing.assert_array_equal(t, want[:, ::-1] if flipped else want)
        # Same geometry on the input (the R/G coordinates survive the mild jitter ordering).
        assert out["input"].shape == out["target"].shape
        g = _transform(grey, rng)["input"]
        gains.append(float(g.mean() / (150 / 255)))
        assert np.ptp(g) < 1e-6  # grey stays grey (saturation jitter does not add colour)
    ratios_h, ratios_w = np.array(ratios_h), np.array(ratios_w)
    for r, n in ((ratios_h, H), (ratios_w, W)):
        assert r.min() >= 0.6 - 1 / n and r.max() <= 1.0
        assert 0.77 < r.mean() < 0.82  # U(0.6, 1) floored to whole pixels
    assert abs(np.corrcoef(ratios_h, ratios_w)[0, 1]) < 0.15  # independent ratios
    assert 0.43 < np.mean(flips) < 0.57
    gains = np.array(gains)
    assert 0.8 - 1e-3 <= gains.min() < 0.83 and 1.17 < gains.max() <= 1.2 + 1e-3


def test_jitter_changes_input_only_and_matches_torchvision_formulas():
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 1, (8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(aug.adjust_brightness(img, 1.1), np.clip(img * 1.1, 0, 1), 1e-6)
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    want = np.clip(grey[..., None] + 0.9 * (img - grey[..., None]), 0, 1)
    np.testing.assert_allclose(aug.adjust_saturation(img, 0.9), want, 1e-6)
    ex = _coordinate_example(grey=False)
    out = _transform(ex, rng, crop_ratio=None, flip_prob=0.0)
    np.testing.assert_array_equal(out["target"], ex["target"] / np.float32(255))
    assert not np.allclose(out["input"], ex["input"] / np.float32(255))
    out = _transform(ex, rng, crop_ratio=None, flip_prob=0.0, brightness=0, saturation=0)
    np.testing.assert_array_equal(out["input"], ex["input"] / np.float32(255))


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return all(
        np.array_equal(x["input"], y["input"])
        and np.array_equal(x["target"], y["target"])
        and list(x["id"]) == list(y["id"])
        for x, y in zip(a, b, strict=True)
    )


def _loader(src, **kw):
    kw = {"batch_size": 3, "crop_size": 32, "seed": 7, "shard_index": 0, "shard_count": 1,
          "with_ids": True} | kw  # fmt: skip
    return make_train_loader(src, **kw)


def test_train_loader_batches_are_deterministic_and_seeded():
    src = ListSource()
    a = _take(_loader(src), 5)
    # Fixed 32x32 crops: one canvas of 1024 pixels, each crop filling it.
    assert a[0]["input"].shape == (3, 1024, 3) and a[0]["input"].dtype == np.float32
    assert a[0]["size"].tolist() == [[32, 32]] * 3
    assert a[0]["target"].dtype == np.float32 and a[0]["id"].shape == (3,)
    assert 0.0 <= min(b["input"].min() for b in a) and max(b["input"].max() for b in a) <= 1.0
    assert _same(a, _take(_loader(src), 5))
    assert not _same(a, _take(_loader(src, seed=8), 5))


def test_epochs_are_reshuffled_permutations():
    src = ListSource(n=10)
    it = _loader(src, batch_size=1, crop_size=None, augment=False)
    ids = [str(b["id"][0]) for b in _take(it, 30)]
    epochs = [ids[0:10], ids[10:20], ids[20:30]]
    for epoch in epochs:
        assert sorted(epoch) == [f"img{i:02d}" for i in range(10)]
    assert epochs[0] != epochs[1] != epochs[2]


def test_state_save_and_restore_continues_the_same_stream():
    src = ListSource(n=10)
    it = _loader(src)
    _take(it, 4)  # past the first epoch (10 examples / 3 per batch)
    state = it.get_state()
    expected = _take(it, 5)
    resumed = _loader(src)
    resumed.set_state(state)
    assert _same(expected, _take(resumed, 5))


def test_processes_take_their_share_of_each_global_batch():
    """Two processes with local batch 2 see, batch for batch, the two halves of what one
    process with batch 4 sees: the same global stream."""
    src = ListSource(n=11)
    whole = _take(_loader(src, batch_size=4, crop_size=None), 6)
    parts = [
        _take(_loader(src, batch_size=2, crop_size=None, shard_index=k, shard_count=2), 6)
        for k in range(2)
    ]
    for t, batch in enumerate(whole):
        ids = [str(x) for x in batch["id"]]
        assert [str(x) for x in parts[0][t]["id"]] == ids[:2]
        assert [str(x) for x in parts[1][t]["id"]] == ids[2:]
        for k in range(2):
            for i in range(2):
                h, w = batch["size"][2 * k + i]
                assert parts[k][t]["size"][i].tolist() == [h, w]
                np.testing.assert_array_equal(
                    canvas.unflatten(parts[k][t]["input"][i], (h, w)),
                    canvas.unflatten(batch["input"][2 * k + i], (h, w)),
                )
    # Over the first epoch-and-a-bit every example appears, none twice within an epoch.
    seen = [str(x) for b in whole for x in b["id"]][:11]
    assert sorted(seen) == [f"img{i:02d}" for i in range(11)]


def test_crops_of_any_size_are_laid_flat_into_few_canvases():
    """Ratio crops of images of many sizes and both orientations: every batch is one of
    the ladder's canvas sizes, the crop's pixels are row-major at the start and the
    padding is zero."""
    rng = np.random.default_rng(5)
    shapes = [(int(rng.integers(40, 120)), int(rng.integers(40, 120))) for _ in range(12)]

    class Mixed(ListSource):
        def __init__(self):
            self.items = [
                {
                    "input": rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
                    "target": rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
                    "id": f"img{i:02d}",
                }
                for i, hw in enumerate(shapes)
            ]

    src = Mixed()
    lo, hi = canvas.crop_pixel_range(shapes, crop_size=None, resize_to=None)
    ladder = canvas.bucket_ladder(lo, hi, 4)
    assert len(ladder) == 4 and ladder[-1] >= hi
    batches = _take(_loader(src, batch_size=2, crop_size=None, ladder=ladder), 40)
    crop_shapes = {tuple(hw) for b in batches for hw in b["size"].tolist()}
    assert len(crop_shapes) > 20  # many different crop shapes ...
    canvases = {b["input"].shape[1] for b in batches}
    assert canvases <= set(ladder) and len(canvases) >= 2  # ... in a few canvas sizes
    for b in batches:
        n = b["input"].shape[1]
        largest = int((b["size"][:, 0] * b["size"][:, 1]).max())
        assert n == ladder[canvas.bucket_index(largest, ladder)]
        mask = np.asarray(canvas.valid_mask(b["size"], n))
        assert (b["input"][~mask] == 0).all() and (b["target"][~mask] == 0).all()
        for i, (h, w) in enumerate(b["size"].tolist()):
            assert mask[i].sum() == h * w
            full_h, full_w = shapes[int(str(b["id"][i])[3:])]
            assert int(0.6 * full_h) <= h <= full_h and int(0.6 * full_w) <= w <= full_w


def test_resize_batches_and_size_errors():
    src = ListSource(n=4)
    batch = next(_loader(src, batch_size=2, crop_size=None, resize_to=(48, 64)))
    assert batch["input"].shape == (2, 48 * 64, 3) and batch["target"].shape == (2, 48 * 64, 3)
    assert batch["size"].tolist() == [[48, 64], [48, 64]]
    with pytest.raises(ValueError, match="does not fit"):
        next(_loader(src, crop_size=(H + 1, 16)))


def test_default_batches_are_pure_float_arrays_of_this_jax_process():
    import jax

    it = make_train_loader(ListSource(n=4), batch_size=1, seed=0)
    batch = next(it)
    assert set(batch) == {"input", "target", "size"} and batch["input"].shape[0] == 1
    assert batch["size"].dtype == np.int32
    on_device = jax.device_put(batch)
    assert on_device["input"].dtype == np.float32


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo_pipeline")
    build_dataset(
        "ailut_demo", data_dir=data_dir, train_pairs_per_photo=2, test_pairs_per_photo=1, seed=1
    )
    return data_dir


def test_eval_loader_yields_full_images_in_order(demo_dir):
    src = open_source("ailut_demo", "test", data_dir=demo_dir)
    ev = make_eval_loader(src)
    assert len(ev) == len(src) == 2
    for i, ex in enumerate(ev):
        raw = src[i]
        assert ex["id"] == raw["id"]
        assert ex["input"].shape == (1, *raw["input"].shape)
        np.testing.assert_array_equal(ex["input"][0], raw["input"] / np.float32(255))
        np.testing.assert_array_equal(ex["target"][0], raw["target"] / np.float32(255))


def test_worker_processes_give_the_same_batches_and_resume(demo_dir):
    src = open_source("ailut_demo", "train", data_dir=demo_dir)
    local = _take(_loader(src, batch_size=2, crop_size=64), 6)
    it = _loader(src, batch_size=2, crop_size=64, worker_count=2)
    first = _take(it, 3)
    state = it.get_state()
    rest = _take(it, 3)
    assert _same(local, first + rest)
    resumed = _loader(src, batch_size=2, crop_size=64, worker_count=2)
    resumed.set_state(state)
    assert _same(rest, _take(resumed, 3))
