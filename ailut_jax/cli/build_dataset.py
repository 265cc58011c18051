"""``ailut build-dataset NAME``: build one of the TFDS datasets into the data directory."""

from __future__ import annotations

import time

from ailut_jax.cli import _common as common

DATASETS = ("ailut_demo", "fivek", "ppr10k", "pairs")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-dataset",
        help="build a dataset (ailut_demo, fivek, ppr10k, pairs) as TFDS ArrayRecord files",
        description="Build a paired dataset. ailut_demo needs nothing (real photos bundled "
        "with scikit-image and matplotlib, plus --source DIR of your own photos if given); "
        "fivek and ppr10k need --source, the dataset's root folder; pairs needs --inputs "
        "and --targets, two folders of before/after photos paired by file name. Every pair "
        "is checked first; fivek, ppr10k and ailut_demo fail on a bad file, pairs skips it "
        "(exit status 1), and a failed build leaves nothing behind. A build records what "
        "it was made from: asking again with other inputs stops unless --force.",
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
    pairs = p.add_argument_group("pairs")
    pairs.add_argument("--inputs", metavar="DIR", help="pairs: folder of the photos before editing")
    pairs.add_argument("--targets", metavar="DIR", help="pairs: folder of the edited photos")
    pairs.add_argument(
        "--name",
        dest="pairs_name",
        metavar="NAME",
        help="pairs: the dataset's name (its builder config; default: default); train on it "
        "with --config.data.config=NAME",
    )
    pairs.add_argument(
        "--test-fraction",
        type=float,
        metavar="F",
        help="pairs: fraction of the pairs held out for testing, chosen by a hash of their "
        "names (default 0.2); or give --split-file train=... --split-file test=...",
    )
    pairs.add_argument(
        "--max-short-edge",
        type=int,
        metavar="PX",
        help="pairs: shrink both photos of a pair to this short edge (default 480; 0: keep "
        "the full size)",
    )
    common.add_data_dir(p)
    p.add_argument("--force", action="store_true", help="rebuild even if already built")
    p.set_defaults(func=run)


def run(args) -> int:
    from ailut_jax.data import build_dataset
    from ailut_jax.data._common import parse_split_files

    if args.name == "pairs":
        return _run_pairs(args)
    if (
        args.inputs
        or args.targets
        or args.pairs_name
        or args.test_fraction is not None
        or args.max_short_edge is not None
    ):
        raise common.CommandError(
            "--inputs, --targets, --name, --test-fraction and --max-short-edge apply to pairs only"
        )
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
    _print_ready(args, path, time.perf_counter() - start)
    return common.EXIT_OK


def _print_ready(args, path, elapsed: float) -> None:
    from ailut_jax.data import default_data_dir, open_source

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


def _run_pairs(args) -> int:
    import sys

    from ailut_jax.data import build_dataset, build_record
    from ailut_jax.data._common import parse_split_files

    if not args.inputs or not args.targets:
        raise common.CommandError("pairs needs --inputs DIR (before) and --targets DIR (after)")
    if args.source or args.cube:
        raise common.CommandError("pairs takes --inputs and --targets, not --source or --cube")
    if args.config and args.pairs_name and args.config != args.pairs_name:
        raise common.CommandError("pairs: give the dataset's name once (--name NAME)")
    if args.split_file and args.test_fraction is not None:
        raise common.CommandError("pairs: give --test-fraction or --split-file, not both")
    name = args.pairs_name or args.config or "default"
    kwargs = {"inputs": args.inputs, "targets": args.targets}
    if args.split_file:
        kwargs["split_files"] = parse_split_files(args.split_file)
    if args.test_fraction is not None:
        kwargs["test_fraction"] = args.test_fraction
    if args.max_short_edge is not None:
        kwargs["max_short_edge"] = args.max_short_edge
    start = time.perf_counter()
    path = build_dataset("pairs", config=name, data_dir=args.data_dir, force=args.force, **kwargs)
    record = build_record("pairs", name, args.data_dir) or {}
    skipped = record.get("skipped", [])
    for line in skipped:
        print(f"ailut build-dataset: {line}", file=sys.stderr)
    _print_ready(args, path, time.perf_counter() - start)
    if skipped:
        print(
            f"{len(skipped)} file(s) or pair(s) skipped, listed above; fix them and rebuild "
            "with --force to include them",
            file=sys.stderr,
        )
        return common.EXIT_SKIPPED
    return common.EXIT_OK
