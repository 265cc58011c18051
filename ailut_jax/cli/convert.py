"""``ailut convert``: import an authors' AdaInt ``.pth`` checkpoint into a model directory."""

from __future__ import annotations

from ailut_jax.cli import _common as common


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="import an authors' AdaInt .pth checkpoint into a model directory",
        description="Convert an AdaInt PyTorch checkpoint (e.g. AiLUT-FiveK-sRGB.pth) into a "
        "self-describing model directory (orbax parameters + config.json). Needs torch "
        '(pip install "ailut-jax[convert]").',
    )
    parser.add_argument("src", help="the .pth checkpoint")
    common.add_out(parser, "model directory to write (an existing one is replaced)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ailut_jax.convert import convert_checkpoint
    from ailut_jax.modeldir import read_model_dir_config

    out = convert_checkpoint(args.src, args.out)
    config, metadata = read_model_dir_config(out)
    print(f"wrote {out}: {config} ({metadata['n_params']:,} parameters)")
    return common.EXIT_OK
