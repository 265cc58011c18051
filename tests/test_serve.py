"""``ailut serve``: the strength blend, the request handling (through Starlette's test client)
and the command line. The real-browser test is tests/test_serve_browser.py."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib

import _models
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tifffile
from PIL import Image

pytest.importorskip("starlette", reason="the serve extra: pip install -e '.[serve]'")
from starlette.testclient import TestClient  # noqa: E402

from ailut_jax.cli import main  # noqa: E402
from ailut_jax.cube import apply_cube_numpy, parse_cube  # noqa: E402
from ailut_jax.enhance import Enhancer, enhance_file  # noqa: E402
from ailut_jax.imageio import EXIF_ORIENTATION, read_image_raw  # noqa: E402
from ailut_jax.ops import ailut_transform, identity_at_vertices  # noqa: E402
from ailut_jax.serve import Engine, create_app  # noqa: E402
from ailut_jax.serve.engine import blend_lut  # noqa: E402

# ----------------------------------------------------------------- the strength blend


def _random_vertices(rng, d):
    inner = np.sort(rng.uniform(0.02, 0.98, (3, d - 2)), axis=-1)
    return np.concatenate([np.zeros((3, 1)), inner, np.ones((3, 1))], axis=-1)


@pytest.mark.parametrize("d", [2, 5, 17])
def test_identity_at_vertices_gives_back_the_input(d):
    rng = np.random.default_rng(d)
    vertices = _random_vertices(rng, d)
    img = rng.uniform(0, 1, (2, 40, 30, 3))
    with jax.enable_x64(True):
        lut = np.broadcast_to(identity_at_vertices(vertices), (2, 3, d, d, d))
        out = ailut_transform(jnp.asarray(img), jnp.asarray(lut),
                              jnp.asarray(np.broadcast_to(vertices, (2, 3, d))),
                              impl="reference")  # fmt: skip
    np.testing.assert_allclose(np.asarray(out), img, atol=1e-8)


@pytest.mark.parametrize("strength", [0.0, 0.3, 0.75, 1.0])
def test_blend_is_the_blend_of_images(strength):
    """The transform is linear in the LUT: blending LUTs blends the output with the input."""
    rng = np.random.default_rng(1)
    d = 9
    vertices = _random_vertices(rng, d)
    lut = identity_at_vertices(vertices) + rng.normal(0, 0.1, (3, d, d, d))
    img = rng.uniform(0, 1, (32, 24, 3))
    with jax.enable_x64(True):

        def run(table):
            return np.asarray(ailut_transform(jnp.asarray(img), jnp.asarray(table),
                                              jnp.asarray(vertices), impl="reference"))  # fmt: skip

        full, blended = run(lut), run(blend_lut(lut, vertices, strength))
    np.testing.assert_allclose(blended, strength * full + (1 - strength) * img, atol=1e-10)


def test_full_strength_is_the_lut_itself():
    lut = np.random.default_rng(2).normal(size=(3, 4, 4, 4)).astype(np.float32)
    assert blend_lut(lut, np.zeros((3, 4), np.float32), 1.0) is lut
    with pytest.raises(ValueError, match="strength"):
        blend_lut(lut, np.zeros((3, 4), np.float32), 1.5)


def test_quantize_in_blocks_matches_one_pass():
    from ailut_jax.imageio import quantize

    img = np.random.default_rng(3).normal(0.5, 0.4, (700, 9, 3)).astype(np.float32)
    img[0, 0] = (0.5 / 255, 1.5 / 255, 2.5 / 65535)  # rounding halves
    for bits in (8, 16):
        top = 255.0 if bits == 8 else 65535.0
        one_pass = np.rint(np.clip(img.astype(np.float64), 0, 1) * top)
        np.testing.assert_array_equal(quantize(img, bits, block=64 * 27), one_pass)


# ----------------------------------------------------------------- the app


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _models.random_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def engine(model_dir):
    engine = Engine(Enhancer.from_checkpoint(model_dir))
    engine.warm_up()
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(engine):
    with TestClient(create_app(engine, close_engine=False)) as client:
        yield client


@pytest.fixture(scope="module")
def photo_jpeg() -> bytes:
    out = io.BytesIO()
    Image.fromarray(_models.photo(120, 80)).save(out, format="JPEG", quality=92)
    return out.getvalue()


def _upload(client, name: str, data) -> dict:
    response = client.post(f"/api/photos?name={name}", content=data)
    return response


def _wait(client, photo_id: str) -> dict:
    # A bound so a hang fails instead of blocking CI; not a timing assertion.
    for _ in range(2400):
        status = client.get(f"/api/photos/{photo_id}").json()
        if status["state"] in ("done", "error"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"photo {photo_id} still {status} after 2 minutes")


def _done(client, name: str, data: bytes) -> dict:
    response = _upload(client, name, data)
    assert response.status_code == 202, response.text
    status = _wait(client, response.json()["id"])
    assert status["state"] == "done", status
    return status


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return read_png(response.content)


def read_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes, 8 or 16 bit, with the project's reader."""
    with tempfile.NamedTemporaryFile(suffix=".png") as f:
        f.write(data)
        f.flush()
        return read_image_raw(f.name)


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    config = client.get("/api/config").json()
    assert config["cube_sizes"] == [33, 65] and config["n_vertices"] == 9


