"""Self-describing model directories: orbax parameters plus the model config as JSON.

Layout of a model directory::

    DIR/config.json   {"format": "ailut-jax-model", "format_version": 1,
                       "model": {ModelConfig fields}, "metadata": {...}}
    DIR/params/       orbax checkpoint of the nnx.Param (and BatchNorm statistics) tree

Written by ``ailut convert`` and by training; read by ``ailut enhance`` and evaluation.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from ailut_jax.models import ModelConfig, empty_model

FORMAT = "ailut-jax-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
PARAMS_DIR = "params"


class ModelDirError(ValueError):
    """A model directory is missing, incomplete or corrupt; the message names the path."""


def _saved_state(model):
    # Parameters and BatchNorm statistics; dropout RNG state is not part of a model.
    return nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat)))


def _local_checkpointer() -> ocp.StandardCheckpointer:
    """An orbax checkpointer for this process alone: a model directory is written and read
    by one process (process 0 of a multi-process run), so orbax must not wait for the
    others at its barriers."""
    me = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=me, active_processes={me}
        )
    )


def save_model_dir(
    path: str | os.PathLike, model, extra_metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (an :class:`~ailut_jax.models.AiLUT`) to the directory ``path``.

    The directory is assembled under a temporary name next to ``path`` and renamed into
    place, so a crash leaves either the previous contents or the complete new directory,
    never a half-written one. An existing model directory at ``path`` is replaced.

    Args:
      path: destination directory.
      model: the model; its ``config`` is stored as JSON.
      extra_metadata: JSON-serialisable facts to keep with it (source, training step...).

    Returns:
      ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path).absolute()
    metadata = dict(extra_metadata or {})
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "metadata": metadata,
    }
    try:
        text = json.dumps(document, indent=2, sort_keys=True)
    except TypeError as exc:
        raise ValueError(f"extra_metadata must be JSON-serialisable: {exc}") from exc
    if path.exists() and not (path / CONFIG_FILE).is_file():
        raise ModelDirError(f"{path}: exists and is not a model directory; refusing to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a model dir is not
    old = None
    try:
        checkpointer = _local_checkpointer()
        try:
            checkpointer.save(tmp / PARAMS_DIR, _saved_state(model))
            checkpointer.wait_until_finished()
        finally:
            checkpointer.close()
        with open(tmp / CONFIG_FILE, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old / path.name, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def read_model_dir_config(path: str | os.PathLike):
    """Read ``DIR/config.json``: returns ``(ModelConfig, metadata dict)``."""
    path = Path(path)
    if not path.exists():
        raise ModelDirError(f"{path}: no such model directory")
    if not path.is_dir():
        raise ModelDirError(
            f"{path}: not a directory; a model directory (from `ailut convert` or training) "
            "holds config.json and params/"
        )
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ModelDirError(f"{path}: not a model directory (no {CONFIG_FILE})")
    try:
        document = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{config_path}: unreadable or invalid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelDirError(f"{config_path}: not an {FORMAT} config (format field missing)")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelDirError(
            f"{config_path}: format_version {version!r} is not supported (this version of "
            f"ailut-jax reads {FORMAT_VERSION})"
        )
    try:
        config = ModelConfig.from_dict(document.get("model"))
    except (TypeError, ValueError) as exc:
        raise ModelDirError(f"{config_path}: invalid model config ({exc})") from exc
    return config, dict(document.get("metadata") or {})


def load_model_dir(path: str | os.PathLike):
    """Load the :class:`~ailut_jax.models.AiLUT` saved in directory ``path``.

    Raises:
      ModelDirError: the directory, its config or its parameters are missing or corrupt,
        or the parameters do not fit the config; the message names the path.
    """
    path = Path(path).absolute()
    config, _ = read_model_dir_config(path)
    params_path = path / PARAMS_DIR
    if not params_path.is_dir():
        raise ModelDirError(f"{path}: incomplete model directory (no {PARAMS_DIR}/)")
    model = empty_model(config)
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), nnx.to_pure_dict(state)
    )
    checkpointer = _local_checkpointer()
    try:
        _check_saved_shapes(checkpointer, params_path, target, config)
        restored = checkpointer.restore(params_path, target)
    except ModelDirError:
        raise
    except Exception as exc:  # orbax raises many types for a damaged tree
        raise ModelDirError(
            f"{params_path}: cannot restore parameters for {config} ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        checkpointer.close()
    expected = jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), target)
    got = jax.tree_util.tree_map(lambda x: (tuple(x.shape), x.dtype), restored)
    if expected != got:
        raise ModelDirError(f"{params_path}: parameter shapes do not match {config}")
    # orbax hands back arrays committed to one device; plain uncommitted arrays let jit
    # reuse executables compiled for models built in memory (and place them freely).
    restored = jax.tree_util.tree_map(lambda x: jax.numpy.asarray(np.asarray(x)), restored)
    nnx.replace_by_pure_dict(state, restored)
    nnx.update(model, state)
    return model


def _flat_shapes(tree) -> dict[str, tuple]:
    return {
        "/".join(str(getattr(k, "key", k)) for k in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _check_saved_shapes(checkpointer, params_path: Path, target, config) -> None:
    """Compare the saved tree with the one ``config`` needs before reading any array.

    A mismatch found only during the restore leaves orbax's readers half-way; checking
    the metadata first also gives an error that names the offending parameters.
    """
    try:
        metadata = checkpointer.metadata(params_path)
    except Exception as exc:  # a missing or unreadable _METADATA / tree
        raise ModelDirError(
            f"{params_path}: unreadable parameter checkpoint ({type(exc).__name__}: {exc})"
        ) from exc
    saved = _flat_shapes(getattr(metadata, "item_metadata", metadata) or {})
    if not saved:
        raise ModelDirError(f"{params_path}: damaged parameter checkpoint (no array metadata)")
    wanted = _flat_shapes(target)
    problems = [f"missing {k}" for k in sorted(set(wanted) - set(saved))]
    problems += [f"unexpected {k}" for k in sorted(set(saved) - set(wanted))]
    problems += [
        f"{k} saved {saved[k]}, config needs {wanted[k]}"
        for k in sorted(set(saved) & set(wanted))
        if saved[k] != wanted[k]
    ]
    if problems:
        shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
        raise ModelDirError(f"{params_path}: parameters do not fit {config}: {shown}")


def model_dir_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``metadata`` stored with a model directory."""
    return read_model_dir_config(path)[1]
