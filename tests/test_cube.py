""".cube reading, writing and trilinear application, checked against ffmpeg's lut3d."""

import shutil

import _models
import numpy as np
import pytest

from ailut_jax import cube, export_cube, identity_lut
from ailut_jax.cli import main
from ailut_jax.imageio import read_image_raw, write_image

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)"
)


def _random_table(n: int, seed: int = 0, spread: float = 0.05) -> np.ndarray:
    """A plausible grade: identity plus smooth-ish noise, kept inside [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(identity_lut(n, np.float64) + rng.normal(0, spread, (3, n, n, n)), 0, 1)


def _test_image(width=181, height=120) -> np.ndarray:
    return _models.photo(width, height)


def _cube_text(n=2, rows=None, header=("LUT_3D_SIZE {n}",)) -> str:
    if rows is None:
        rows = np.moveaxis(identity_lut(n, np.float64), 0, -1).reshape(-1, 3)
        rows = [f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in rows]
    return "\n".join([h.format(n=n) for h in header] + list(rows)) + "\n"


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize("n", [2, 3, 17, 33])
def test_write_read_round_trip(tmp_path, n):
    table = _random_table(n, seed=n)
    path = tmp_path / "grade.cube"
    cube.write_cube(path, table, title="round trip", comments=("made by a test",))
    lut = cube.read_cube(path)
    assert lut.size == n
    assert lut.title == "round trip"
    np.testing.assert_allclose(lut.table, table, rtol=0, atol=5e-7)
    np.testing.assert_array_equal(lut.domain_min, 0.0)
    np.testing.assert_array_equal(lut.domain_max, 1.0)


def test_file_order_is_red_fastest(tmp_path):
    n = 5
    path = tmp_path / "identity.cube"
    cube.write_cube(path, identity_lut(n), title="identity")
    text = path.read_text()
    assert 'TITLE "identity"' in text and "LUT_3D_SIZE 5" in text
    rows = [line for line in text.splitlines() if line[:1].isdigit()]
    assert len(rows) == n**3
    values = np.array([[float(v) for v in row.split()] for row in rows])
    for i, (r, g, b) in enumerate(values):
        expected = np.array([i % n, (i // n) % n, i // (n * n)]) / (n - 1)
        np.testing.assert_allclose((r, g, b), expected, atol=1e-6)


def test_parse_tolerates_comments_blank_lines_crlf_and_bom(tmp_path):
    text = '\ufeff# a grade\r\n\r\nTITLE "x"  # trailing\r\nLUT_3D_SIZE 2\r\n'
    rows = np.moveaxis(identity_lut(2, np.float64), 0, -1).reshape(-1, 3)
    text += "".join(f"{r} {g} {b}   # row\r\n\r\n" for r, g, b in rows)
    path = tmp_path / "x.cube"
    path.write_bytes(text.encode("utf-8"))
    lut = cube.read_cube(path)
    assert lut.title == "x"
    np.testing.assert_array_equal(lut.table, identity_lut(2, np.float64))


def test_title_with_quotes_stays_one_string(tmp_path):
    path = tmp_path / "q.cube"
    cube.write_cube(path, identity_lut(2), title='a "quoted"\nname')
    assert cube.read_cube(path).title == "a 'quoted' name"


@pytest.mark.parametrize(
    "text,match",
    [
        (_cube_text(header=()), "missing LUT_3D_SIZE"),
        (_cube_text(header=('TITLE "t"',)), "missing LUT_3D_SIZE"),
        (
            _cube_text()[: -len("1.000000 1.000000 1.000000\n")],
            "needs 2\\^3 = 8 data lines, found 7",
        ),
        (_cube_text() + "0 0 0\n", "found 9"),
        (_cube_text(n=3, header=("LUT_3D_SIZE 2",)), "needs 2\\^3 = 8 data lines, found 27"),
        (_cube_text().replace("1.000000 0.000000 0.000000", "1.0 zero 0.0"), r":3: .*numbers"),
        (_cube_text().replace("1.000000 0.000000 0.000000", "1.0 0.0"), r":3: .*3 numbers"),
        (_cube_text().replace("1.000000 0.000000 0.000000", "1 0 0 0"), r":3: .*got 4"),
        (_cube_text().replace("1.000000 0.000000 0.000000", "1.0 nan 0"), r":3: .*finite"),
        (
            "LUT_1D_SIZE 4\n0 0 0\n0.3 0.3 0.3\n0.6 0.6 0.6\n1 1 1\n",
            "1D LUT",
        ),
        (_cube_text(header=("LUT_1D_SIZE 4", "LUT_3D_SIZE {n}")), "1D LUT"),
        (_cube_text(header=("LUT_3D_SIZE 1",)), r"must be in \[2, 256\]"),
        (_cube_text(header=("LUT_3D_SIZE 257",)), r"must be in \[2, 256\]"),
        (_cube_text(header=("LUT_3D_SIZE two",)), "expected LUT_3D_SIZE N"),
        (_cube_text(header=("LUT_3D_SIZE 2.5",)), "expected LUT_3D_SIZE N"),
        (_cube_text(header=("LUT_3D_SIZE {n}", "DOMAIN_MIN 0 0")), "expected DOMAIN_MIN r g b"),
        (_cube_text(header=("LUT_3D_SIZE {n}", "DOMAIN_MAX 1 one 1")), "DOMAIN_MAX must be"),
        (_cube_text(header=("LUT_3D_SIZE {n}", "DOMAIN_MIN 0 1 0")), "must be below DOMAIN_MAX"),
        (_cube_text(header=("LUT_3D_SIZE {n}", "LUT_3D_INPUT_RANGE 0")), "min max"),
        (_cube_text(header=("LUT_3D_SIZE {n}", "LUT_SHAPER 1")), "unknown keyword 'LUT_SHAPER'"),
        (_cube_text(header=("TITLE untitled", "LUT_3D_SIZE {n}")), 'expected TITLE "text"'),
        (_cube_text() + "DOMAIN_MAX 1 1 1\n", "after the first data line"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_malformed_files_raise_clear_errors(tmp_path, text, match):
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(cube.CubeFormatError, match=match) as info:
        cube.read_cube(path)
    assert str(path) in str(info.value)


def test_binary_file_is_reported(tmp_path):
    path = tmp_path / "image.cube"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage")
    with pytest.raises(cube.CubeFormatError, match="not a text file|LUT_3D_SIZE|keyword"):
        cube.read_cube(path)


def test_writer_rejects_bad_tables():
    with pytest.raises(ValueError, match=r"\(3, N, N, N\)"):
        cube.format_cube(np.zeros((3, 4, 4, 5)))
    with pytest.raises(ValueError, match="finite"):
        cube.format_cube(np.full((3, 2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="N <= 256"):
        cube.format_cube(np.zeros((3, 1, 1, 1)))


# --------------------------------------------------------------------------- applying


def test_identity_cube_is_identity():
    img = _test_image() / 255.0
    lut = cube.CubeLUT(identity_lut(9, np.float64))
    np.testing.assert_allclose(cube.apply_cube_numpy(img, lut), img, atol=1e-12)
    np.testing.assert_allclose(cube.apply_cube(img, lut), img, atol=2e-7)


def test_numpy_and_jax_application_agree():
    img = _test_image() / 255.0
    lut = cube.CubeLUT(_random_table(17, seed=3))
    np.testing.assert_allclose(
        cube.apply_cube(img, lut), cube.apply_cube_numpy(img, lut), atol=1e-6
    )
    batch = np.stack([img, img[::-1]])
    np.testing.assert_allclose(
        cube.apply_cube(batch, lut), cube.apply_cube_numpy(batch, lut), atol=1e-6
    )


def test_lattice_points_reproduce_table_entries():
    n = 5
    table = _random_table(n, seed=4)
    grid = np.arange(n) / (n - 1)
    b, g, r = np.meshgrid(grid, grid, grid, indexing="ij")
    points = np.stack([r, g, b], -1).reshape(n * n, n, 3)
    out = cube.apply_cube_numpy(points, cube.CubeLUT(table)).reshape(n, n, n, 3)
    np.testing.assert_allclose(np.moveaxis(out, -1, 0), table, atol=1e-12)


def test_inputs_are_clamped_to_the_domain():
    table = _random_table(4, seed=5)
    lut = cube.CubeLUT(table)
    img = np.array([[[-0.5, 1.5, 0.25], [0.0, 1.0, 0.25]]])
    out = cube.apply_cube_numpy(img, lut)
    np.testing.assert_allclose(out[0, 0], out[0, 1], atol=1e-12)
    np.testing.assert_allclose(cube.apply_cube(img, lut), out, atol=1e-6)


@pytest.mark.parametrize(
    "header,lo,hi",
    [
        (("LUT_3D_SIZE 3", "DOMAIN_MIN 0 0.1 0", "DOMAIN_MAX 2 1 0.5"), (0, 0.1, 0), (2, 1, 0.5)),
        (("LUT_3D_SIZE 3", "LUT_3D_INPUT_RANGE -0.25 1.25"), (-0.25,) * 3, (1.25,) * 3),
    ],
)
def test_domain_maps_inputs_onto_the_lattice(tmp_path, header, lo, hi):
    path = tmp_path / "domain.cube"
    path.write_text(_cube_text(n=3, header=header))
    lut = cube.read_cube(path)
    np.testing.assert_allclose(lut.domain_min, lo)
    np.testing.assert_allclose(lut.domain_max, hi)
    # The identity table over a domain maps x to (x - lo) / (hi - lo).
    rng = np.random.default_rng(7)
    img = rng.uniform(lo, hi, (8, 9, 3))
    expected = (img - np.array(lo)) / (np.array(hi) - np.array(lo))
    np.testing.assert_allclose(cube.apply_cube_numpy(img, lut), expected, atol=1e-12)
    np.testing.assert_allclose(cube.apply_cube(img, lut), expected, atol=1e-6)
    # A written file keeps its domain.
    cube.write_cube(tmp_path / "again.cube", lut.table, domain_min=lo, domain_max=hi)
    again = cube.read_cube(tmp_path / "again.cube")
    np.testing.assert_allclose(again.domain_min, lo)
    np.testing.assert_allclose(again.domain_max, hi)


@needs_ffmpeg
@pytest.mark.parametrize("n", [2, 17, 33])
def test_ffmpeg_lut3d_agrees_with_our_reader_and_interpolation(tmp_path, n):
    """ffmpeg reads the file we write and interpolates like we do, up to its 8-bit truncation."""
    table = _random_table(n, seed=10 + n, spread=0.08)
    path = tmp_path / "grade.cube"
    cube.write_cube(path, table)
    img = _test_image()
    ours = cube.apply_cube_numpy(img / 255.0, cube.read_cube(path)) * 255
    theirs = cube.apply_cube_ffmpeg(path, img).astype(np.float64)
    # ffmpeg computes in float32 and truncates: theirs == floor(ours), except where ours
    # is within float32 rounding of an integer.
    diff = ours - theirs
    assert diff.min() > -1e-3 and diff.max() < 1 + 1e-3
    near_integer = np.abs(ours - np.rint(ours)) < 1e-3
    assert np.all((np.floor(ours) == theirs) | near_integer)


@needs_ffmpeg
def test_ffmpeg_path_with_special_characters(tmp_path):
    folder = tmp_path / "a dir: with 'quotes', commas"
    folder.mkdir()
    path = folder / "id.cube"
    cube.write_cube(path, identity_lut(3))
    img = _test_image(32, 24)
    out = cube.apply_cube_ffmpeg(path, img)
    assert np.abs(out.astype(int) - img).max() <= 1  # identity, up to truncation


@needs_ffmpeg
def test_ffmpeg_command_line_on_png_files_matches_the_pipe(tmp_path):
    """The documented command line (PNG in, rgb24 PNG out) filters exactly like the pipe."""
    import subprocess

    cube_path = tmp_path / "grade.cube"
    cube.write_cube(cube_path, _random_table(17, seed=21))
    img = _test_image(64, 48)
    write_image(tmp_path / "in.png", img)
    lut3d = f"lut3d=file={cube_path}:interp=trilinear"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "in.png"), "-vf", lut3d,
         "-pix_fmt", "rgb24", str(tmp_path / "out.png")],
        check=True,
    )  # fmt: skip
    np.testing.assert_array_equal(
        read_image_raw(tmp_path / "out.png"), cube.apply_cube_ffmpeg(cube_path, img)
    )


# --------------------------------------------------------------------------- CLI


def test_apply_cube_command_writes_pngs(tmp_path):
    table = _random_table(9, seed=11)
    cube_path = tmp_path / "grade.cube"
    cube.write_cube(cube_path, table)
    images = []
    for k, (w, h) in enumerate([(40, 30), (23, 31)]):
        path = tmp_path / f"in{k}.png"
        write_image(path, _test_image(w, h))
        images.append(path)
    out = tmp_path / "out"
    assert main(["apply-cube", str(cube_path), *map(str, images), "--out", str(out)]) == 0
    lut = cube.read_cube(cube_path)
    for path in images:
        got = read_image_raw(out / f"{path.stem}.png")
        want = cube.apply_cube_numpy(read_image_raw(path) / 255.0, lut)
        assert got.shape == want.shape
        # Rounded (not truncated) to 8 bits; float32 vs float64 can flip a half.
        assert np.abs(got - want * 255).max() <= 0.5 + 1e-3


def test_apply_cube_command_16bit(tmp_path):
    cube_path = tmp_path / "id.cube"
    cube.write_cube(cube_path, identity_lut(5))
    img_path = tmp_path / "x.png"
    write_image(img_path, _test_image(20, 16))
    out = tmp_path / "out"
    assert (
        main(["apply-cube", str(cube_path), str(img_path), "--out", str(out), "--bit-depth", "16"])
        == 0
    )
    got = read_image_raw(out / "x.png")
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, read_image_raw(img_path).astype(np.uint16) * 257)


def test_apply_cube_command_reports_malformed_cube(tmp_path, capsys):
    cube_path = tmp_path / "bad.cube"
    cube_path.write_text("LUT_3D_SIZE 2\n0 0 0\n")
    img_path = tmp_path / "x.png"
    write_image(img_path, _test_image(20, 16))
    code = main(["apply-cube", str(cube_path), str(img_path), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "needs 2^3 = 8 data lines, found 1" in capsys.readouterr().err


# --------------------------------------------------------------------------- export-cube


@pytest.fixture(scope="session")
def official_dir(tmp_path_factory):
    return _models.official_srgb_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def random_dir(tmp_path_factory):
    return _models.random_model_dir(tmp_path_factory)


def test_lattice_image_is_in_file_order():
    n = 4
    points = export_cube.lattice_image(n).reshape(-1, 3)
    for i in (0, 1, 5, 17, n**3 - 1):
        expected = np.array([i % n, (i // n) % n, i // (n * n)]) / (n - 1)
        np.testing.assert_allclose(points[i], expected, rtol=0, atol=1e-7)


def test_resample_lut_reproduces_a_colour_preserving_ailut():
    """An AiLUT whose entries are its own vertex coordinates is the identity for any vertices."""
    d, n = 7, 11
    rng = np.random.default_rng(12)
    vertices = np.zeros((3, d))
    vertices[:, 1:] = np.cumsum(rng.uniform(0.2, 1.0, (3, d - 1)), axis=1)
    vertices /= vertices[:, -1:]
    vr, vg, vb = vertices
    b, g, r = np.meshgrid(vb, vg, vr, indexing="ij")
    lut = np.stack([r, g, b]).astype(np.float32)
    table = export_cube.resample_lut(lut, vertices.astype(np.float32), n)
    np.testing.assert_allclose(table, identity_lut(n, np.float64), atol=2e-6)


def _export(checkpoint, image_path, n, out):
    code = main(
        ["export-cube", "--checkpoint", str(checkpoint), str(image_path), "--size", str(n),
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0


def test_export_cube_random_model_matches_its_output(tmp_path, random_dir):
    import jax.numpy as jnp

    from ailut_jax import ailut_transform
    from ailut_jax.enhance import Enhancer

    img = _models.photo(96, 64)
    image_path = tmp_path / "small.png"
    write_image(image_path, img)
    _export(random_dir, image_path, 33, tmp_path / "random.cube")
    lut = cube.read_cube(tmp_path / "random.cube")
    assert lut.size == 33 and "random-ailut-d9" in lut.title

    # The file holds the model's own transform at the grid points, to the 6 decimals written.
    pred = Enhancer.from_checkpoint(random_dir).predict(img / np.float32(255))
    grid = jnp.asarray(export_cube.lattice_image(33))
    at_grid = np.asarray(ailut_transform(grid, pred["lut"], pred["vertices"]), np.float64)
    np.testing.assert_allclose(lut.table, np.moveaxis(at_grid.reshape(33, 33, 33, 3), -1, 0),
                               rtol=0, atol=6e-7)  # fmt: skip
    # Between grid points it is a trilinear resampling of the model's non-uniform D = 9
    # lattice: close, not exact (the learned cell borders fall between grid points).
    err = cube.apply_cube_numpy(img / 255.0, lut) - np.asarray(pred["output"], np.float64)
    print(f"random model, N=33: max error {np.abs(err).max():.4f}, "
          f"PSNR {10 * np.log10(1 / np.mean(err**2)):.2f} dB")  # fmt: skip
    assert 10 * np.log10(1 / np.mean(err**2)) > 45


@pytest.fixture(scope="module")
def official_output(official_dir):
    """The authors' model on a4739.jpg at 722x480: (uint8 input, float output clipped to [0, 1])."""
    from ailut_jax.enhance import Enhancer

    img = _models.photo(722, 480)
    out = Enhancer.from_checkpoint(official_dir)(img / np.float32(255))
    return img, np.clip(np.asarray(out, np.float64), 0, 1)


