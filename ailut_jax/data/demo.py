"""``ailut_demo``: the project's default data, built offline from real photographs.

Sources are the colour photographs bundled with installed packages (scikit-image's
astronaut, chelsea, coffee, rocket and the motorcycle stereo pair; matplotlib's
grace_hopper) plus, optionally, a folder of the user's own photos. Each photo is shrunk
to a short edge of at most 480 pixels and then, many times over, cropped and degraded by
a random retouch drawn from a fixed seed per photo and variant: white balance,
exposure, contrast, gamma and saturation. Like FiveK's flat camera-raw renderings, the
degraded photos are under-exposed, flat, desaturated and colour-cast by varying
amounts. Input = degraded, target = original, so a model must learn an image-adaptive
correction, as on FiveK.

Every step of the retouch is a smooth, monotonic map of the pixel's colour that keeps
[0, 1] inside [0, 1] (no clipping; saturation boosts stop at the gamut edge), so a global
3D LUT can invert it up to 8-bit quantisation.

Splits never share a photo: ``test`` holds chelsea and grace_hopper (full frame) and
one user photo in five (chosen by a hash of its file name); ``train`` holds the others
(random crops). The motorcycle stereo pair is one photo for this purpose.

Configs: ``retouch`` (default) and ``cube``: the targets are the original photos graded
with a user's ``.cube`` LUT (a colourist's look), the inputs the degraded photos, so the
model learns to correct each shot and apply the look.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ailut_jax.cube import apply_cube_numpy, read_cube
from ailut_jax.data._common import DatasetBuildError, PairBuilder, encode_png
from ailut_jax.imageio import IMAGE_SUFFIXES, ImageReadError, quantize, read_image_raw, to_float

_DESCRIPTION = __doc__
MAX_SHORT_EDGE = 480
TRAIN_PAIRS_PER_PHOTO = 40
TEST_PAIRS_PER_PHOTO = 8
TRAIN_CROP_RATIO = (0.7, 1.0)
# Photos held out for the test split, by name (the stereo pair shares one group).
TEST_PHOTOS = ("chelsea", "grace_hopper")


@dataclasses.dataclass(frozen=True)
class Photo:
    """A source photograph: ``name`` (unique), ``group`` (same scene), file ``path``."""

    name: str
    group: str
    path: Path


def bundled_photos() -> list[Photo]:
    """The real colour photos shipped in scikit-image and matplotlib wheels (no download)."""
    import importlib.resources

    import matplotlib

    sk = importlib.resources.files("skimage.data")
    photos = [
        Photo("astronaut", "astronaut", Path(str(sk / "astronaut.png"))),
        Photo("chelsea", "chelsea", Path(str(sk / "chelsea.png"))),
        Photo("coffee", "coffee", Path(str(sk / "coffee.png"))),
        Photo("rocket", "rocket", Path(str(sk / "rocket.jpg"))),
        Photo("motorcycle_left", "motorcycle", Path(str(sk / "motorcycle_left.png"))),
        Photo("motorcycle_right", "motorcycle", Path(str(sk / "motorcycle_right.png"))),
        Photo(
            "grace_hopper",
            "grace_hopper",
            Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
        ),
    ]
    return photos


def user_photos(folder: str | os.PathLike) -> list[Photo]:
    """Image files directly in ``folder`` (sorted), named ``user/<file stem>``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetBuildError(f"ailut_demo: photo folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetBuildError(f"ailut_demo: no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return [Photo(f"user/{p.stem}", f"user/{p.stem}", p) for p in files]


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def is_test_photo(photo: Photo) -> bool:
    if photo.name.startswith("user/"):
        return _stable_hash(photo.group) % 5 == 0
    return photo.group in TEST_PHOTOS


# --- The retouch family ------------------------------------------------------------------


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def exposure_curve(x: np.ndarray, k: float) -> np.ndarray:
    """A bijection of [0, 1] fixing 0 and 1 with slope ``k`` at 0: ``kx / (1 + (k - 1)x)``.

    ``k > 1`` brightens, ``k < 1`` darkens, with no clipping (highlights roll off).
    """
    return k * x / (1.0 + (k - 1.0) * x)


def contrast_curve(x: np.ndarray, amount: float) -> np.ndarray:
    """Blend with smoothstep: ``amount > 0`` adds contrast, ``< 0`` removes it.

    Monotonic for ``|amount| < 2/3``; fixes 0, 1/2 and 1.
    """
    return x + amount * (x * x * (3.0 - 2.0 * x) - x)


def saturate(x: np.ndarray, factor: float) -> np.ndarray:
    """Scale chroma about the Rec. 709 luma, stopping each pixel at the [0, 1] gamut edge."""
    luma = x @ np.array([0.2126, 0.7152, 0.0722], x.dtype)
    luma = luma[..., None]
    d = x - luma
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(d > 0, (1.0 - luma) / d, np.where(d < 0, luma / -d, np.inf))
    limit = np.min(room, axis=-1, keepdims=True)
    return luma + np.minimum(factor, limit) * d


@dataclasses.dataclass(frozen=True)
class Retouch:
    """Parameters of one degradation; see :func:`apply_retouch`."""

    wb_gains: tuple[float, float, float]  # linear-light channel gains, max 1
    exposure: float  # stops; the exposure curve's slope at black is 2**exposure
    contrast: float  # contrast_curve amount, <= 0 flattens
    gamma: float
    saturation: float


# The distribution is part of the dataset's definition (bump AilutDemo.VERSION on change).
# Like FiveK's camera-raw inputs, degraded photos are under-exposed, flat, desaturated
# and carry a random colour cast; the amounts vary per pair, so the correction is
# image-adaptive, while the common direction lets a model improve on the identity early.
WARM_RANGE = 0.3  # colour temperature: red up and blue down, or the reverse
TINT_RANGE = 0.1  # green-magenta
EXPOSURE_RANGE = (-2.5, -0.3)
CONTRAST_RANGE = (-0.6, 0.0)
GAMMA_RANGE = (0.9, 1.2)
SATURATION_RANGE = (0.4, 0.9)


def draw_retouch(rng: np.random.Generator) -> Retouch:
    """Draw the parameters of one degradation."""
    warm = rng.uniform(-WARM_RANGE, WARM_RANGE)
    tint = rng.uniform(-TINT_RANGE, TINT_RANGE)
    gains = np.exp([warm - tint / 2, tint, -warm - tint / 2])
    gains = gains / gains.max()
    return Retouch(
        wb_gains=tuple(float(g) for g in gains),
        exposure=float(rng.uniform(*EXPOSURE_RANGE)),
        contrast=float(rng.uniform(*CONTRAST_RANGE)),
        gamma=float(np.exp(rng.uniform(*np.log(GAMMA_RANGE)))),
        saturation=float(rng.uniform(*SATURATION_RANGE)),
    )


def tone_curves(p: Retouch) -> np.ndarray:
    """The per-channel part of the retouch as a ``(256, 3)`` table over 8-bit codes.

    White balance, exposure, contrast and gamma act on each channel separately, so for
    8-bit inputs they are exactly a lookup table.
    """
    lin = srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0)[:, None]
    lin = exposure_curve(lin * np.asarray(p.wb_gains)[None, :], 2.0**p.exposure)
    out = contrast_curve(linear_to_srgb(np.clip(lin, 0.0, 1.0)), p.contrast)
    return np.power(np.clip(out, 0.0, 1.0), p.gamma)