def test_full_strength_png_is_ailut_enhance_and_zero_is_the_input(
    client, engine, photo_jpeg, tmp_path
):
    status = _done(client, "a.jpg", photo_jpeg)
    assert (status["width"], status["height"]) == (120, 80)
    assert np.asarray(status["vertices"]).shape == (3, 9)
    (tmp_path / "a.jpg").write_bytes(photo_jpeg)
    for bits in (8, 16):
        enhance_file(engine.enhancer, tmp_path / "a.jpg", tmp_path / f"a{bits}.png", bit_depth=bits)
        expected = read_image_raw(tmp_path / f"a{bits}.png")
        url = f"/api/photos/{status['id']}/image.png?bits={bits}"
        got = _png(client.get(url))
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
    # Again after another strength has replaced the cached render: the same pixels.
    zero = _png(client.get(f"/api/photos/{status['id']}/image.png?strength=0"))
    np.testing.assert_array_equal(zero, read_image_raw(tmp_path / "a.jpg"))
    again = _png(client.get(f"/api/photos/{status['id']}/image.png?strength=100"))
    np.testing.assert_array_equal(again, read_image_raw(tmp_path / "a8.png"))
    half = _png(client.get(f"/api/photos/{status['id']}/image.png?strength=50")).astype(int)
    full, original = again.astype(int), zero.astype(int)
    assert np.abs(half - (full + original) / 2).max() <= 1.0
    assert np.abs(full - original).mean() > 1.0  # the model does change the photo


@pytest.mark.parametrize("strength", [0, 60, 100])
@pytest.mark.parametrize("size", [33, 65])
def test_cube_parses_and_reproduces_the_png(client, photo_jpeg, strength, size):
    status = _done(client, "b.jpg", photo_jpeg)
    base = f"/api/photos/{status['id']}"
    response = client.get(f"{base}/lut.cube?strength={strength}&size={size}")
    assert response.status_code == 200
    assert f"_ailut{strength}_{size}.cube" in response.headers["content-disposition"]
    cube = parse_cube(response.text)
    assert cube.size == size
    img = np.asarray(Image.open(io.BytesIO(photo_jpeg)).convert("RGB")) / 255.0
    applied = np.clip(apply_cube_numpy(img, cube), 0, 1) * 255
    png = _png(client.get(f"{base}/image.png?strength={strength}")).astype(np.float64)
    # Resampling the non-uniform lattice onto a uniform one is the only difference.
    assert np.abs(applied - png).mean() < 1.0
    if strength == 0:
        grid = np.arange(size) / (size - 1)
        b, g, r = np.meshgrid(grid, grid, grid, indexing="ij")
        np.testing.assert_allclose(cube.table, np.stack([r, g, b]), atol=1e-5)


def test_previews_and_zip(client, photo_jpeg):
    ids = [_done(client, name, photo_jpeg)["id"] for name in ("c.jpg", "sub/c.jpg")]
    base = f"/api/photos/{ids[0]}"
    for url in (f"{base}/input.jpg", f"{base}/output.jpg?strength=40"):
        response = client.get(url)
        assert response.status_code == 200
        assert Image.open(io.BytesIO(response.content)).size == (120, 80)
    response = client.get(f"/api/zip?ids={','.join(ids)}&strength=70&bits=16&size=65")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert sorted(zf.namelist()) == ["c-2.cube", "c-2.png", "c.cube", "c.png"]
        png = read_png(zf.read("c.png"))
        assert png.dtype == np.uint16 and png.shape == (80, 120, 3)
        assert parse_cube(zf.read("c.cube").decode()).size == 65
    single = _png(client.get(f"{base}/image.png?strength=70&bits=16"))
    np.testing.assert_array_equal(png, single)


