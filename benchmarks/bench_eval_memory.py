"""Peak memory of test-split evaluation: does it stream, or hold the split?

Builds a FiveK-layout test split of N photos at 480p (real photos bundled with
scikit-image, cropped to varied aspect ratios in both orientations), then evaluates a
FiveK model on it the way training's final table does (model + identity, PSNR, SSIM,
Delta-E) with :func:`ailut_jax.train.evaluation.evaluate`. The resident set size is read
after the model is loaded and compiled for one image (the baseline), the kernel's peak
counter is reset, and the peak during the evaluation is reported as growth over the
baseline, next to what holding the split in memory as float32 would take.

    python benchmarks/bench_eval_memory.py [--images 500] [--work /tmp/eval-memory]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_folder(root: Path, n: int) -> tuple[Path, int]:
    """FiveK layout with ``n`` test photos (a0001.. in test.txt) and 2 training photos;
    returns the folder and the float32 bytes the test inputs and targets would take."""
    import skimage.data
    from PIL import Image

    photos = [
        f()
        for f in (
            skimage.data.astronaut,
            skimage.data.coffee,
            skimage.data.chelsea,
            skimage.data.rocket,
        )
    ]
    rng = np.random.default_rng(0)
    ids = [f"a{k + 1:04d}" for k in range(n + 2)]
    held_bytes = 0
    for k, image_id in enumerate(ids):
        img = photos[k % len(photos)]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1)), int(w * rng.uniform(0.6, 1))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        im = Image.fromarray(img[y : y + ch, x : x + cw])
        if k % 3 == 0:
            im = im.transpose(Image.Transpose.ROTATE_90)
        s = 480 / min(im.size)  # 480p: the short side is 480
        im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.BILINEAR)
        if k < n:
            held_bytes += 2 * im.size[0] * im.size[1] * 3 * 4
        target = Image.fromarray(
            np.rint(np.clip((np.asarray(im) / 255.0) ** 0.8, 0, 1) * 255).astype(np.uint8)
        )
        for sub, pic in (("input", im), ("expertC", target)):
            folder = root / sub / "JPG/480p"
            folder.mkdir(parents=True, exist_ok=True)
            pic.save(folder / f"{image_id}.jpg", quality=90)
    (root / "test.txt").write_text("\n".join(ids[:n]) + "\n")
    (root / "train.txt").write_text("\n".join(ids[n:]) + "\n")
    return root, held_bytes


def measure(data_dir: str) -> None:
    from flax import nnx

    from ailut_jax.data import open_source
    from ailut_jax.enhance import Enhancer
    from ailut_jax.models import AiLUT, ModelConfig
    from ailut_jax.train.evaluation import evaluate, iter_test_images

    source = open_source("fivek", "test", config="expert_c", data_dir=data_dir)
    enhancer = Enhancer(AiLUT(ModelConfig(), rngs=nnx.Rngs(0)))
    _, first, _ = next(iter(iter_test_images(source, 1)))
    enhancer.predict(first)
    baseline = _rss_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to now
    result = evaluate(source, {"model": enhancer}, identity=True)
    peak = _rss_mib("VmHWM")
    print(f"RESULT {len(source)} {baseline:.0f} {peak:.0f} {result['model']['psnr']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--work", default=None, help="folder for the photos and the build")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return 0

    work = Path(args.work or tempfile.mkdtemp(prefix="ailut-eval-memory-"))
    folder, held = make_folder(work / "FiveK", args.images)
    data_dir = work / "tfds"
    subprocess.run(
        [sys.executable, "-m", "ailut_jax.cli", "build-dataset", "fivek"]
        + ["--source", str(folder), "--data-dir", str(data_dir)]
        + ["--split-file", str(folder / "train.txt"), "--split-file", str(folder / "test.txt")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # A fresh process: the build's memory does not count.
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    n, baseline, peak, psnr = line.split()[1:]
    growth = float(peak) - float(baseline)
    print(f"test photos:                       {n} (480p, both orientations)")
    print(f"resident after model + compile:    {float(baseline):8.0f} MiB")
    print(f"peak during evaluation:            {float(peak):8.0f} MiB")
    print(f"growth over the model:             {growth:8.0f} MiB")
    print(f"the split held as float32 would be {held / 2**20:8.0f} MiB (inputs + targets)")
    print(f"(model PSNR {float(psnr):.2f} dB, an untrained model: the figure is not the point)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