def apply_retouch(img: np.ndarray, p: Retouch) -> np.ndarray:
    """Degrade an 8-bit sRGB photo ``(H, W, 3)``; returns float32 in [0, 1]."""
    if img.dtype != np.uint8:
        raise TypeError(f"apply_retouch takes uint8 images, got {img.dtype}")
    table = tone_curves(p).astype(np.float32)
    out = np.stack([table[img[..., c], c] for c in range(3)], axis=-1)
    return np.clip(saturate(out, np.float32(p.saturation)), 0.0, 1.0)


# --- Building ------------------------------------------------------------------------------


def load_photo(photo: Photo, max_short_edge: int = MAX_SHORT_EDGE) -> np.ndarray:
    """Decode, shrink (area filter) to a short edge of at most ``max_short_edge``; uint8."""
    import cv2

    img = to_float(read_image_raw(photo.path), np.float32)
    h, w = img.shape[:2]
    scale = max_short_edge / min(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return quantize(img)


def _random_crop_box(shape, rng: np.random.Generator, ratio) -> tuple[slice, slice]:
    h, w = shape[:2]
    ch = int(h * rng.uniform(*ratio))
    cw = int(w * rng.uniform(*ratio))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return slice(y, y + ch), slice(x, x + cw)


@dataclasses.dataclass
class DemoConfig(tfds.core.BuilderConfig):
    grade: str = "none"  # "none": target = photo; "cube": target = photo graded by a .cube
    input_bits: int = 8


class AilutDemo(PairBuilder):
    """Built-in demo pairs: degraded real photos -> originals (or a .cube grade of them)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.1.0": "FiveK-like retouch family (under-exposed, flat, desaturated, colour cast).",
        "1.0.0": "First version: exposure to a random brightness, white balance, gamma.",
    }
    BUILDER_CONFIGS = [
        DemoConfig(name="retouch", description="input: randomly retouched; target: original"),
        DemoConfig(
            name="cube",
            description="input: randomly retouched; target: original graded by a .cube",
            grade="cube",
        ),
    ]
    DEFAULT_CONFIG_NAME = "retouch"
    DESCRIPTION = _DESCRIPTION
    HOMEPAGE = "https://github.com/ImCharlesY/AdaInt"

    def __init__(
        self,
        *,
        source: str | os.PathLike | None = None,
        cube_file: str | os.PathLike | None = None,
        include_bundled: bool = True,
        train_pairs_per_photo: int = TRAIN_PAIRS_PER_PHOTO,
        test_pairs_per_photo: int = TEST_PAIRS_PER_PHOTO,
        seed: int = 0,
        **kwargs,
    ):
        """``source``: optional folder of extra photos; ``cube_file``: the grade (``cube``)."""
        super().__init__(**kwargs)
        self._source = Path(source) if source is not None else None
        self._cube_file = Path(cube_file) if cube_file is not None else None
        self._include_bundled = include_bundled
        self._pairs = {"train": train_pairs_per_photo, "test": test_pairs_per_photo}
        self._seed = seed

    def photos(self) -> dict[str, list[Photo]]:
        photos = bundled_photos() if self._include_bundled else []
        if self._source is not None:
            photos += user_photos(self._source)
        splits = {
            "train": [p for p in photos if not is_test_photo(p)],
            "test": [p for p in photos if is_test_photo(p)],
        }
        return splits

    def _split_generators(self, dl_manager):
        del dl_manager
        splits = self.photos()
        problems = [f"split '{s}' has no photos" for s, ph in splits.items() if not ph]
        for photo in (p for ph in splits.values() for p in ph):
            try:
                read_image_raw(photo.path)
            except ImageReadError as exc:
                problems.append(f"{photo.name}: corrupt photo: {exc}")
        grade = None
        if self.builder_config.grade == "cube":
            if self._cube_file is None:
                problems.append("the cube config needs a .cube file (--cube FILE)")
            else:
                try:
                    grade = read_cube(self._cube_file)
                except (OSError, ValueError) as exc:
                    problems.append(f"unreadable .cube file: {exc}")
        if problems:
            raise DatasetBuildError(
                f"cannot build ailut_demo/{self.builder_config.name}:\n  " + "\n  ".join(problems)
            )
        return {name: self._generate_demo(name, photos, grade) for name, photos in splits.items()}

    def _generate_demo(self, split: str, photos: Sequence[Photo], grade) -> Iterator:
        tasks = [(photo, k) for photo in photos for k in range(self._pairs[split])]
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

        def make(task):
            photo, k = task
            img, target = cache[photo.name]
            rng = np.random.default_rng(
                [self._seed, _stable_hash(photo.name), k, 0 if split == "train" else 1]
            )
            if split == "train":
                box = _random_crop_box(img.shape, rng, TRAIN_CROP_RATIO)
                img, target = img[box], target[box]
            degraded = apply_retouch(img, draw_retouch(rng))
            example_id = f"{photo.name}/{k:03d}"
            return example_id, {
                "input": encode_png(quantize(degraded)),
                "target": encode_png(target),
                "id": example_id,
            }

        # The photo decode is shared by its variants; numpy and OpenCV release the GIL,
        # so a few threads roughly divide the build time by the core count.
        with concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
            for photo in photos:
                img = load_photo(photo)
                # The grade is pointwise, so grading the photo once and cropping is exact.
                graded = img if grade is None else quantize(apply_cube_numpy(to_float(img), grade))
                cache[photo.name] = (img, graded)
                yield from pool.map(make, [t for t in tasks if t[0] is photo])
                del cache[photo.name]
