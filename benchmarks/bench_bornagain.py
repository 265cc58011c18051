"""Do born-again students beat their teacher? Mean +- std over seeds, on two data sets.

Trains ``configs/demo.py`` (a teacher and two students, the ensemble scored too) once per
seed on each data set and reports every row of the results table as mean +- standard
deviation over the seeds, plus the paired difference of each student (and the ensemble)
from the teacher of the same seed:

- ``demo``: the built-in ailut_demo (degraded real photos -> originals);
- ``cube``: the same photos with a real colour grade as the target (``--cube``, default
  kdenlive's CINEMATIC look when installed), held-out photos as the test split.

    python benchmarks/bench_bornagain.py [--seeds 0 1 2] [--sets demo cube] \
        [--cube look.cube] [--work runs/bornagain] [--out benchmarks/results/bornagain.md]

Extra ``--config.KEY=VALUE`` arguments are passed to every run (e.g. to try another
``--config.distill.weight``). Each run is ``train.py`` in its own workdir; a finished run is
reused, so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CUBE = Path("/usr/share/kdenlive/luts/CINEMATIC.cube")


def run(workdir: Path, seed: int, data: list[str], extra: list[str]) -> list[dict]:
    results = workdir / "results.json"
    if not results.is_file():
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            "--config",
            str(ROOT / "configs/demo.py"),
            "--workdir",
            str(workdir),
            f"--config.seed={seed}",
            "--config.progress=False",
            *data,
            *extra,
        ]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(results.read_text())["rows"]


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def summarise(name: str, per_seed: list[list[dict]]) -> str:
    models = [r["model"] for r in per_seed[0]]
    teacher = next(i for i, m in enumerate(models) if m.startswith("teacher"))
    lines = [
        f"### {name} ({len(per_seed)} seeds)",
        "",
        "| model | PSNR (dB) | SSIM | Delta-E | PSNR - teacher (paired) |",
        "|---|---:|---:|---:|---:|",
    ]
    for i, model in enumerate(models):
        psnr = [rows[i]["psnr"] for rows in per_seed]
        diff = (
            mean_std([rows[i]["psnr"] - rows[teacher]["psnr"] for rows in per_seed])
            if i > teacher
            else ""
        )
        lines.append(
            f"| {model} | {mean_std(psnr)} | "
            f"{statistics.mean(r[i]['ssim'] for r in per_seed):.4f} | "
            f"{statistics.mean(r[i]['delta_e'] for r in per_seed):.2f} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="+", default=["demo", "cube"], choices=["demo", "cube"])
    parser.add_argument("--cube", default=str(DEFAULT_CUBE), help="the grade of the cube set")
    parser.add_argument("--work", default="runs/bornagain")
    parser.add_argument("--out", default=None, help="write the tables (Markdown) here too")
    args, extra = parser.parse_known_args()
    bad = [a for a in extra if not a.startswith("--config.")]
    if bad:
        parser.error(f"unknown arguments: {' '.join(bad)}")

    work = Path(args.work)
    sections = []
    for name in args.sets:
        data: list[str] = []
        if name == "cube":
            if not Path(args.cube).is_file():
                parser.error(f"--cube {args.cube}: no such file")
            data_dir = work / "tfds"
            subprocess.run(
                [sys.executable, "-m", "ailut_jax.cli", "build-dataset", "ailut_demo"]
                + ["--config", "cube", "--cube", args.cube, "--data-dir", str(data_dir)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            data = ["--config.data.config=cube", f"--config.data.data_dir={data_dir}"]
        per_seed = [run(work / f"{name}-seed{s}", s, data, extra) for s in args.seeds]
        sections.append(summarise(name, per_seed))
        print(sections[-1], flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
