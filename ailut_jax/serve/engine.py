"""The model side of ``ailut serve``: photos in, enhanced images and ``.cube`` files out.

Nothing here knows about HTTP; :mod:`ailut_jax.serve.app` is the web face over it.

A photo is processed once: decoded with the project's image reader (8 or 16 bit, EXIF
orientation applied), enhanced by the :class:`~ailut_jax.enhance.Enhancer` (which predicts its
LUT and vertices from the thumbnail) and kept on disk as its decoded pixels plus the
predicted ``(3, D, D, D)`` LUT and ``(3, D)`` vertices. Everything after that, at any
strength, is the AiLUT transform with a blended LUT (:func:`blend_lut`): the full-size
download, the small preview in the page and the ``.cube`` export all use the same blended
LUT, so what the page shows, the PNG and the ``.cube`` agree.
"""

from __future__ import annotations

import collections
import io
import shutil
import struct
import tempfile
import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import tifffile
from PIL import Image

from ailut_jax.cube import format_cube
from ailut_jax.enhance import Enhancer
from ailut_jax.export_cube import resample_lut
from ailut_jax.imageio import quantize, read_image_raw, to_float
from ailut_jax.models import apply_lut
from ailut_jax.ops import identity_at_vertices

# A 50-megapixel photo needs about 1.5 GB of working memory (its pixels as float32 in and
# out, plus the decoded file); larger ones are refused before they are decoded.
MAX_PIXELS = 50_000_000
# A 16-bit uncompressed TIFF of 40 megapixels is 240 MB.
MAX_UPLOAD_BYTES = 256 * 2**20
PREVIEW_SIDE = 1600  # long side of the previews shown in the page
MAX_PHOTOS = 16  # photos kept; the oldest is forgotten (and its files deleted) beyond this
CUBE_SIZES = (33, 65)
BIT_DEPTHS = (8, 16)


class PhotoError(ValueError):
    """A photo cannot be used; the message is shown in the page as it is.

    ``status`` is the HTTP status the app answers with.
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ------------------------------------------------------------------------ the strength


def blend_lut(lut: np.ndarray, vertices: np.ndarray, strength: float) -> np.ndarray:
    """``strength * lut + (1 - strength) * identity``, the identity of
    :func:`identity_at_vertices` at the same ``vertices``.

    ``strength`` is in ``[0, 1]``; at 1 the predicted LUT is returned untouched, so the
    result is bit-identical to ``ailut enhance``.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    lut = np.asarray(lut)
    if strength == 1.0:
        return lut
    s = lut.dtype.type(strength)
    return s * lut + (lut.dtype.type(1) - s) * identity_at_vertices(vertices)


# ------------------------------------------------------------------------ files


