"""A real before/after folder for measuring the ``pairs`` dataset (docs/pairs.md).

    python benchmarks/make_pairs_folder.py OUT GRADE.cube [EXTRA_PHOTO ...]

Photos: the real colour photographs bundled with scikit-image and matplotlib (the ones
ailut_jax/data/demo.py uses) plus any EXTRA_PHOTO given. Each photo gives ``--per-photo``
pairs: a random crop (landscape or portrait, 0.6-1 of each side) at a short edge of
300-480 pixels.

- ``OUT/before/IMG_NNNN.*``: the crop as a camera's flat rendering would show it, degraded
  by a random retouch of the demo's family (under-exposed, flat, desaturated, a colour
  cast, by amounts that vary per pair): JPEG q95, one in four as a 16-bit TIFF;
- ``OUT/after/IMG_NNNN.*``: the same crop corrected and graded with ``GRADE.cube`` (a
  colourist's look): PNG, one in three as JPEG q95;
- ``OUT/test_photos.txt`` / ``OUT/train_photos.txt``: split lists that hold out every crop
  of the photos named by ``--test-photos`` (no scene seen in training).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ailut_jax.cube import apply_cube_numpy, read_cube
from ailut_jax.data.demo import Photo, apply_retouch, bundled_photos, draw_retouch, load_photo
from ailut_jax.imageio import quantize, to_float


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("cube")
    p.add_argument("extra", nargs="*", help="more photo files")
    p.add_argument("--per-photo", type=int, default=5)
    p.add_argument("--test-photos", default="chelsea,a4739")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out)
    before, after = out / "before", out / "after"
    before.mkdir(parents=True, exist_ok=True)
    after.mkdir(parents=True, exist_ok=True)
    grade = read_cube(args.cube)
    photos = bundled_photos() + [Photo(Path(e).stem, Path(e).stem, Path(e)) for e in args.extra]
    rng = np.random.default_rng(args.seed)
    test_photos = set(args.test_photos.split(","))
    splits: dict[str, list[str]] = {"train": [], "test": []}
    k = 0
    for photo in photos:
        full = load_photo(photo, max_short_edge=720)
        h, w = full.shape[:2]
        for _ in range(args.per_photo):
            k += 1
            name = f"IMG_{k:04d}"
            ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
            if rng.random() < 0.3:  # some portrait crops
                cw = min(cw, int(ch * 0.75))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = load_crop(full[y : y + ch, x : x + cw], int(rng.integers(300, 481)))
            degraded = apply_retouch(crop, draw_retouch(rng))
            graded = apply_cube_numpy(to_float(crop), grade)
            if k % 4 == 0:
                tifffile.imwrite(before / f"{name}.tif", quantize(degraded, 16), photometric="rgb")
            else:
                Image.fromarray(quantize(degraded)).save(before / f"{name}.jpg", quality=95)
            if k % 3 == 0:
                Image.fromarray(quantize(graded)).save(after / f"{name}.jpg", quality=95)
            else:
                Image.fromarray(quantize(graded)).save(after / f"{name}.png")
            group = "motorcycle" if photo.group == "motorcycle" else photo.name
            splits["test" if group in test_photos else "train"].append(name)
    for split, names in splits.items():
        (out / f"{split}_photos.txt").write_text("\n".join(names) + "\n")
    print(f"{k} pairs in {out} ({len(splits['test'])} of them from held-out photos)")


def load_crop(crop: np.ndarray, short_edge: int) -> np.ndarray:
    import cv2

    h, w = crop.shape[:2]
    scale = short_edge / min(h, w)
    if scale >= 1:
        return np.ascontiguousarray(crop)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(crop, size, interpolation=cv2.INTER_AREA)


if __name__ == "__main__":
    main()
