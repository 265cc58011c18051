"""Small real photos for tests: crops of scikit-image's bundled photos, and a stand-in edit."""

import numpy as np
import skimage.data

PHOTOS = (skimage.data.astronaut, skimage.data.coffee, skimage.data.chelsea, skimage.data.rocket)


def crop(k: int, size=(40, 56), origin=(20, 30)) -> np.ndarray:
    """Photo ``k`` (mod 4), cropped to ``size`` at ``origin`` moved by (9k, 13k)."""
    img = PHOTOS[k % len(PHOTOS)]()
    y, x = origin[0] + 9 * k, origin[1] + 13 * k
    return np.ascontiguousarray(img[y : y + size[0], x : x + size[1]])


def retouch(img: np.ndarray) -> np.ndarray:
    """A stand-in edit: brighter, warmer (uint8 in, uint8 out)."""
    f = (img / 255.0) ** 0.8 * np.array([1.0, 0.97, 0.9])
    return np.rint(np.clip(f, 0, 1) * 255).astype(np.uint8)
