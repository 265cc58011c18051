"""The built-in ailut_demo dataset: the retouch family, splits, determinism, the .cube variant."""

from __future__ import annotations

import numpy as np
import pytest

from ailut_jax.cube import CubeLUT, apply_cube_numpy, write_cube
from ailut_jax.data import build_dataset, is_built, open_source
from ailut_jax.data._common import DatasetBuildError
from ailut_jax.data.demo import (
    Photo,
    apply_retouch,
    bundled_photos,
    contrast_curve,
    draw_retouch,
    exposure_curve,
    is_test_photo,
    load_photo,
    saturate,
)
from ailut_jax.imageio import quantize, to_float, write_image


def _photo(name: str) -> Photo:
    return next(p for p in bundled_photos() if p.name == name)


def _photo_of(example_id: str) -> str:
    return example_id.rsplit("/", 1)[0]


def _group(photo_name: str) -> str:
    return "motorcycle" if photo_name.startswith("motorcycle") else photo_name


def _oracle_lut_psnr(x: np.ndarray, y: np.ndarray, bins: int = 64) -> float:
    """PSNR of the best per-image colour mapping on a ``bins^3`` grid (a LUT fitted to y)."""
    q = (x.astype(np.int64) * bins) // 256
    key = ((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).ravel()
    count = np.bincount(key, minlength=bins**3)
    mean = (
        np.stack([np.bincount(key, y[..., c].ravel().astype(float), bins**3) for c in range(3)], -1)
        / np.maximum(count, 1)[:, None]
    )
    fit = np.rint(mean[key]).reshape(y.shape)
    mse = np.mean((fit - y.astype(float)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def _fixed_lut_psnrs(train, test, bins: int = 32) -> list[float]:
    """Fit one colour mapping (mean target per input-colour bin) on train; score test."""

    def key(x):
        q = (x.astype(np.int64) * bins) // 256
        return ((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).ravel()

    sums, count = np.zeros((bins**3, 3)), np.zeros(bins**3)
    for i in range(len(train)):
        ex = train[i]
        k = key(ex["input"])
        count += np.bincount(k, minlength=bins**3)
        for c in range(3):
            sums[:, c] += np.bincount(k, ex["target"][..., c].ravel().astype(float), bins**3)
    centres = (np.indices((bins,) * 3).reshape(3, -1).T + 0.5) * (256 / bins)
    lut = np.where(count[:, None] > 0, sums / np.maximum(count, 1)[:, None], centres)
    out = []
    for i in range(len(test)):
        ex = test[i]
        fit = np.rint(lut[key(ex["input"])]).reshape(ex["target"].shape)
        out.append(_psnr(fit, ex["target"]))
    return out


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2))


def test_bundled_photos_load_offline():
    photos = bundled_photos()
    assert len(photos) == 7 and len({p.group for p in photos}) == 6
    for p in photos:
        img = load_photo(p)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert 290 <= min(img.shape[:2]) <= 480, (p.name, img.shape)
        assert img.std() > 20  # a real photo, not a blank
    assert {p.name for p in photos if is_test_photo(p)} == {"chelsea", "grace_hopper"}


def test_tone_curves_are_bijections_of_the_unit_interval():
    x = np.linspace(0, 1, 1001)
    for curve, params in ((exposure_curve, (1 / 8, 0.5, 2.0, 8.0)), (contrast_curve, (-0.6, 0.6))):
        for a in params:
            y = curve(x, a)
            assert y[0] == pytest.approx(0, abs=1e-12) and y[-1] == pytest.approx(1, abs=1e-12)
            assert np.all(np.diff(y) > 0), (curve.__name__, a)


def test_saturate_stays_in_gamut_and_keeps_luma():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5000, 3))
    for s in (0.45, 1.0, 1.3):
        y = saturate(x, s)
        assert y.min() >= -1e-12 and y.max() <= 1 + 1e-12
        luma = np.array([0.2126, 0.7152, 0.0722])
        np.testing.assert_allclose(y @ luma, x @ luma, atol=1e-12)
    np.testing.assert_allclose(saturate(x, 1.0), x, atol=1e-12)


