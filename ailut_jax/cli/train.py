"""``ailut train`` (and ``python train.py``): born-again AdaInt training from a config.

    ailut train                                   # the demo: configs/demo.py
    ailut train --config configs/fivek_srgb.py --workdir runs/fivek_srgb
    ailut train --config fivek_srgb --config.steps=1000 --config.generations=1

``--config`` takes a config file or the name of one of the project's configs (``demo``,
``pairs``, ``fivek_srgb``, ``fivek_xyz``, ``fivek_3dlut``, ``ppr10k``, ...); any setting can be
overridden with ``--config.KEY=VALUE``. A rerun with the same ``--workdir`` resumes from
its latest checkpoint. Flags are absl / ml_collections flags, parsed here for both entry
points.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ailut_jax.cli import _common as common

PROJECT_CONFIGS = ("demo", "pairs", "fivek_srgb", "fivek_xyz", "fivek_3dlut", "ppr10k")


def configs_dir() -> Path | None:
    """The project's ``configs/`` folder: in a checkout, beside the package; in an
    installed wheel, inside it."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "configs", package / "configs"):
        if (candidate / "demo.py").is_file():
            return candidate
    return None


def resolve_config_arg(value: str) -> str:
    """``--config`` value with a bare config name (``fivek_srgb[:arg]``) made a path."""
    path, sep, arg = value.partition(":")
    if Path(path).exists() or path.endswith(".py") or "/" in path:
        return value
    folder = configs_dir()
    if folder is not None and (folder / f"{path}.py").is_file():
        return f"{folder / path}.py{sep}{arg}"
    return value


def _rewrite_config_flag(argv: list[str]) -> list[str]:
    out = list(argv)
    for i, a in enumerate(out):
        if a.startswith("--config="):
            out[i] = "--config=" + resolve_config_arg(a.split("=", 1)[1])
        elif a == "--config" and i + 1 < len(out):
            out[i + 1] = resolve_config_arg(out[i + 1])
    return out


def register(subparsers) -> None:
    # Listed in `ailut --help`; `ailut train ...` itself is dispatched to main() before
    # argparse sees it, because its flags are absl flags.
    subparsers.add_parser(
        "train",
        help="train AdaInt + born-again students from a config (ailut train --help)",
        add_help=False,
    )


def _define_flags(argv: list[str]):
    """A fresh set of flags for ``argv``: ml_collections defines one flag per
    ``--config.KEY`` override it finds in the argv it is given."""
    from absl import flags
    from ml_collections import config_flags

    flag_values = flags.FlagValues()
    default = configs_dir()
    config_flags.DEFINE_config_file(
        "config",
        str(default / "demo.py") if default else None,
        "Training config: a file, or the name of one in configs/ (demo, fivek_srgb, ...).",
        flag_values=flag_values,
        lock_config=True,
        sys_argv=argv,
    )
    flags.DEFINE_string(
        "workdir", None, "Run directory (default: runs/<config.name>).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "Multi-process training: host:port of process 0's coordinator (every process "
        "gives the same address).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_processes",
        None,
        "Multi-process training: how many processes.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "process_id",
        None,
        "Multi-process training: this process's index, 0 .. num_processes-1.",
        flag_values=flag_values,
    )
    return flag_values


def _usage(flag_values) -> str:
    return (
        __doc__.split("\n\n")[1]
        + "\n\nFlags:\n"
        + flag_values.module_help(sys.modules[__name__])
        + "\n  --config.KEY=VALUE: override one setting of the config\n"
    )


def main(argv: list[str]) -> int:
    """Parse ``argv`` (``argv[0]`` is the program name) and train; returns the exit status.

    A missing ``train`` extra (absl, ml_collections, optax, ...) is reported like every
    command's: one line naming the extra, exit status 2.
    """
    return common.run_command("train", lambda _: _parse_and_train(argv), None)


def _parse_and_train(argv: list[str]) -> int:
    from absl import flags, logging

    argv = _rewrite_config_flag(argv)
    try:
        # Loading the config file and applying overrides happen here: a missing file, an
        # unknown key or a value of the wrong type are bad input, reported in one line.
        flag_values = _define_flags(argv)
        if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
            print(_usage(flag_values))
            return common.EXIT_OK
        rest = flag_values(argv)
        config = flag_values.config
        if config is None:
            raise ValueError("no config: give --config FILE or a project config name")
        name = config.name  # a config file that failed to load raises here
    except (AttributeError, KeyError) as exc:
        # ml_collections reports an unknown override key as the bare key name.
        key = str(exc).strip("\"'")
        given = [a for a in argv if a.lstrip("-").startswith("config.") and key in a]
        common.report("train", f"unknown config key {key!r} ({' '.join(given) or exc})")
        return common.EXIT_BAD_INPUT
    except (flags.Error, TypeError, ValueError, OSError) as exc:
        common.report("train", " ".join(str(exc).split()) or type(exc).__name__)
        return common.EXIT_BAD_INPUT
    if len(rest) > 1:
        common.report("train", f"unexpected arguments: {' '.join(rest[1:])}")
        return common.EXIT_BAD_INPUT
    # grain's worker processes insist on parsed absl flags.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    # orbax logs every save at INFO; the progress bar and summaries are what matter here.
    logging.set_verbosity(logging.WARNING)
    workdir = flag_values.workdir or str(Path("runs") / name)
    cluster = {
        "coordinator_address": flag_values.coordinator_address,
        "num_processes": flag_values.num_processes,
        "process_id": flag_values.process_id,
    }
    return _train(config, workdir, cluster)


def cluster_detected(environ=None) -> bool:
    """Whether the environment describes a job of more than one process: JAX's own
    ``JAX_COORDINATOR_ADDRESS``, or a SLURM / Open MPI launch of several tasks."""
    import os

    environ = os.environ if environ is None else environ
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    for name in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        try:
            if int(environ.get(name, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def init_distributed(coordinator_address=None, num_processes=None, process_id=None) -> bool:
    """Join a multi-process job when the flags or the environment describe one; returns
    whether it did. The three flags are passed to ``jax.distributed.initialize`` (which
    fills what is missing from a cluster scheduler's environment); without them, JAX's
    own cluster detection is used when :func:`cluster_detected` says there is a job."""
    import jax

    given = {
        k: v
        for k, v in (
            ("coordinator_address", coordinator_address),
            ("num_processes", num_processes),
            ("process_id", process_id),
        )
        if v is not None
    }
    if not given and not cluster_detected():
        return False
    if num_processes is not None and num_processes < 1:
        raise common.CommandError(f"--num_processes must be >= 1, got {num_processes}")
    if process_id is not None and not (
        0 <= process_id < (num_processes if num_processes is not None else process_id + 1)
    ):
        raise common.CommandError(f"--process_id must be in 0 .. num_processes-1, got {process_id}")
    # CPU processes exchange data through gloo (the accelerators bring their own).
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):
        pass
    try:
        jax.distributed.initialize(**given)
    except (RuntimeError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise common.CommandError(
            "could not start multi-process training "
            f"({', '.join(f'{k}={v}' for k, v in given.items()) or 'from the environment'}): "
            f"{detail}"
        ) from exc
    return True


def _train(config, workdir: str, cluster: dict) -> int:
    from ailut_jax.train import TrainingDiverged, train

    init_distributed(**cluster)
    try:
        train(config, workdir)
    except TrainingDiverged as exc:
        raise common.CommandError(str(exc), status=common.EXIT_DIVERGED) from exc
    return common.EXIT_OK
