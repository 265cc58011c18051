"""``pairs``: your own before/after photos as a dataset, to learn your editing style.

::

    ailut build-dataset pairs --inputs before/ --targets after/ --name mystyle

Files are paired by name without extension (``before/IMG_0001.tif`` with
``after/IMG_0001.jpg``), whatever the formats (JPEG, PNG, TIFF, BMP, WebP; 8 or 16 bit).
Each file is decoded with :func:`ailut_jax.imageio.read_image_raw`, so EXIF orientation is
applied before anything else; a pair's two images must then have the same width and
height. Files that cannot be used (no partner, undecodable, sizes that differ, two
files with the same name in one folder) are skipped and listed by name.

Both images of a pair are shrunk (area filter) to a short edge of at most 480 pixels by
default (``--max-short-edge``, 0 keeps the full size): training takes crops of a few
hundred pixels, and the learnt LUT applies at any resolution.

Inputs are stored at 8 bit, or at 16 bit as soon as one input is 16-bit (8-bit inputs
are then widened exactly, ``x * 257``); targets are stored at 8 bit (16-bit targets are
rounded), as everywhere in this project.

The test split is held out deterministically: the pairs are ranked by a hash of their
name and the first ``round(test_fraction * n)`` (at least one) are the test split, so the
split depends only on the names, not on file order or the machine. Or give split lists
(``--split-file train=train.txt --split-file test=test.txt``, one name per line).

Every dataset has its own builder config, named by ``--name``: several pair datasets
live side by side under ``pairs/NAME/``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from ailut_jax.data._common import (
    DatasetBuildError,
    Pair,
    PairBuilder,
    encode_png,
    read_id_list,
)
from ailut_jax.imageio import IMAGE_SUFFIXES, ImageReadError, read_image_raw

_DESCRIPTION = __doc__
DEFAULT_NAME = "default"
DEFAULT_TEST_FRACTION = 0.2
# Photos are shrunk to this short edge (as FiveK's 480p export used for training);
# a global 3D LUT learnt at 480p applies at any resolution.
DEFAULT_MAX_SHORT_EDGE = 480
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Written next to dataset_info.json by build_dataset; the pairs builder reads the input
# bit depth back from it when it opens a built dataset.
BUILD_RECORD = "ailut_build.json"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise DatasetBuildError(
            f"pairs: bad dataset name {name!r}: use letters, digits, '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


@dataclasses.dataclass
class PairsConfig(tfds.core.BuilderConfig):
    input_bits: int = 8


def _stable_rank(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def hold_out(names: Sequence[str], test_fraction: float) -> tuple[list[str], list[str]]:
    """``(train, test)``, sorted: the ``round(f * n)`` (>= 1) names of lowest hash are test."""
    if not 0.0 < test_fraction < 1.0:
        raise DatasetBuildError(f"pairs: --test-fraction must be in (0, 1), got {test_fraction}")
    if len(names) < 2:
        raise DatasetBuildError(
            f"pairs: {len(names)} usable pair(s); at least 2 are needed (one to train, one to test)"
        )
    n_test = min(len(names) - 1, max(1, round(test_fraction * len(names))))
    ranked = sorted(names, key=_stable_rank)
    test = set(ranked[:n_test])
    return sorted(n for n in names if n not in test), sorted(test)


def _images_by_stem(
    folder: Path, role: str, problems: list[str], ambiguous: set[str]
) -> dict[str, Path]:
    """Image files directly in ``folder`` by stem; a stem used twice is reported, dropped
    and added to ``ambiguous``."""
    if not folder.is_dir():
        raise DatasetBuildError(f"pairs: {role} folder {folder} does not exist")
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue  # hidden files, sidecars (.xmp), sub-folders
        found.setdefault(p.stem, []).append(p)
    out = {}
    for stem, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            problems.append(f"{stem}: several {role} files with this name ({names}), skipped")
            ambiguous.add(stem)
        else:
            out[stem] = paths[0]
    return out


def _inspect(path: Path) -> tuple[tuple[int, int], int]:
    """``((height, width), bits)`` of the decoded (oriented) image."""
    arr = read_image_raw(path)
    return arr.shape[:2], 16 if arr.dtype == np.uint16 else 8


@dataclasses.dataclass
class Scan:
    """What a look at the two folders found: usable pairs by split, problems, bit depth."""

    splits: dict[str, list[Pair]]
    problems: list[str]
    input_bits: int
    total: int  # pairs and lone files considered


def scan_folders(
    inputs: Path,
    targets: Path,
    *,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    split_files: dict[str, Path] | None = None,
) -> Scan:
    """Pair the two folders' files, decode each once, and split the usable pairs."""
    problems: list[str] = []
    ambiguous: set[str] = set()
    ins = _images_by_stem(Path(inputs), "input", problems, ambiguous)
    outs = _images_by_stem(Path(targets), "target", problems, ambiguous)
    if not ins and not outs:
        raise DatasetBuildError(
            f"pairs: no images ({', '.join(IMAGE_SUFFIXES)}) in {inputs} or {targets}"
        )
    for stem in sorted(set(ins) - set(outs) - ambiguous):
        problems.append(f"{ins[stem].name}: input without a target in {targets}, skipped")
    for stem in sorted(set(outs) - set(ins) - ambiguous):
        problems.append(f"{outs[stem].name}: target without an input in {inputs}, skipped")
    stems = sorted((set(ins) & set(outs)) - ambiguous)

    def check(stem):
        info = {}
        for role, path in (("input", ins[stem]), ("target", outs[stem])):
            try:
                info[role] = _inspect(path)
            except ImageReadError as exc:
                return stem, None, f"{path.name}: unreadable {role} ({exc}), pair skipped"
        (hi, wi), (ht, wt) = info["input"][0], info["target"][0]
        if (hi, wi) != (ht, wt):
            return (
                stem,
                None,
                f"{stem}: size mismatch after EXIF orientation: input {ins[stem].name} is "
                f"{wi}x{hi}, target {outs[stem].name} is {wt}x{ht}, pair skipped",
            )
        return stem, info["input"][1], None

    good: dict[str, int] = {}
    workers = min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for stem, bits, problem in pool.map(check, stems):
            if problem:
                problems.append(problem)
            else:
                good[stem] = bits
    total = len(set(ins) | set(outs))
    if not good:
        listed = "\n  ".join(problems)
        raise DatasetBuildError(f"pairs: no usable pair in {inputs} and {targets}:\n  {listed}")

    if split_files:
        split_names = {name: read_id_list(path) for name, path in split_files.items()}
        listed = set()
        for split, names in split_names.items():
            for n in names:
                if n not in good:
                    why = "skipped above" if n in ins or n in outs else "no such pair"
                    problems.append(f"{n}: listed in split '{split}' ({why}), left out")
            listed.update(names)
        for n in sorted(set(good) - listed):
            problems.append(f"{n}: in no split list, left out")
        split_names = {s: sorted(n for n in names if n in good) for s, names in split_names.items()}
        empty = [s for s, names in split_names.items() if not names]
        if empty:
            raise DatasetBuildError(f"pairs: split(s) {', '.join(empty)} would have no usable pair")
        if "train" not in split_names:
            raise DatasetBuildError("pairs: the split lists need a 'train' split")
    else:
        train, test = hold_out(sorted(good), test_fraction)
        split_names = {"train": train, "test": test}
    bits = 16 if any(good[n] == 16 for names in split_names.values() for n in names) else 8
    splits = {s: [Pair(n, ins[n], outs[n]) for n in names] for s, names in split_names.items()}
    return Scan(splits=splits, problems=problems, input_bits=bits, total=total)


