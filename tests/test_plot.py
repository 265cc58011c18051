"""ailut plot: the figure's panels hold the model's actual predictions."""

import _models
import numpy as np
import pytest
from PIL import Image

from ailut_jax import identity_lut
from ailut_jax.cli import main
from ailut_jax.imageio import write_image
from ailut_jax.plot import draw_vertices, grey_axis_response, make_figure, vertex_figure


@pytest.fixture(scope="session")
def official_dir(tmp_path_factory):
    return _models.official_srgb_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def random_dir(tmp_path_factory):
    return _models.random_model_dir(tmp_path_factory)


def _colour_preserving_ailut(d: int, seed: int):
    """Non-uniform vertices and a LUT holding their coordinates: the identity transform."""
    rng = np.random.default_rng(seed)
    vertices = np.zeros((3, d))
    vertices[:, 1:] = np.cumsum(rng.uniform(0.2, 1.0, (3, d - 1)), axis=1)
    vertices /= vertices[:, -1:]
    b, g, r = np.meshgrid(vertices[2], vertices[1], vertices[0], indexing="ij")
    return np.stack([r, g, b]).astype(np.float32), vertices.astype(np.float32)


def test_grey_axis_response_of_identity_is_the_diagonal():
    lut, vertices = _colour_preserving_ailut(9, seed=1)
    t, response = grey_axis_response(lut, vertices, n=101)
    assert response.shape == (101, 3)
    np.testing.assert_allclose(response, np.repeat(t[:, None], 3, axis=1), atol=2e-6)


def test_grey_axis_response_of_a_gain():
    lut = 0.5 * identity_lut(5)
    vertices = np.broadcast_to(np.linspace(0, 1, 5, dtype=np.float32), (3, 5))
    t, response = grey_axis_response(lut, vertices, n=11)
    np.testing.assert_allclose(response, 0.5 * np.repeat(t[:, None], 3, axis=1), atol=1e-6)


def test_figure_panels_show_the_predictions():
    import matplotlib.pyplot as plt

    lut, vertices = _colour_preserving_ailut(9, seed=2)
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 1, (24, 36, 3)).astype(np.float32)
    fig = make_figure(img, img * 1.2, lut, vertices, weights=[1.0, -0.5], title="t")
    try:
        axes = fig.get_axes()
        assert [ax.get_title() for ax in axes] == [
            "input",
            "output",
            "learned vertices (D = 9)",
            "vertex positions",
            "response along the grey axis",
        ]
        # The output panel is clipped for display; the input is shown as is.
        np.testing.assert_allclose(axes[0].get_images()[0].get_array(), img)
        np.testing.assert_allclose(axes[1].get_images()[0].get_array(), np.clip(img * 1.2, 0, 1))
        lines = {line.get_label(): line for line in axes[2].get_lines()}
        for c, name in enumerate("RGB"):
            np.testing.assert_allclose(lines[name].get_ydata(), vertices[c])
        curves = {line.get_label(): line for line in axes[4].get_lines()}
        _, response = grey_axis_response(lut, vertices)
        np.testing.assert_allclose(curves["out G"].get_ydata(), response[:, 1])
        assert "rank weights [+1.000, -0.500]" in fig._suptitle.get_text()
    finally:
        plt.close(fig)


def test_vertex_plot_of_several_images_is_the_mean_and_range():
    """Training reports draw the same vertex panel for N test photos: the mean curve per
    channel over a band from the lowest to the highest vertex."""
    import matplotlib.pyplot as plt

    vertices = np.stack([_colour_preserving_ailut(9, seed=s)[1] for s in (4, 5, 6)])
    fig = vertex_figure(vertices, title="gen 0")
    try:
        (ax,) = fig.get_axes()
        assert ax.get_title() == "learned vertices (D = 9, mean and range over 3 images)"
        lines = {line.get_label(): line for line in ax.get_lines()}
        for c, name in enumerate("RGB"):
            np.testing.assert_allclose(lines[name].get_ydata(), vertices[:, c].mean(0), atol=1e-7)
        bands = ax.collections
        assert len(bands) == 3
        for c, band in enumerate(bands):
            ys = band.get_paths()[0].vertices[:, 1]
            np.testing.assert_allclose(ys.min(), vertices[:, c].min(), atol=1e-7)
            np.testing.assert_allclose(ys.max(), vertices[:, c].max(), atol=1e-7)
    finally:
        plt.close(fig)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"\(3, D\) or \(N, 3, D\)"):
        draw_vertices(ax, np.zeros((4, 9)))
    plt.close(fig)


def _expected_figure(checkpoint, image, tmp_path, **save_kwargs) -> np.ndarray:
    """What `ailut plot` must draw: the model's own predictions for the photo, through
    make_figure (whose panels the test above checks) and save_figure."""
    from ailut_jax import Enhancer
    from ailut_jax.imageio import read_image
    from ailut_jax.plot import save_figure

    img = read_image(image)
    pred = Enhancer.from_checkpoint(checkpoint).predict(img)
    fig = make_figure(
        img,
        np.asarray(pred["output"]),
        pred["lut"],
        pred["vertices"],
        weights=pred["weights"],
        title=f"{checkpoint.name} on {image.name}",
    )
    path = tmp_path / "expected.png"
    save_figure(fig, path, **save_kwargs)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_plot_command_random_model(tmp_path, random_dir):
    image = tmp_path / "small.png"
    write_image(image, _models.photo(96, 64))
    out = tmp_path / "figs" / "random.png"
    args = ["plot", "--checkpoint", str(random_dir), str(image), "--out", str(out), "--dpi", "50"]
    assert main(args) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (600, 410)
        drawn = np.asarray(im)
    np.testing.assert_array_equal(drawn, _expected_figure(random_dir, image, tmp_path, dpi=50))
    # Not a blank canvas: the photo panels bring hundreds of colours.
    assert len(np.unique(drawn.reshape(-1, 3), axis=0)) > 500


def test_plot_command_official_model(tmp_path, official_dir):
    image = tmp_path / "a4739.png"
    write_image(image, _models.photo(722, 480))
    out = tmp_path / "a4739-plot.png"
    args = ["plot", "--checkpoint", str(official_dir), str(image), "--out", str(out)]
    assert main([*args, "--dpi", "72", "--colors", "128"]) == 0
    with Image.open(out) as im:
        assert im.mode == "P" and im.size == (864, 590)
        assert len(im.getcolors(256)) > 64
        drawn = np.asarray(im.convert("RGB"))
    expected = _expected_figure(official_dir, image, tmp_path, dpi=72, colors=128)
    np.testing.assert_array_equal(drawn, expected)
    # A palette PNG of this figure stays small enough for a README.
    assert out.stat().st_size < 300_000


def test_plot_command_reports_unreadable_image(tmp_path, random_dir, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    args = ["plot", "--checkpoint", str(random_dir), str(bad), "--out", str(tmp_path / "x.png")]
    assert main(args) == 2
    assert "cannot decode image" in capsys.readouterr().err
