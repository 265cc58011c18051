"""What every ``ailut`` subcommand shares: options, exit statuses and error reporting.

Exit statuses (the same for every subcommand):

- 0: everything done;
- 1: partly done: some inputs were skipped (each one reported on stderr), the others done;
- 2: bad usage or bad input (a missing or corrupt checkpoint, file or dataset, an
  unreadable image, a missing optional dependency), or no input could be processed;
- 3: training stopped because the loss or gradients became non-finite.

Errors are one line, ``ailut COMMAND: error: what is wrong``, never a traceback; set
``AILUT_DEBUG=1`` to see the traceback as well.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_SKIPPED, EXIT_BAD_INPUT, EXIT_DIVERGED = 0, 1, 2, 3
IMPLS = ("auto", "ffi", "reference")

# The top-level third-party modules of each optional extra (pyproject.toml), for the
# one-line message when a command needs an extra that is not installed. The core install
# (inference: enhance, export-cube, apply-cube, evaluate on folders) needs none of them.
EXTRA_OF_MODULE = {
    "torch": "convert",
    "matplotlib": "plot",
    "optax": "train",
    "tensorflow_datasets": "train",
    "array_record": "train",
    "importlib_resources": "train",
    "grain": "train",
    "ml_collections": "train",
    "absl": "train",
    "tensorboardX": "train",
    "skimage": "train",
    "starlette": "serve",
    "uvicorn": "serve",
}


class CommandError(Exception):
    """A subcommand cannot go on; ``str(exc)`` is the one-line message."""

    def __init__(self, message: str, status: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.status = status


def batch_status(total: int, failed: int) -> int:
    """Exit status of a command over ``total`` inputs of which ``failed`` were skipped."""
    if failed == 0:
        return EXIT_OK
    return EXIT_SKIPPED if failed < total else EXIT_BAD_INPUT


def report(command: str, message: str) -> None:
    print(f"ailut {command}: error: {message}", file=sys.stderr, flush=True)


def missing_extra_message(exc: ModuleNotFoundError) -> str:
    """The one line for a missing module: which extra to install, when it is an extra's."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return f"missing Python module {exc.name!r} ({exc}); reinstall ailut-jax"
    return (
        f"this command needs the {extra} extra (module {top!r} is not installed): "
        f'pip install "ailut-jax[{extra}]"'
    )


def run_command(command: str, func, args: argparse.Namespace) -> int:
    """Run a subcommand, turning bad input into one line on stderr and exit status 2."""
    try:
        return int(func(args) or EXIT_OK)
    except CommandError as exc:
        report(command, str(exc))
        return exc.status
    except ModuleNotFoundError as exc:
        if os.environ.get("AILUT_DEBUG") == "1":
            raise
        report(command, missing_extra_message(exc))
        return EXIT_BAD_INPUT
    except (ValueError, OSError) as exc:
        # Every error the library raises for bad input (unreadable image, corrupt model
        # directory or checkpoint, malformed .cube, bad dataset folder, invalid config) is
        # a ValueError naming what is wrong; missing files and folders are OSErrors.
        if os.environ.get("AILUT_DEBUG") == "1":
            raise
        report(command, _one_line(exc))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        report(command, "interrupted")
        return 130


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in text:
        text = f"{exc.filename}: {text}"
    return " ".join(text.split()) if "\n" not in text.strip() else text.strip()


# ------------------------------------------------------------------ shared options


def add_checkpoint(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument(
        "--checkpoint",
        required=required,
        metavar="MODEL",
        help="model directory (from `ailut convert` or training) or an authors' .pth file",
    )


def add_impl(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impl",
        choices=IMPLS,
        default="auto",
        help="transform implementation: the native op when built (auto), or force one",
    )


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where datasets live (default: $AILUT_DATA_DIR or "
        "~/.cache/ailut_jax/tensorflow_datasets)",
    )


def add_out(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--out", required=True, help=help)


def add_bit_depth(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)"
    )


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar"
    )


def load_enhancer(checkpoint: str, impl: str):
    """The :class:`~ailut_jax.enhance.Enhancer` of ``--checkpoint``; bad ones raise."""
    from ailut_jax.enhance import Enhancer

    return Enhancer.from_checkpoint(checkpoint, impl=impl)
