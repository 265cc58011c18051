"""Training augmentations of AdaInt (docs/training.md), on numpy ``(H, W, 3)`` images.

Geometric steps (crop, resize, flip) act on input and target alike; colour jitter acts
on the input only. Every function takes an explicit ``numpy.random.Generator`` so the
pipeline is deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

# Luma weights PIL uses for its "L" mode, i.e. torchvision's saturation jitter on images.
_PIL_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _pair_size(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def random_ratio_crop(inp, target, rng: np.random.Generator, ratio=(0.6, 1.0)):
    """Crop both to ``int(H * rh) x int(W * rw)`` with rh, rw ~ U(ratio) independently.

    The crop position is uniform, as in the original ``RandomRatioCrop``.
    """
    h, w = inp.shape[:2]
    ch = max(1, int(h * rng.uniform(*ratio)))
    cw = max(1, int(w * rng.uniform(*ratio)))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return inp[y : y + ch, x : x + cw], target[y : y + ch, x : x + cw]


def random_crop(inp, target, rng: np.random.Generator | None, size):
    """A ``size`` crop of both at a uniform position (centred when ``rng`` is None)."""
    ch, cw = _pair_size(size)
    h, w = inp.shape[:2]
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} does not fit in an image of {h}x{w}")
    if rng is None:
        y, x = (h - ch) // 2, (w - cw) // 2
    else:
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
    return inp[y : y + ch, x : x + cw], target[y : y + ch, x : x + cw]


def resize(img: np.ndarray, size) -> np.ndarray:
    """Bilinear resize to ``size`` (``int`` or ``(h, w)``), as mmcv/OpenCV do for PPR10K."""
    import cv2

    h, w = _pair_size(size)
    if img.shape[:2] == (h, w):
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


def random_hflip(inp, target, rng: np.random.Generator, prob=0.5):
    """Flip both left-right with probability ``prob``."""
    if rng.uniform() < prob:
        return inp[:, ::-1], target[:, ::-1]
    return inp, target


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(img * np.float32(factor), 0.0, 1.0)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    grey = (img @ _PIL_LUMA)[..., None]
    return np.clip(grey + np.float32(factor) * (img - grey), 0.0, 1.0)


def color_jitter(img: np.ndarray, rng: np.random.Generator, brightness=0.2, saturation=0.2):
    """torchvision ``ColorJitter(brightness, saturation)`` on float ``[0, 1]`` images.

    Factors ~ U(1 - b, 1 + b) and U(1 - s, 1 + s), applied in random order, each result
    clipped to [0, 1]. (The original jitters the uint8 PIL image, which also rounds.)
    """
    ops = []
    if brightness:
        ops.append((adjust_brightness, rng.uniform(max(0.0, 1 - brightness), 1 + brightness)))
    if saturation:
        ops.append((adjust_saturation, rng.uniform(max(0.0, 1 - saturation), 1 + saturation)))
    for i in rng.permutation(len(ops)):
        fn, factor = ops[i]
        img = fn(img, factor)
    return img