@needs_ffmpeg
@pytest.mark.parametrize("n,min_psnr", [(33, 46.0), (65, 50.0)])
def test_export_cube_ffmpeg_round_trip_official_model(
    tmp_path, official_dir, official_output, n, min_psnr
):
    """ffmpeg applying the exported .cube reproduces the authors' FiveK model's output."""
    from ailut_jax.metrics import psnr

    img, model_out = official_output
    image_path = tmp_path / "a4739_480p.png"
    write_image(image_path, img)
    cube_path = tmp_path / f"a4739_{n}.cube"
    _export(official_dir, image_path, n, cube_path)

    by_ffmpeg = cube.apply_cube_ffmpeg(cube_path, img) / 255.0
    ffmpeg_psnr = psnr(by_ffmpeg, model_out)
    # The float resampling alone, without ffmpeg's 8-bit truncation.
    float_psnr = psnr(
        np.clip(cube.apply_cube_numpy(img / 255.0, cube.read_cube(cube_path)), 0, 1), model_out
    )
    print(f"N={n}: ffmpeg {ffmpeg_psnr:.2f} dB, float resampling {float_psnr:.2f} dB")
    assert ffmpeg_psnr >= min_psnr
    assert float_psnr > ffmpeg_psnr


def test_export_cube_rejects_bad_size(tmp_path, random_dir, capsys):
    image_path = tmp_path / "x.png"
    write_image(image_path, _test_image(20, 16))
    code = main(["export-cube", "--checkpoint", str(random_dir), str(image_path), "--size", "1",
                 "--out", str(tmp_path / "x.cube")])  # fmt: skip
    assert code == 2
    assert "--size must be in [2, 256]" in capsys.readouterr().err
