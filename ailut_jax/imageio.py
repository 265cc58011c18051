"""Reading and writing photos as float arrays in [0, 1], channels-last RGB.

8-bit files (JPEG, 8-bit PNG, BMP, WebP...) are decoded with Pillow, which is what the
authors' outputs were checked against. Pillow has no 16-bit RGB mode, so 16-bit PNGs go
through OpenCV and TIFFs through tifffile; both keep all 16 bits and are scaled by
1/65535. Every format gets its EXIF orientation applied (JPEG, PNG and TIFF alike), so
the array is the photo as a viewer shows it.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageOps

EXIF_ORIENTATION = 0x0112  # TIFF / EXIF tag 274

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


class ImageReadError(ValueError):
    """A file could not be decoded as an RGB image; the message names the file."""


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(25)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 25:
        return None
    return head[24]


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\x00", b"MM\x00*")


def _to_rgb(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ImageReadError(f"{path}: expected a grey, RGB or RGBA image, got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr[..., :3]


def apply_orientation(arr: np.ndarray, orientation: int | None) -> np.ndarray:
    """``arr`` (H, W, ...) turned as EXIF ``orientation`` (1-8) says; as Pillow's
    ``ImageOps.exif_transpose`` does for the images it can hold."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:
        return arr.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(arr, k=-1)
    if orientation == 7:
        return arr[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(arr, k=1)
    return arr


def _tiff_orientation(path: Path) -> int | None:
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags.get(EXIF_ORIENTATION)
        return int(tag.value) if tag is not None else None


def _pillow_orientation(path: Path) -> int | None:
    """The EXIF orientation Pillow finds (a PNG's eXIf chunk may follow the pixels)."""
    with Image.open(path) as im:
        orientation = im.getexif().get(EXIF_ORIENTATION)
        if orientation is None and im.format == "PNG":
            im.load()  # reads the chunks after IDAT too
            orientation = im.getexif().get(EXIF_ORIENTATION)
    return int(orientation) if orientation is not None else None


def read_image_raw(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` to an integer RGB array ``(H, W, 3)``, uint8 or uint16, with its
    EXIF orientation applied."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        if _is_tiff(path):
            arr = apply_orientation(tifffile.imread(path), _tiff_orientation(path))
        elif _png_bit_depth(path) == 16:
            arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if arr is None:
                raise ValueError("OpenCV could not decode it")
            if arr.ndim == 3:  # OpenCV orders channels BGR(A)
                arr = arr[..., [2, 1, 0, 3][: arr.shape[-1]]]
            arr = apply_orientation(arr, _pillow_orientation(path))
        else:
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode == "I;16" or im.mode.startswith("I;16"):
                    arr = np.asarray(im, dtype=np.uint16)
                else:
                    arr = np.asarray(im.convert("RGB"))
    except ImageReadError:
        raise
    except Exception as exc:  # decoders raise many types; report one, naming the file
        raise ImageReadError(f"{path}: cannot decode image ({exc})") from exc
    arr = _to_rgb(np.asarray(arr), path)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype} (need 8 or 16 bit)")
    return np.ascontiguousarray(arr)


def to_float(arr: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Scale a uint8 / uint16 array to ``[0, 1]`` floats."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}[np.dtype(arr.dtype)]
    # Divide in the target dtype, as the original pipeline does (x.float() / 255).
    return arr.astype(dtype) / np.asarray(scale, dtype)


def read_image(path: str | os.PathLike, dtype=np.float32) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` floats in ``[0, 1]`` (8 and 16 bit inputs)."""
    return to_float(read_image_raw(path), dtype)


def quantize(img: np.ndarray, bit_depth: int = 8, *, block: int = 1 << 20) -> np.ndarray:
    """``round(clip(img, 0, 1) * max)`` as uint8 or uint16 (the model output is unclamped).

    Computed in float64 ``block`` values at a time: the same integers as one pass, without
    a float64 copy of the whole image (600 MB for 24 megapixels).
    """
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    top = 255.0 if bit_depth == 8 else 65535.0
    img = np.asarray(img)
    out = np.empty(img.shape, np.uint8 if bit_depth == 8 else np.uint16)
    src, dst = img.reshape(-1), out.reshape(-1)
    for start in range(0, src.size, block):
        part = src[start : start + block].astype(np.float64)
        dst[start : start + block] = np.rint(np.clip(part, 0.0, 1.0) * top)
    return out


def write_image(path: str | os.PathLike, img: np.ndarray, bit_depth: int = 8) -> None:
    """Write float ``(H, W, 3)`` in ``[0, 1]`` (or uint8/uint16) as PNG/JPEG/TIFF.

    The file is written to a temporary name first and renamed, so an interrupted write
    never leaves a truncated image under the final name.
    """
    path = Path(path)
    arr = np.asarray(img)
    if arr.dtype not in (np.uint8, np.uint16):
        arr = quantize(arr, bit_depth)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{path}: expected an (H, W, 3) image, got shape {arr.shape}")
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    suffix = path.suffix.lower()
    try:
        if arr.dtype == np.uint16:
            if suffix in (".tif", ".tiff"):
                tifffile.imwrite(tmp, arr, photometric="rgb")
            elif suffix == ".png":
                if not cv2.imwrite(str(tmp), np.ascontiguousarray(arr[..., ::-1])):
                    raise OSError(f"{path}: OpenCV failed to write the image")
            else:
                raise ValueError(f"{path}: 16-bit output needs a .png or .tif name")
        else:
            Image.fromarray(arr).save(tmp, format=None if suffix else "PNG")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
