"""The ``ailut`` command: one subcommand per module, each adding its own parser.

Every module listed in ``SUBCOMMANDS`` provides ``register(subparsers)``, which adds its
subparser and sets ``func`` (called with the parsed ``argparse.Namespace``, returning an
exit code). Those modules keep heavy imports (jax, torch, tfds) inside their command
functions so that ``ailut --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module providing register(), one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "apply-cube": ("ailut_jax.cube", "apply a .cube 3D LUT to images"),
    "build-dataset": ("ailut_jax.data.cli", "build a dataset (ailut_demo, fivek, ppr10k)"),
    "export-cube": ("ailut_jax.export_cube", "export a model's LUT for an image as .cube"),
    "evaluate": ("ailut_jax.evaluate", "score a model on paired images"),
    "plot": ("ailut_jax.plot", "figure of a model's output, vertices and curves"),
    "convert": ("ailut_jax.convert", "import an authors' .pth checkpoint"),
    "enhance": ("ailut_jax.enhance", "enhance photos with a model directory"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ailut",
        description="AdaInt image-adaptive 3D LUTs: convert, enhance, evaluate, export.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name, _ in SUBCOMMANDS.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