def _png_0x0() -> bytes:
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))  # fmt: skip

    ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_bad_uploads_get_a_message_and_the_server_goes_on(client, engine, photo_jpeg):
    cases = [
        ("notes.txt", b"just text, no pixels\n", 415, "not an image"),
        ("empty.png", b"", 400, "empty"),
        ("zero.png", _png_0x0(), None, "no pixels"),
    ]
    for name, data, code, words in cases:
        response = _upload(client, name, data)
        if code is not None:
            assert response.status_code == code, response.text
        assert response.status_code in (400, 415), response.text
        assert words in response.json()["error"] and name in response.json()["error"]
    # A truncated JPEG has a good header: it fails while decoding, in the photo's status.
    response = _upload(client, "cut.jpg", photo_jpeg[: len(photo_jpeg) // 2])
    assert response.status_code == 202
    status = _wait(client, response.json()["id"])
    assert status["state"] == "error" and "cannot decode" in status["message"], status
    assert client.get(f"/api/photos/{status['id']}/image.png").status_code == 409
    # Too many pixels (checked from the header) and too many bytes.
    limits = engine.max_pixels, engine.max_upload_bytes
    try:
        engine.max_pixels = 5000
        response = _upload(client, "big.jpg", photo_jpeg)
        assert response.status_code == 400 and "megapixels" in response.json()["error"]
        engine.max_pixels, engine.max_upload_bytes = limits[0], 1000
        response = _upload(client, "heavy.jpg", photo_jpeg)
        assert response.status_code == 413 and "upload limit" in response.json()["error"]
        # Without a Content-Length (chunked), the limit is enforced while receiving.
        response = _upload(client, "chunked.jpg", iter([photo_jpeg[:800], photo_jpeg[800:]]))
        assert response.status_code == 413 and "upload limit" in response.json()["error"]
    finally:
        engine.max_pixels, engine.max_upload_bytes = limits
    # Nothing was kept of the refused files, and the server still works.
    kept = {p.name for p in engine.root.iterdir()}
    assert kept == set(engine.photos), (kept, set(engine.photos))
    _done(client, "after-errors.jpg", photo_jpeg)


def test_bad_parameters_and_unknown_photos(client, photo_jpeg):
    photo_id = _done(client, "d.jpg", photo_jpeg)["id"]
    base = f"/api/photos/{photo_id}"
    for url, words in [
        (f"{base}/image.png?strength=101", "strength"),
        (f"{base}/image.png?strength=half", "whole number"),
        (f"{base}/image.png?bits=12", "bits"),
        (f"{base}/lut.cube?size=17", "size"),
        ("/api/zip", "ids"),
    ]:
        response = client.get(url)
        assert response.status_code == 400 and words in response.json()["error"], url
    assert client.get("/api/photos/nope").status_code == 404
    assert client.get("/api/zip?ids=nope").status_code == 404
    assert client.delete(base).status_code == 204
    assert client.get(base).status_code == 404


def test_sixteen_bit_tiff_with_exif_orientation(client, engine, tmp_path):
    stored = (np.random.default_rng(4).uniform(0, 1, (40, 64, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, stored, photometric="rgb",
                     extratags=[(EXIF_ORIENTATION, "H", 1, 6, True)])  # fmt: skip
    status = _done(client, "turned.tif", path.read_bytes())
    assert (status["width"], status["height"], status["bit_depth"]) == (40, 64, 16)
    enhance_file(engine.enhancer, path, tmp_path / "turned.png", bit_depth=16)
    got = _png(client.get(f"/api/photos/{status['id']}/image.png?bits=16"))
    np.testing.assert_array_equal(got, read_image_raw(tmp_path / "turned.png"))


def test_old_photos_are_forgotten_and_the_folder_is_removed(model_dir, photo_jpeg):
    engine = Engine(Enhancer.from_checkpoint(model_dir), max_photos=1)
    with TestClient(create_app(engine)) as client:
        first = _done(client, "1.jpg", photo_jpeg)["id"]
        second = _done(client, "2.jpg", photo_jpeg)["id"]
        assert client.get(f"/api/photos/{first}").status_code == 404
        assert not (engine.root / first).exists() and (engine.root / second).is_dir()
        root = engine.root
    assert not root.exists()  # shutting the app down deleted the temporary folder


def test_a_localhost_server_answers_only_its_own_host_names(engine):
    app = create_app(engine, close_engine=False, allowed_hosts=["127.0.0.1", "localhost"])
    for base, code in [("http://127.0.0.1:7860", 200), ("http://localhost:7860", 200),
                       ("http://rebound.example:7860", 400)]:  # fmt: skip
        with TestClient(app, base_url=base) as client:
            assert client.get("/api/config").status_code == code, base


# ----------------------------------------------------------------- the command line


@pytest.mark.parametrize("name", ["no-such-model", "broken"])
def test_cli_bad_checkpoint_is_one_line_and_status_2(tmp_path, capsys, name):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{ not json")
    status = main(["serve", "--checkpoint", str(tmp_path / name), "--port", "7999"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1, err
    assert lines[0].startswith("ailut serve: error: ") and name in lines[0], err


def test_help_loads_neither_the_server_nor_jax():
    code = (
        "import sys; from ailut_jax.cli import build_parser; "
        "text = build_parser()._subparsers._group_actions[0].choices['serve'].format_help(); "
        "assert '--max-megapixels' in text, text; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", (out.stdout, out.stderr)
