"""``ailut build-dataset NAME``: build one of the TFDS datasets into the data directory."""

from __future__ import annotations

import time

from ailut_jax.cli import _common as common

DATASETS = ("ailut_demo", "fivek", "ppr10k")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-dataset",
        help="build a dataset (ailut_demo, fivek, ppr10k) as TFDS ArrayRecord files",
        description="Build a paired dataset. ailut_demo needs nothing (real photos bundled "
        "with scikit-image and matplotlib, plus --source DIR of your own photos if given); "
        "fivek and ppr10k need --source, the dataset's root folder. Every pair is checked "
        "first; a bad folder fails with a list of the offending files and leaves nothing "
        "behind.",
    )
    p.add_argument("name", choices=DATASETS)
    p.add_argument(
        "--config",
        help="builder config (fivek: expert_a..expert_e, xyz_expert_a..; ppr10k: target_a.."
        "target_c, target_a_aug..; ailut_demo: retouch, cube); default: expert_c, "
        "target_a, retouch",
    )
    p.add_argument("--source", help="dataset root folder (ailut_demo: extra photos, optional)")
    p.add_argument(
        "--split-file",
        action="append",
        metavar="[SPLIT=]FILE",
        help="id list for a split, one id per line; the split is named after the file "
        "(train.txt -> train) unless SPLIT= is given; repeat for each split",
    )
    p.add_argument("--cube", help="ailut_demo --config cube: the .cube grade to learn")
    common.add_data_dir(p)
    p.add_argument("--force", action="store_true", help="rebuild even if already built")
    p.set_defaults(func=run)


def run(args) -> int:
    from ailut_jax.data import build_dataset, default_data_dir, open_source
    from ailut_jax.data._common import parse_split_files

    kwargs = {}
    if args.name == "ailut_demo":
        if args.split_file:
            raise common.CommandError("ailut_demo makes its own splits; drop --split-file")
        if args.cube:
            kwargs["cube_file"] = args.cube
    else:
        if not args.source:
            raise common.CommandError(f"{args.name} needs --source, the dataset's root folder")
        if args.cube:
            raise common.CommandError("--cube applies to ailut_demo --config cube only")
        kwargs["split_files"] = parse_split_files(args.split_file)
    if args.source:
        kwargs["source"] = args.source
    start = time.perf_counter()
    path = build_dataset(
        args.name, config=args.config, data_dir=args.data_dir, force=args.force, **kwargs
    )
    elapsed = time.perf_counter() - start
    data_dir = args.data_dir or default_data_dir()
    config = path.parent.name
    sizes = []
    for split in ("train", "test"):
        try:
            src = open_source(args.name, split, config=config, data_dir=data_dir, build=False)
        except ValueError:
            continue
        sizes.append(f"{split}: {len(src)} pairs")
    print(f"{args.name}/{config} ready in {path} ({', '.join(sizes)}; {elapsed:.1f} s)")
    return common.EXIT_OK
