"""``ailut plot``: one figure of what a model does to a photo."""

from __future__ import annotations

from pathlib import Path

from ailut_jax.cli import _common as common


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="figure: input vs output, learned vertices, grey-axis response",
        description="Draw the input and output side by side, the three channels' learned "
        "vertices against the uniform grid and the response curves along the grey axis.",
    )
    common.add_checkpoint(parser)
    parser.add_argument("image", type=Path, help="input image")
    common.add_out(parser, "figure file (.png)")
    parser.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    parser.add_argument(
        "--colors", type=int, help="quantise the PNG to this many colours (smaller file)"
    )
    common.add_impl(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.colors is not None and not 2 <= args.colors <= 256:
        raise common.CommandError(f"--colors must be in [2, 256], got {args.colors}")
    if args.dpi < 10:
        raise common.CommandError(f"--dpi must be at least 10, got {args.dpi}")
    import numpy as np

    from ailut_jax.imageio import read_image
    from ailut_jax.plot import make_figure, save_figure

    img = read_image(args.image)
    enhancer = common.load_enhancer(args.checkpoint, args.impl)
    pred = enhancer.predict(img)
    fig = make_figure(
        img,
        np.asarray(pred["output"]),
        pred["lut"],
        pred["vertices"],
        weights=pred["weights"],
        title=f"{Path(args.checkpoint).name} on {args.image.name}",
        impl=args.impl,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, dpi=args.dpi, colors=args.colors)
    print(out)
    return common.EXIT_OK
