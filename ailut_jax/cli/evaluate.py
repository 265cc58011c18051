"""``ailut evaluate``: score a model (PSNR, SSIM, Delta-E) on paired images."""

from __future__ import annotations

import itertools
from pathlib import Path

from ailut_jax.cli import _common as common


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model (PSNR, SSIM, Delta-E) on paired images",
        description="Enhance every input, score it against its target (PSNR, SSIM, the "
        "authors' MATLAB SSIM, Delta-E) and write metrics.csv and summary.json.",
    )
    common.add_checkpoint(parser, required=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a built dataset: fivek, ppr10k, ailut_demo, pairs")
    source.add_argument("--inputs", type=Path, help="folder of input images")
    parser.add_argument("--targets", type=Path, help="folder of targets (same stems as --inputs)")
    parser.add_argument("--config", help="dataset config, e.g. expert_c (default: its default)")
    parser.add_argument("--split", default="test", help="dataset split (default test)")
    common.add_data_dir(parser)
    parser.add_argument("--save-path", type=Path, help="write the enhanced images here (PNG)")
    parser.add_argument(
        "--report",
        type=Path,
        help="folder for metrics.csv / summary.json (default: --save-path, else ./ailut-eval)",
    )
    parser.add_argument("--identity", action="store_true", help="also score the unmodified input")
    parser.add_argument("--limit", type=int, help="evaluate only the first N pairs")
    common.add_impl(parser)
    common.add_quiet(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.checkpoint is None and not args.identity:
        raise common.CommandError("give --checkpoint (and/or --identity)")
    if args.limit is not None and args.limit < 1:
        raise common.CommandError(f"--limit must be at least 1, got {args.limit}")
    from ailut_jax.evaluate import (
        evaluate_pairs,
        find_pairs,
        format_summary,
        iter_dataset_pairs,
        iter_folder_pairs,
        write_report,
    )

    if args.inputs is not None:
        if args.targets is None:
            raise common.CommandError("--inputs needs --targets")
        files = find_pairs(args.inputs, args.targets)
        pairs, total, source_desc = iter_folder_pairs(files), len(files), str(args.inputs)
    else:
        if args.targets is not None:
            raise common.CommandError("--targets goes with --inputs, not --dataset")
        from ailut_jax.data import open_source

        source = open_source(args.dataset, args.split, config=args.config, data_dir=args.data_dir)
        pairs, total = iter_dataset_pairs(source), len(source)
        source_desc = f"{args.dataset}/{args.config or 'default'}:{args.split}"
    if args.limit is not None:
        total = min(total, args.limit)
        pairs = itertools.islice(pairs, args.limit)

    enhance = None
    if args.checkpoint is not None:
        enhance = common.load_enhancer(args.checkpoint, args.impl)
    rows, summary = evaluate_pairs(
        pairs,
        enhance,
        total=total,
        identity=args.identity,
        save_path=args.save_path,
        progress=not args.quiet,
    )
    import jax

    summary.update(
        checkpoint=str(args.checkpoint) if args.checkpoint else None,
        source=source_desc,
        backend=jax.default_backend(),
        impl=args.impl,
    )
    report = args.report or args.save_path or Path("ailut-eval")
    csv_path, json_path = write_report(report, rows, summary)
    print(format_summary(summary))
    print(f"wrote {csv_path} and {json_path}")
    return common.EXIT_OK
