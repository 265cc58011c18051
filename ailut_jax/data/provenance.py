"""What a built dataset was made from, so that a build is never silently reused for
different inputs.

:func:`ailut_jax.data.build_dataset` writes ``ailut_build.json`` next to
``dataset_info.json``: the dataset, config and builder version, and every builder option
(folders with a fingerprint of their image files, split lists and ``.cube`` files with
a hash of their content, numbers as given). Asking again for the same dataset with other
inputs raises :class:`StaleDatasetError`, whose one-line message names the first
difference and ``--force``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ailut_jax.convert import file_sha256
from ailut_jax.data._common import DatasetBuildError
from ailut_jax.imageio import IMAGE_SUFFIXES

RECORD_NAME = "ailut_build.json"
RECORD_FORMAT = 1
# Options that name a folder / a file; split_files maps split names to files.
FOLDER_OPTIONS = ("source", "inputs", "targets")
# Folders whose sub-folders the builder never reads (pairs: files directly inside).
FLAT_FOLDER_OPTIONS = ("inputs", "targets")
FILE_OPTIONS = ("cube_file",)
# How options are spelled on the command line, for messages.
FLAGS = {
    "source": "--source",
    "inputs": "--inputs",
    "targets": "--targets",
    "cube_file": "--cube",
    "split_files": "--split-file",
    "test_fraction": "--test-fraction",
    "max_short_edge": "--max-short-edge",
}


class StaleDatasetError(DatasetBuildError):
    """The dataset is built, but from other inputs than the ones asked for now."""


def folder_fingerprint(folder: Path, recursive: bool = True) -> dict:
    """Path, number of image files in it (and below it if ``recursive``) and a digest of
    their names, sizes and modification times."""
    folder = Path(folder).expanduser().resolve()
    entries = []
    if folder.is_dir():
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
            for name in sorted(files):
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                    continue
                path = Path(root) / name
                st = path.stat()
                entries.append(f"{path.relative_to(folder)}\t{st.st_size}\t{st.st_mtime_ns}")
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()
    return {"path": str(folder), "images": len(entries), "digest": digest}


def file_fingerprint(path: Path) -> dict:
    path = Path(path).expanduser().resolve()
    return {"path": str(path), "sha256": file_sha256(path) if path.is_file() else None}


def describe_options(options: dict) -> dict:
    """JSON-able description of builder options, with folder / file fingerprints."""
    out = {}
    for key, value in sorted(options.items()):
        if value is None:
            out[key] = None
        elif key in FOLDER_OPTIONS:
            out[key] = folder_fingerprint(value, recursive=key not in FLAT_FOLDER_OPTIONS)
        elif key in FILE_OPTIONS:
            out[key] = file_fingerprint(value)
        elif key == "split_files":
            out[key] = {s: file_fingerprint(p) for s, p in sorted(dict(value).items())} or None
        elif isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def make_record(name: str, config: str, version: str, options: dict) -> dict:
    return {
        "format": RECORD_FORMAT,
        "dataset": name,
        "config": config,
        "builder_version": version,
        "options": describe_options(options),
    }


def write_record(version_dir: Path, record: dict) -> None:
    (Path(version_dir) / RECORD_NAME).write_text(json.dumps(record, indent=1) + "\n")


def read_record(version_dir: Path) -> dict | None:
    try:
        return json.loads((Path(version_dir) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None


def _show(key: str, value) -> str:
    if value is None:
        return "nothing" if key in FOLDER_OPTIONS + FILE_OPTIONS else "the default"
    if isinstance(value, dict) and "path" in value:
        return value["path"]
    if key == "split_files":
        return ", ".join(f"{s}={v['path']}" for s, v in value.items())
    return json.dumps(value)


def difference(built: dict, asked: dict) -> str | None:
    """The first way the options ``asked`` differ from the ``built`` ones, in words."""
    for key in sorted(set(built) | set(asked)):
        b, a = built.get(key), asked.get(key)
        if b == a:
            continue
        flag = FLAGS.get(key, key)
        if isinstance(b, dict) and isinstance(a, dict) and b.get("path") == a.get("path"):
            if "images" in b:
                return (
                    f"the {flag} folder {a['path']} changed since the build "
                    f"({b['images']} image files then, {a['images']} now, or some were modified)"
                )
            return f"the {flag} file {a['path']} changed since the build"
        if key == "split_files" and isinstance(b, dict) and isinstance(a, dict):
            for split in sorted(set(b) | set(a)):
                if b.get(split) != a.get(split):
                    then = b[split]["path"] if split in b else "no list"
                    now = a[split]["path"] if split in a else "no list"
                    if then == now:
                        return f"{flag} {split}: {now} changed since the build"
                    return f"{flag} {split}: built from {then}, asked for {now}"
        return f"{flag}: built from {_show(key, b)}, asked for {_show(key, a)}"
    return None


def check_record(final: Path, name: str, config: str, options: dict) -> None:
    """Raise :class:`StaleDatasetError` unless the build in ``final`` used ``options``."""
    record = read_record(final)
    where = f"{name}/{config}"
    if record is None or "options" not in record:
        raise StaleDatasetError(
            f"{where} in {final} has no record of what it was built from; "
            "rebuild it from the inputs given with `ailut build-dataset ... --force`"
        )
    diff = difference(record["options"], describe_options(options))
    if diff is not None:
        raise StaleDatasetError(
            f"{where} is already built from other inputs ({diff}); rebuild it with "
            "`ailut build-dataset ... --force`"
        )