def probe_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header, without decoding the pixels.

    Raises :class:`PhotoError` for an empty file, a file no reader recognises, an image
    without pixels or one over :data:`MAX_PIXELS` (checked before any pixel is decoded).
    """
    if path.stat().st_size == 0:
        raise PhotoError("the file is empty")
    with open(path, "rb") as f:
        head = f.read(24)
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            # Read here: Pillow refuses a 0 x 0 PNG as "not an image" without saying why.
            width, height = struct.unpack(">II", head[16:24])
        elif head[:4] in (b"II*\x00", b"MM\x00*"):
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                width, height = int(page.imagewidth), int(page.imagelength)
        else:
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise PhotoError(f"the image has too many pixels ({exc})") from None
    except Exception:
        raise PhotoError("not an image this app can read (JPEG, PNG or TIFF)", 415) from None
    if width < 1 or height < 1:
        raise PhotoError(f"the image has no pixels ({width} x {height})")
    return width, height


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise PhotoError(
            f"the image is {width} x {height} = {width * height / 1e6:.1f} megapixels; "
            f"this server takes at most {max_pixels / 1e6:.0f} megapixels"
        )


def encode_png(img: np.ndarray, bit_depth: int) -> bytes:
    """``round(clip(img, 0, 1) * max)`` as PNG bytes, 8 or 16 bit (what ``ailut enhance`` writes).

    zlib level 1, not Pillow's default 6: on the authors' 6-megapixel photo it writes in a
    quarter of the time (1.0 s against 4.1 s here) for a file 17 % larger; the pixels are
    the same at any level.
    """
    arr = quantize(img, bit_depth)
    if bit_depth == 16:
        ok, buf = cv2.imencode(
            ".png", np.ascontiguousarray(arr[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 1]
        )
        if not ok:
            raise RuntimeError("OpenCV could not encode the PNG")
        return buf.tobytes()
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def encode_jpeg(img: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(quantize(img, 8)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _preview_of(raw: np.ndarray) -> np.ndarray:
    """A float ``(h, w, 3)`` copy of the photo with its long side at most :data:`PREVIEW_SIDE`."""
    h, w = raw.shape[:2]
    scale = min(1.0, PREVIEW_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 1.0:  # resized as integers: no full-size float copy
        raw = cv2.resize(raw, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(to_float(raw))


# ------------------------------------------------------------------------ photos


@dataclass
class Photo:
    """One uploaded photo and what the model predicted for it.

    ``state`` goes ``queued -> decoding -> enhancing -> done`` (or ``error``, with
    ``message``); ``progress`` is the fraction done, for the page's progress bar.
    """

    id: str
    name: str
    folder: Path
    width: int
    height: int
    state: str = "queued"
    progress: float = 0.0
    message: str = ""
    bit_depth: int = 8
    lut: np.ndarray | None = None
    vertices: np.ndarray | None = None
    preview: np.ndarray | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "photo"

    @property
    def upload_path(self) -> Path:
        return self.folder / "upload"

    @property
    def pixels_path(self) -> Path:
        return self.folder / "pixels.npy"

    def status(self) -> dict:
        out = {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "state": self.state,
            "progress": round(self.progress, 3),
            "message": self.message,
            "bit_depth": self.bit_depth,
        }
        if self.vertices is not None:
            out["vertices"] = np.round(np.asarray(self.vertices, np.float64), 5).tolist()
        return out


class Engine:
    """Processes photos with one :class:`Enhancer`, compiled once by :meth:`warm_up`.

    Uploads and results live in a temporary folder that :meth:`close` deletes. The
    model runs under one lock: two requests never hold two full-size images in memory
    at once, and the 2-core machines this is meant for would gain nothing from more.
    """

    def __init__(
        self,
        enhancer: Enhancer,
        *,
        max_pixels: int = MAX_PIXELS,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
        max_photos: int = MAX_PHOTOS,
    ):
        self.enhancer = enhancer
        self.max_pixels = max_pixels
        self.max_upload_bytes = max_upload_bytes
        self.max_photos = max_photos
        self.root = Path(tempfile.mkdtemp(prefix="ailut-serve-"))
        self.photos: collections.OrderedDict[str, Photo] = collections.OrderedDict()
        self._lock = threading.Lock()  # the model and the render cache
        self._photos_lock = threading.Lock()
        adaptive, impl = enhancer.config.en_adaint, enhancer.impl
        self._apply = jax.jit(
            lambda img, lut, v: apply_lut(img, lut, v, adaptive=adaptive, impl=impl)
        )
        self._render_cache: tuple[str, int, np.ndarray] | None = None

    # -------------------------------------------------------------- lifecycle

    def warm_up(self) -> None:
        """Compile the network (thumbnail size, fixed) before the first request."""
        img = np.full((64, 96, 3), 0.5, np.float32)
        pred = self.enhancer.predict(img)
        jax.block_until_ready(pred["output"])
        self._apply(jnp.asarray(img), pred["lut"], pred["vertices"]).block_until_ready()

    def close(self) -> None:
        """Forget every photo and delete the temporary folder."""
        with self._photos_lock:
            self.photos.clear()
        self._render_cache = None
        shutil.rmtree(self.root, ignore_errors=True)

    # -------------------------------------------------------------- photos

    def new_photo(self, name: str) -> Photo:
        """A photo with its folder, to receive the upload; not registered yet."""
        photo_id = uuid.uuid4().hex[:16]
        folder = self.root / photo_id
        folder.mkdir()
        clean = Path(name.replace("\\", "/")).name[:200] or "photo"
        return Photo(id=photo_id, name=clean, folder=folder, width=0, height=0)

    def discard(self, photo: Photo) -> None:
        shutil.rmtree(photo.folder, ignore_errors=True)

    def admit(self, photo: Photo) -> None:
        """Check the uploaded file's header and register the photo; :class:`PhotoError` if bad.

        On error the photo's folder is deleted.
        """
        try:
            photo.width, photo.height = probe_size(photo.upload_path)
            check_pixels(photo.width, photo.height, self.max_pixels)
        except BaseException:
            self.discard(photo)
            raise
        with self._photos_lock:
            self.photos[photo.id] = photo
            while len(self.photos) > self.max_photos:
                _, old = self.photos.popitem(last=False)
                self.discard(old)

    def get(self, photo_id: str) -> Photo | None:
        with self._photos_lock:
            return self.photos.get(photo_id)

    def remove(self, photo_id: str) -> bool:
        with self._photos_lock:
            photo = self.photos.pop(photo_id, None)
        if photo is not None:
            self.discard(photo)
            cached = self._render_cache
            if cached is not None and cached[0] == photo_id:
                self._render_cache = None
        return photo is not None

    def process(self, photo: Photo) -> None:
        """Decode and enhance an admitted photo; errors go to ``photo.state``/``message``."""
        try:
            with self._lock:
                photo.state, photo.progress = "decoding", 0.1
                raw = read_image_raw(photo.upload_path)
                height, width = raw.shape[:2]  # after the EXIF orientation
                if height * width == 0:
                    raise PhotoError("the image has no pixels")
                check_pixels(width, height, self.max_pixels)
                photo.width, photo.height = width, height
                photo.bit_depth = 16 if raw.dtype == np.uint16 else 8
                np.save(photo.pixels_path, raw)
                photo.upload_path.unlink(missing_ok=True)
                photo.preview = _preview_of(raw)
                photo.state, photo.progress = "enhancing", 0.35
                pred = self.enhancer.predict(to_float(raw))
                del raw
                output = np.asarray(pred["output"])
                photo.lut = np.asarray(pred["lut"])
                photo.vertices = np.asarray(pred["vertices"])
                self._render_cache = (photo.id, 100, output)
                photo.progress = 0.95
        except Exception as exc:  # shown in the page; the server goes on
            photo.state, photo.progress = "error", 1.0
            text = str(exc).replace(str(photo.upload_path), photo.name)
            photo.message = text if isinstance(exc, ValueError) else f"failed: {text}"
            return
        photo.state, photo.progress = "done", 1.0

    # -------------------------------------------------------------- results

    def _ready(self, photo: Photo) -> None:
        if photo.state != "done":
            raise PhotoError(f"{photo.name} is not ready ({photo.state})", 409)

    def render(self, photo: Photo, strength: int) -> np.ndarray:
        """The full-size float ``(H, W, 3)`` output at ``strength`` percent (not clamped)."""
        self._ready(photo)
        with self._lock:
            cached = self._render_cache
            if cached is not None and cached[:2] == (photo.id, strength):
                return cached[2]
            self._render_cache = None  # free it before making the next one
            raw = np.load(photo.pixels_path, mmap_mode="r")
            img = jnp.asarray(to_float(np.asarray(raw)))
            lut = blend_lut(photo.lut, photo.vertices, strength / 100)
            out = np.asarray(self._apply(img, jnp.asarray(lut), jnp.asarray(photo.vertices)))
            self._render_cache = (photo.id, strength, out)
            return out

    def preview(self, photo: Photo, strength: int | None) -> bytes:
        """JPEG of the preview-sized input (``strength=None``) or output at ``strength``."""
        self._ready(photo)
        if strength is None:
            return encode_jpeg(photo.preview)
        lut = blend_lut(photo.lut, photo.vertices, strength / 100)
        with self._lock:
            out = self._apply(
                jnp.asarray(photo.preview), jnp.asarray(lut), jnp.asarray(photo.vertices)
            )
            out = np.asarray(out)
        return encode_jpeg(out)

    def png(self, photo: Photo, strength: int, bit_depth: int) -> bytes:
        return encode_png(self.render(photo, strength), bit_depth)

    def cube(self, photo: Photo, strength: int, size: int) -> str:
        """The ``.cube`` text of the photo's LUT at ``strength`` percent, ``size`` points a side."""
        self._ready(photo)
        lut = blend_lut(photo.lut, photo.vertices, strength / 100)
        with self._lock:  # (the 3D-LUT baseline predicts uniform vertices: the same here)
            table = resample_lut(lut, photo.vertices, size, impl=self.enhancer.impl)
        return format_cube(
            table,
            title=f"{photo.stem} ailut-jax {strength}%",
            comments=(f"AdaInt LUT predicted for {photo.name} at strength {strength}%",),
        )

    def zip_to(self, photos: list[Photo], strength: int, bit_depth: int, size: int) -> Path:
        """A zip of ``<stem>.png`` and ``<stem>.cube`` for each photo, in the temporary folder."""
        for photo in photos:
            self._ready(photo)
        target = self.root / f"results-{uuid.uuid4().hex[:8]}.zip"
        used: set[str] = set()
        with zipfile.ZipFile(target, "w") as zf:
            for photo in photos:
                stem, k = photo.stem, 1
                while stem in used:
                    k += 1
                    stem = f"{photo.stem}-{k}"
                used.add(stem)
                # PNGs are compressed already; the .cube text shrinks about 3x.
                zf.writestr(
                    f"{stem}.png",
                    self.png(photo, strength, bit_depth),
                    compress_type=zipfile.ZIP_STORED,
                )
                zf.writestr(
                    f"{stem}.cube",
                    self.cube(photo, strength, size),
                    compress_type=zipfile.ZIP_DEFLATED,
                )
        return target
