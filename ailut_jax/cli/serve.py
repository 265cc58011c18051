"""``ailut serve``: a local web app to enhance photos and download the image and its ``.cube``."""

from __future__ import annotations

import sys

from ailut_jax.cli import _common as common


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a local web app: drop photos, compare before and after, download PNG and .cube",
        description="Serve a web page where photos (JPEG, PNG, TIFF; 8 or 16 bit) are enhanced "
        "by the model, shown before and after with a strength control, and downloaded as PNG "
        "(8 or 16 bit) with their .cube LUT (33 or 65 points). Binds to localhost unless "
        "--host says otherwise. Needs the 'serve' extra.",
    )
    common.add_checkpoint(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=50.0,
        metavar="MP",
        help="refuse larger images (default 50)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=256.0,
        metavar="MB",
        help="refuse larger files (default 256)",
    )
    common.add_impl(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise common.CommandError(f"--port must be in 1-65535, got {args.port}")
    if args.max_megapixels <= 0 or args.max_upload_mb <= 0:
        raise common.CommandError("--max-megapixels and --max-upload-mb must be positive")
    # Before the model loads: without the serve extra this is the one-line message
    # naming it (ailut_jax.cli._common.EXTRA_OF_MODULE).
    from ailut_jax.serve import serve

    try:
        serve(
            args.checkpoint,
            host=args.host,
            port=args.port,
            impl=args.impl,
            max_pixels=int(args.max_megapixels * 1e6),
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            announce=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped, not an error
        pass
    print("ailut serve: stopped", file=sys.stderr, flush=True)
    return common.EXIT_OK