def shrink(arr: np.ndarray, max_short_edge: int) -> np.ndarray:
    """``arr`` resized (area filter) to a short edge of ``max_short_edge`` if longer."""
    import cv2

    h, w = arr.shape[:2]
    if not max_short_edge or min(h, w) <= max_short_edge:
        return arr
    scale = max_short_edge / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def _stored(path: Path, bits: int, max_short_edge: int) -> bytes:
    """PNG bytes of ``path`` decoded, oriented, brought to ``bits`` and shrunk."""
    arr = read_image_raw(path)
    if bits == 16 and arr.dtype == np.uint8:
        arr = arr.astype(np.uint16) * np.uint16(257)
    elif bits == 8 and arr.dtype == np.uint16:
        arr = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return encode_png(shrink(arr, max_short_edge))


def recorded_input_bits(version_dir: Path) -> int | None:
    try:
        return int(json.loads((version_dir / BUILD_RECORD).read_text())["input_bits"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Pairs(PairBuilder):
    """Before/after photo pairs from two folders; one builder config per dataset name."""

    VERSION = tfds.core.Version("1.0.0")
    # No fixed configs: every name is made into a PairsConfig when the builder is created.
    BUILDER_CONFIGS: list[PairsConfig] = []
    DEFAULT_CONFIG_NAME = DEFAULT_NAME
    # Any valid name is a config of its own (see ailut_jax.data._resolve).
    ANY_CONFIG_NAME = True
    DESCRIPTION = _DESCRIPTION

    @staticmethod
    def check_config_name(name: str) -> str:
        return check_name(name)

    def __init__(
        self,
        *,
        config=None,
        inputs: str | os.PathLike | None = None,
        targets: str | os.PathLike | None = None,
        test_fraction: float = DEFAULT_TEST_FRACTION,
        split_files=None,
        max_short_edge: int = DEFAULT_MAX_SHORT_EDGE,
        **kwargs,
    ):
        """``inputs`` / ``targets``: the two folders (to build); ``config``: the name."""
        if max_short_edge < 0:
            raise DatasetBuildError(f"pairs: --max-short-edge must be >= 0, got {max_short_edge}")
        self._max_short_edge = int(max_short_edge)
        self._inputs = Path(inputs) if inputs is not None else None
        self._targets = Path(targets) if targets is not None else None
        self._test_fraction = float(test_fraction)
        self._split_files = dict(split_files or {})
        self._scan: Scan | None = None
        name = config if isinstance(config, str) else DEFAULT_NAME
        if config is None or isinstance(config, str):
            check_name(name)
            bits = 8
            if self._inputs is not None:
                bits = self.scan().input_bits
            elif kwargs.get("data_dir") is not None:
                version_dir = Path(kwargs["data_dir"]) / "pairs" / name / str(self.VERSION)
                bits = recorded_input_bits(version_dir) or 8
            config = PairsConfig(name=name, description=f"pairs named {name!r}", input_bits=bits)
        # TFDS warns "Using custom data configuration" for every name: that is the design.
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.ERROR)
        try:
            super().__init__(config=config, **kwargs)
        finally:
            absl_logging.set_verbosity(verbosity)

    def scan(self) -> Scan:
        if self._scan is None:
            if self._inputs is None or self._targets is None:
                raise DatasetBuildError("pairs needs --inputs DIR and --targets DIR")
            self._scan = scan_folders(
                self._inputs,
                self._targets,
                test_fraction=self._test_fraction,
                split_files=self._split_files,
            )
        return self._scan

    def build_notes(self) -> dict:
        """Extra facts for the build record: skipped files, the bit depth."""
        scan = self.scan()
        return {
            "input_bits": scan.input_bits,
            "skipped": scan.problems,
            "considered": scan.total,
            "splits": {s: [p.id for p in pairs] for s, pairs in scan.splits.items()},
        }

    def _split_generators(self, dl_manager):
        del dl_manager
        return {name: self._generate(pairs) for name, pairs in self.scan().splits.items()}

    def _generate(self, pairs: Sequence[Pair]) -> Iterator[tuple[str, dict]]:
        bits = self._input_bits()

        def make(pair: Pair):
            return pair.id, {
                "input": _stored(pair.input_path, bits, self._max_short_edge),
                "target": _stored(pair.target_path, 8, self._max_short_edge),
                "id": pair.id,
            }

        with concurrent.futures.ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
            yield from pool.map(make, pairs)
