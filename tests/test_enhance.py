"""The Enhancer API and `ailut enhance` on files of every supported kind."""

from pathlib import Path

import _models
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from ailut_jax import Enhancer, cli, identity_lut
from ailut_jax import enhance as enhance_lib
from ailut_jax.enhance import _stages
from ailut_jax.imageio import quantize, read_image, read_image_raw, write_image
from ailut_jax.modeldir import ModelDirError, save_model_dir
from ailut_jax.models import ModelConfig, empty_model


def _trained_looking_model():
    """A default-config model with non-trivial bases and mildly non-uniform vertices.

    Parameters come from a seeded numpy RNG (no JAX initialiser to compile).
    """
    model = empty_model(ModelConfig())
    state = nnx.state(model, nnx.Param)
    rng = np.random.default_rng(42)
    pure = jax.tree_util.tree_map(
        lambda x: rng.normal(0, 0.1, x.shape).astype(np.float32), nnx.to_pure_dict(state)
    )
    pure["backbone"].update(
        {
            f"norm{i}": {"scale": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}
            for i, c in zip(range(1, 5), (16, 32, 64, 128), strict=True)
        }
    )
    gen = pure["lut_generator"]
    gen["weights_generator"]["kernel"] *= 0.1
    gen["weights_generator"]["bias"] = np.array([1.0, 0.0, 0.0], np.float32)
    gen["basis_luts"] = 0.5 * gen["basis_luts"]
    gen["basis_luts"][0] += identity_lut(33)
    pure["adaint"]["intervals_generator"]["kernel"] *= 0.1
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map(jnp.asarray, pure))
    nnx.update(model, state)
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir(tmp_path_factory.mktemp("model") / "m", _trained_looking_model())


@pytest.fixture(scope="module")
def enhancer(model_dir):
    return Enhancer.from_checkpoint(model_dir)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def test_predict_shapes_and_call(enhancer):
    img = _image(24, 40)
    parts = enhancer.predict(img)
    assert set(parts) == {"output", "lut", "vertices", "weights"}
    assert parts["output"].shape == (24, 40, 3) and parts["output"].dtype == jnp.float32
    assert parts["lut"].shape == (3, 33, 33, 33)
    assert parts["vertices"].shape == (3, 33)
    assert parts["weights"].shape == (3,)
    v = np.asarray(parts["vertices"])
    assert np.all(np.diff(v, axis=-1) > 0) and np.abs(v - np.arange(33) / 32).max() > 0.01
    np.testing.assert_array_equal(enhancer(img), parts["output"])
    assert enhancer.config == ModelConfig()


def test_integer_inputs_are_scaled(enhancer):
    raw = (np.random.default_rng(1).random((24, 40, 3)) * 255).astype(np.uint8)
    np.testing.assert_array_equal(enhancer(raw), enhancer(raw.astype(np.float32) / 255))
    raw16 = raw.astype(np.uint16) * 257
    np.testing.assert_allclose(enhancer(raw16), enhancer(raw), atol=1e-6)


def test_any_size_and_batches_compile_only_the_cheap_stages(enhancer):
    enhance_lib._release_compiled_shapes()  # earlier tests' shapes must not trigger it here
    resize, predict, apply = _stages()
    a, b = _image(17, 29, 2), _image(17, 29, 3)
    out_a = enhancer(a)
    sizes = [f._cache_size() for f in (resize, predict, apply)]
    enhancer(b)
    enhancer(_image(31, 23, 4))
    # Same shape: nothing compiled. New shape: resize and transform only; the backbone
    # sees the same thumbnail shape and is not compiled again.
    assert [f._cache_size() for f in (resize, predict, apply)] == [
        sizes[0] + 1,
        sizes[1],
        sizes[2] + 1,
    ]
    batch = enhancer(np.stack([a, b]))
    assert batch.shape == (2, 17, 29, 3)
    np.testing.assert_allclose(batch[0], out_a, atol=2e-5)


def test_many_image_sizes_keep_a_bounded_number_compiled(enhancer, monkeypatch):
    """Photos that all differ in size (a FiveK test split) must not grow the jit caches,
    and so memory, without bound: past MAX_CACHED_SHAPES new shapes the caches are
    emptied, and results stay the same."""
    monkeypatch.setattr(enhance_lib, "MAX_CACHED_SHAPES", 3)
    enhance_lib._release_compiled_shapes()
    resize, predict, apply = _stages()
    images = [_image(20 + k, 30 - k, k) for k in range(7)]
    outputs, cached = [], []
    for img in images:
        outputs.append(np.asarray(enhancer(img)))
        cached.append(resize._cache_size())
        assert len(enhance_lib._shapes_seen) <= 3
    # Emptied after the 3rd and 6th shape: 1, 2, 3, then 1, 2, 3, then 1 compiled.
    assert cached == [1, 2, 3, 1, 2, 3, 1]
    assert predict._cache_size() == 1 and apply._cache_size() == 1
    for img, out in zip(images, outputs):
        np.testing.assert_array_equal(np.asarray(enhancer(img)), out)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 8), np.float32), r"\(H, W, 3\).*shape \(8, 8\)"),
        (np.zeros((8, 8, 4), np.float32), r"shape \(8, 8, 4\)"),
        (np.zeros((8, 8, 3), np.int32), "dtype int32"),
        (np.zeros((0, 8, 3), np.float32), "no pixels"),
    ],
)
def test_bad_inputs(enhancer, bad, match):
    with pytest.raises(ValueError, match=match):
        enhancer(bad)


