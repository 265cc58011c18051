"""The ``ailut`` command: every subcommand of the project in one place.

Each subcommand module here is thin: it defines its options (shared ones come from
:mod:`ailut_jax.cli._common`), calls the library and prints. Library imports happen when
a command runs, so ``ailut --help`` does not load JAX. Exit statuses and the error style
are the same for every command; see :mod:`ailut_jax.cli._common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ailut_jax.cli._common import EXIT_OK, run_command

# subcommand -> module in this package providing register(subparsers)
SUBCOMMANDS: dict[str, str] = {
    "enhance": "ailut_jax.cli.enhance",
    "export-cube": "ailut_jax.cli.cube",
    "apply-cube": "ailut_jax.cli.cube",
    "plot": "ailut_jax.cli.plot",
    "evaluate": "ailut_jax.cli.evaluate",
    "convert": "ailut_jax.cli.convert",
    "build-dataset": "ailut_jax.cli.build_dataset",
    "train": "ailut_jax.cli.train",
    "serve": "ailut_jax.cli.serve",
}


def _version() -> str:
    from ailut_jax import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ailut",
        description="AdaInt image-adaptive 3D LUTs: enhance photos, export .cube LUTs, "
        "train on your own before/after pairs, evaluate, convert the authors' models.",
        epilog="Exit status: 0 done, 1 some inputs skipped, 2 bad usage or input, "
        "3 training diverged. `ailut COMMAND --help` describes a command.",
    )
    parser.add_argument("--version", action="version", version=f"ailut-jax {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    registered = set()
    for module_name in SUBCOMMANDS.values():
        if module_name not in registered:
            importlib.import_module(module_name).register(subparsers)
            registered.add(module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        # Training takes absl / ml_collections flags (--config.steps=...), the same as
        # train.py; they are parsed there, not by argparse.
        from ailut_jax.cli.train import main as train_main

        return train_main(["ailut train", *argv[1:]])
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.command, args.func, args) if args.func else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
