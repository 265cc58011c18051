"""``ailut export-cube`` and ``ailut apply-cube``: a model's LUT as a ``.cube`` file, and
any ``.cube`` file applied to photos."""

from __future__ import annotations

import sys
from pathlib import Path

from ailut_jax.cli import _common as common

DEFAULT_SIZE = 33


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-cube",
        help="export the LUT a model predicts for an image as a .cube file",
        description="Predict the LUT for IMAGE, resample the model's own transform onto a "
        "uniform N^3 grid and write it as a standard .cube file (domain 0..1, red fastest) "
        "that ffmpeg, OBS, DaVinci Resolve or Photoshop can apply.",
    )
    common.add_checkpoint(parser)
    parser.add_argument("image", type=Path, help="the image the LUT is predicted for")
    parser.add_argument(
        "--size",
        type=int,
        default=DEFAULT_SIZE,
        help=f"grid points per axis (default {DEFAULT_SIZE}; 65 for finer grades)",
    )
    common.add_out(parser, "the .cube file to write")
    parser.add_argument("--title", help="TITLE of the .cube file (default: from the names)")
    common.add_impl(parser)
    parser.set_defaults(func=run_export)

    parser = subparsers.add_parser(
        "apply-cube",
        help="apply a .cube 3D LUT to images (trilinear, like ffmpeg's lut3d)",
        description="Apply a standard .cube 3D LUT to images, trilinearly, clamping inputs "
        "to the LUT's domain, and write them as PNGs named after the inputs. Unreadable "
        "images are reported and skipped; the exit status is then 1.",
    )
    parser.add_argument("cube", type=Path, help="the .cube file (3D, any LUT_3D_SIZE)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders")
    common.add_out(parser, "output folder")
    common.add_bit_depth(parser)
    common.add_impl(parser)
    parser.set_defaults(func=run_apply)


def run_export(args) -> int:
    from ailut_jax.cube import MAX_SIZE, MIN_SIZE, write_cube
    from ailut_jax.export_cube import export_table
    from ailut_jax.imageio import read_image

    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise common.CommandError(f"--size must be in [{MIN_SIZE}, {MAX_SIZE}], got {args.size}")
    img = read_image(args.image)
    enhancer = common.load_enhancer(args.checkpoint, args.impl)
    table = export_table(enhancer, img, args.size)
    name = Path(args.checkpoint).name
    title = args.title or f"AdaInt {name} for {args.image.name}"
    comments = (
        f"Made by ailut export-cube from the model in {args.checkpoint}",
        f"for the image {args.image.name}: the model's transform sampled on a uniform "
        f"{args.size}^3 grid.",
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_cube(out, table, title=title, comments=comments)
    print(f"{out}: LUT_3D_SIZE {args.size}, output range [{table.min():.4f}, {table.max():.4f}]")
    return common.EXIT_OK


def run_apply(args) -> int:
    from ailut_jax.cube import apply_cube, read_cube
    from ailut_jax.enhance import expand_inputs, output_names
    from ailut_jax.imageio import read_image, write_image

    cube = read_cube(args.cube)
    inputs = expand_inputs(args.images)
    if not inputs:
        raise common.CommandError(f"no images in {' '.join(args.images)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets, failures = output_names(inputs, out_dir)
    for _, message in failures:
        common.report("apply-cube", message)
    for path, target in targets.items():
        try:
            img = read_image(path)
            write_image(target, apply_cube(img, cube, impl=args.impl), bit_depth=args.bit_depth)
        except (ValueError, OSError) as exc:
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            failures.append((path, message))
            common.report("apply-cube", message)
            continue
        print(target)
    if failures:
        print(f"applied to {len(inputs) - len(failures)} of {len(inputs)} images", file=sys.stderr)
    return common.batch_status(len(inputs), len(failures))
