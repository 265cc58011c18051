"""Image reading: every format (8-bit via Pillow, 16-bit PNG via OpenCV, TIFF via tifffile)
is turned by its EXIF orientation, the same way Pillow turns the images it can decode."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from ailut_jax.imageio import (
    EXIF_ORIENTATION,
    apply_orientation,
    read_image_raw,
    write_image,
)

ORIENTATIONS = range(1, 9)


def _stored(seed=0, h=6, w=10) -> np.ndarray:
    """A small non-symmetric 16-bit image (every pixel distinct)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 65536, (h, w, 3), dtype=np.uint16)


def _exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


def _png_with_exif_chunk(png: bytes, orientation: int) -> bytes:
    """``png`` with an eXIf chunk (the EXIF TIFF block, no 'Exif' prefix) before IEND,
    i.e. after the pixel data, where a reader must look past IDAT to find it."""
    payload = _exif_bytes(orientation).removeprefix(b"Exif\x00\x00")
    chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload
    chunk += struct.pack(">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_apply_orientation_matches_pillow(tmp_path, orientation):
    stored = (_stored() >> 8).astype(np.uint8)
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=_exif_bytes(orientation))
    with Image.open(path) as im:
        turned = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(apply_orientation(stored, orientation), turned)
    np.testing.assert_array_equal(read_image_raw(path), turned)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_sixteen_bit_tiff_orientation_is_applied(tmp_path, orientation):
    stored = _stored(1)
    path = tmp_path / "o.tif"
    tifffile.imwrite(
        path, stored, photometric="rgb", extratags=[(EXIF_ORIENTATION, "H", 1, orientation, True)]
    )
    got = read_image_raw(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, apply_orientation(stored, orientation))
    if orientation in (5, 6, 7, 8):
        assert got.shape == (10, 6, 3)  # displayed sideways: height and width swap


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_sixteen_bit_png_orientation_is_applied(tmp_path, orientation):
    stored = _stored(2)
    plain = tmp_path / "plain.png"
    write_image(plain, stored)
    path = tmp_path / "o.png"
    path.write_bytes(_png_with_exif_chunk(plain.read_bytes(), orientation))
    got = read_image_raw(path)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, apply_orientation(stored, orientation))
    # The 16-bit PNG and an 8-bit PNG with the same orientation come out alike.
    eight = tmp_path / "o8.png"
    Image.fromarray((stored >> 8).astype(np.uint8)).save(eight, exif=_exif_bytes(orientation))
    np.testing.assert_array_equal(got >> 8, read_image_raw(eight))


def test_without_orientation_the_pixels_are_as_stored(tmp_path):
    stored = _stored(3)
    for name in ("a.png", "a.tif"):
        write_image(tmp_path / name, stored)
        np.testing.assert_array_equal(read_image_raw(tmp_path / name), stored)
