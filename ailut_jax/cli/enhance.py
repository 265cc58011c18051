"""``ailut enhance``: enhance photos at full resolution with a model."""

from __future__ import annotations

import sys
from pathlib import Path

from ailut_jax.cli import _common as common


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "enhance",
        help="enhance photos at full resolution with a model",
        description="Enhance images (JPEG, PNG, TIFF; 8 or 16 bit; EXIF orientation applied) "
        "at full resolution, writing OUT/<stem>.png as round(clip(y, 0, 1) * max). Unreadable "
        "files are reported and skipped; the exit status is then 1.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    common.add_checkpoint(parser)
    common.add_out(parser, "output folder")
    common.add_bit_depth(parser)
    common.add_impl(parser)
    common.add_quiet(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ailut_jax.enhance import enhance_file, expand_inputs, output_names

    inputs = expand_inputs(args.images)
    if not inputs:
        raise common.CommandError(f"no images in {' '.join(args.images)}")
    enhancer = common.load_enhancer(args.checkpoint, args.impl)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets, failures = output_names(inputs, out_dir)
    for _, message in failures:
        common.report("enhance", message)
    for path in tqdm(targets, desc="enhance", unit="img", disable=args.quiet, file=sys.stderr):
        try:
            enhance_file(enhancer, path, targets[path], bit_depth=args.bit_depth)
        except Exception as exc:  # one bad or huge file must not stop the others
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            failures.append((path, message))
            tqdm.write(f"ailut enhance: error: {message}", file=sys.stderr)
    done = len(inputs) - len(failures)
    print(f"enhanced {done} of {len(inputs)} images into {out_dir}", file=sys.stderr)
    return common.batch_status(len(inputs), len(failures))