def test_bad_checkpoint(tmp_path):
    with pytest.raises(ModelDirError, match="no such model directory"):
        Enhancer.from_checkpoint(tmp_path / "none")
    with pytest.raises(ValueError, match="impl"):
        Enhancer(empty_model(ModelConfig()), impl="cuda-please")


def _write_inputs(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(5)
    folder.mkdir()
    files = {}
    # One output shape (24 x 40) for all: a single compile serves the whole test.
    img8 = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
    files["jpeg"] = folder / "photo.jpg"
    Image.fromarray(img8).save(files["jpeg"], quality=95)
    img16 = (rng.random((24, 40, 3)) * 65535).astype(np.uint16)
    files["png16"] = folder / "deep.png"
    write_image(files["png16"], img16)
    files["tiff16"] = folder / "scan.tif"
    write_image(files["tiff16"], img16[::-1].copy())
    # A JPEG stored sideways (40 x 24) with EXIF orientation 6 (rotate 90 degrees clockwise).
    files["exif"] = folder / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(img8.transpose(1, 0, 2))).save(
        files["exif"], exif=exif, quality=95
    )
    files["broken"] = folder / "broken.png"
    files["broken"].write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    # Would overwrite photo.jpg's output: refused, not silently clobbered.
    (folder / "other").mkdir()
    files["clash"] = folder / "other" / "photo.png"
    Image.fromarray(img8).save(files["clash"])
    return files


def test_cli_enhances_every_format_and_survives_bad_files(model_dir, enhancer, tmp_path, capsys):
    files = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    args = ["enhance", "--checkpoint", str(model_dir), "--out", str(out), "-q"]
    rc = cli.main(args + [str(p) for p in files.values()])
    assert rc == 1  # two files failed, the others were written
    err = capsys.readouterr().err
    assert "broken.png: cannot decode image" in err and "enhanced 4 of 6 images" in err
    assert "other/photo.png: same output name" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "deep.png",
        "photo.png",
        "rotated.png",
        "scan.png",
    ]
    for key in ("jpeg", "png16", "tiff16", "exif"):
        src = files[key]
        written = read_image_raw(out / f"{src.stem}.png")
        assert written.dtype == np.uint8
        expected = quantize(np.asarray(enhancer(read_image(src))))
        np.testing.assert_array_equal(written, expected)
    # EXIF orientation applied: the image stored as 40x24 comes out 24x40.
    with Image.open(files["exif"]) as im:
        assert im.size == (24, 40)
    assert read_image_raw(out / "rotated.png").shape == (24, 40, 3)
    assert read_image_raw(files["png16"]).dtype == np.uint16  # 16 bits were read


def test_cli_sixteen_bit_output_and_folders(model_dir, enhancer, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    img = (np.random.default_rng(6).random((24, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image, not picked up")
    out = tmp_path / "out"
    rc = cli.main(
        ["enhance", "--checkpoint", str(model_dir), "--out", str(out), "--bit-depth", "16", "-q"]
        + [str(folder)]
    )
    assert rc == 0
    written = read_image_raw(out / "a.png")
    assert written.dtype == np.uint16
    expected = quantize(np.asarray(enhancer(img.astype(np.float32) / 255)), 16)
    np.testing.assert_array_equal(written, expected)


def test_cli_bad_checkpoint_exits_2(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(img)
    rc = cli.main(
        ["enhance", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path), str(img)]
    )
    assert rc == 2
    assert "nope: no such model directory" in capsys.readouterr().err


def test_pth_checkpoint_loads_directly(model_dir):
    checkpoint = _models.official_file(_models.SRGB_NAME)
    pytest.importorskip("torch")
    enhancer = Enhancer.from_checkpoint(checkpoint)
    img = _models.photo(40, 24)
    parts = enhancer.predict(img)
    v = np.asarray(parts["vertices"])
    assert np.abs(v - np.arange(33) / 32).max() > 0.02
    assert np.abs(np.asarray(parts["output"]) - img / 255).mean() > 0.01