def test_retouch_is_a_global_invertible_colour_map():
    """Same input colour -> same output colour, and a per-image LUT undoes it to > 38 dB."""
    img = load_photo(_photo("coffee"))
    rng = np.random.default_rng(3)
    for _ in range(4):
        degraded = quantize(apply_retouch(img, draw_retouch(rng)))
        assert degraded.shape == img.shape and degraded.dtype == np.uint8
        # A pointwise function of the colour: identical inputs give identical outputs.
        flat_in = img.reshape(-1, 3)
        flat_out = degraded.reshape(-1, 3)
        _, first, inverse = np.unique(flat_in, axis=0, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(flat_out, flat_out[first][inverse.ravel()])
        assert _oracle_lut_psnr(degraded, img) > 38.0
        assert _psnr(degraded, img) < 30.0  # and it is a real degradation


def test_retouch_darkens_flattens_and_desaturates_like_fivek_inputs():
    img = load_photo(_photo("astronaut"))
    f = to_float(img)
    rng = np.random.default_rng(4)
    for _ in range(10):
        out = apply_retouch(img, draw_retouch(rng))
        assert out.mean() < f.mean()
        chroma = np.ptp(out, axis=-1).mean() / np.ptp(f, axis=-1).mean()
        assert chroma < 1.0


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("demo")
    build_dataset(
        "ailut_demo", data_dir=data_dir, train_pairs_per_photo=3, test_pairs_per_photo=2, seed=5
    )
    return data_dir


def test_demo_splits_never_share_a_photo(small_demo):
    train = open_source("ailut_demo", "train", data_dir=small_demo)
    test = open_source("ailut_demo", "test", data_dir=small_demo)
    assert len(train) == 5 * 3 and len(test) == 2 * 2
    train_groups = {_group(_photo_of(train[i]["id"])) for i in range(len(train))}
    test_groups = {_group(_photo_of(test[i]["id"])) for i in range(len(test))}
    assert train_groups == {"astronaut", "coffee", "rocket", "motorcycle"}
    assert test_groups == {"chelsea", "grace_hopper"}
    for i in range(len(test)):  # test pairs are full frames of the original photo
        ex = test[i]
        np.testing.assert_array_equal(ex["target"], load_photo(_photo(_photo_of(ex["id"]))))
        assert ex["input"].shape == ex["target"].shape and ex["input"].dtype == np.uint8
    for i in range(len(train)):  # train pairs are crops of it
        ex = train[i]
        full = load_photo(_photo(_photo_of(ex["id"])))
        h, w = ex["target"].shape[:2]
        assert 0.7 * full.shape[0] - 1 <= h <= full.shape[0]
        assert 0.7 * full.shape[1] - 1 <= w <= full.shape[1]
        assert _oracle_lut_psnr(ex["input"], ex["target"]) > 35.0


def test_demo_build_is_deterministic(small_demo, tmp_path):
    build_dataset(
        "ailut_demo", data_dir=tmp_path, train_pairs_per_photo=3, test_pairs_per_photo=2, seed=5
    )
    for split in ("train", "test"):
        a = open_source("ailut_demo", split, data_dir=small_demo)
        b = open_source("ailut_demo", split, data_dir=tmp_path)
        for i in range(len(a)):
            assert a[i]["id"] == b[i]["id"]
            np.testing.assert_array_equal(a[i]["input"], b[i]["input"])


def _user_folder(tmp_path, names):
    folder = tmp_path / "photos"
    folder.mkdir()
    big = load_photo(_photo("rocket"))
    for k, name in enumerate(names):
        write_image(folder / f"{name}.png", big[20 * k : 20 * k + 200, 30 * k : 30 * k + 260])
    return folder


def _names_with_test(n_train=2):
    names = [f"holiday_{i:02d}" for i in range(40)]
    test = [n for n in names if is_test_photo(Photo(f"user/{n}", f"user/{n}", None))]
    train = [n for n in names if n not in test]
    return train[:n_train] + test[:1]


def test_demo_cube_variant_learns_a_users_grade(tmp_path):
    """Targets are the user's photos graded by their .cube; inputs are the retouched photos."""
    n = 5
    g = np.linspace(0, 1, n)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")
    table = np.stack([r**0.7 * 0.95 + 0.05 * b, gg**1.2, 0.8 * b + 0.1 * r])  # (3, b, g, r)
    cube_path = tmp_path / "look.cube"
    write_cube(cube_path, table, title="test look")
    folder = _user_folder(tmp_path, _names_with_test())
    data_dir = tmp_path / "tfds"
    build_dataset(
        "ailut_demo",
        config="cube",
        data_dir=data_dir,
        source=folder,
        cube_file=cube_path,
        include_bundled=False,
        train_pairs_per_photo=2,
        test_pairs_per_photo=1,
    )
    test = open_source("ailut_demo", "test", config="cube", data_dir=data_dir)
    train = open_source("ailut_demo", "train", config="cube", data_dir=data_dir)
    assert len(train) == 4 and len(test) == 1
    ex = test[0]
    original = load_photo(Photo("x", "x", folder / f"{ex['id'].split('/')[1]}.png"))
    cube = CubeLUT(table=table)
    np.testing.assert_array_equal(
        ex["target"], quantize(apply_cube_numpy(to_float(original), cube))
    )
    assert _psnr(ex["input"], ex["target"]) < 30.0


def test_demo_bad_user_photo_fails_and_leaves_nothing(tmp_path):
    folder = _user_folder(tmp_path, ["good"])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    data_dir = tmp_path / "tfds"
    with pytest.raises(DatasetBuildError, match=r"user/broken: corrupt photo: .*broken\.jpg"):
        build_dataset("ailut_demo", data_dir=data_dir, source=folder, train_pairs_per_photo=1)
    assert not is_built("ailut_demo", data_dir=data_dir)
    assert not any(data_dir.rglob("*.array_record*")) and not list(data_dir.glob(".building*"))
    with pytest.raises(DatasetBuildError, match="needs a .cube file"):
        build_dataset("ailut_demo", config="cube", data_dir=data_dir, train_pairs_per_photo=1)


@pytest.mark.slow
def test_full_demo_build_is_large_and_learnable(tmp_path):
    # Its build time is a benchmark figure (README), not something a test can assert.
    build_dataset("ailut_demo", data_dir=tmp_path)
    train = open_source("ailut_demo", "train", data_dir=tmp_path)
    test = open_source("ailut_demo", "test", data_dir=tmp_path)
    assert len(train) >= 200 and len(test) >= 16
    sizes = [min(train[i]["input"].shape[:2]) for i in range(0, len(train), 10)]
    assert 200 <= np.median(sizes) <= 480
    identity = np.mean([_psnr(test[i]["input"], test[i]["target"]) for i in range(len(test))])
    assert 12.0 < identity < 24.0  # degraded enough to need a correction, not destroyed
    # Learnable: even one fixed LUT fitted on train (no adaptivity) gains > 3 dB on the
    # held-out photos, so a model starts beating the identity early in training.
    fixed = _fixed_lut_psnrs(train, test)
    assert np.mean(fixed) > identity + 3.0, (np.mean(fixed), identity)


def test_open_source_builds_the_demo_on_first_use_without_tensorflow(tmp_path):
    import sys

    src = open_source(
        "ailut_demo", "test", data_dir=tmp_path, train_pairs_per_photo=1, test_pairs_per_photo=1
    )
    assert len(src) == 2 and src.input_scale == 255.0 and is_built("ailut_demo", data_dir=tmp_path)
    assert "tensorflow" not in sys.modules
