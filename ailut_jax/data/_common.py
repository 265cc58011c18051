"""Pieces shared by the paired-image TFDS builders: pair checks, storage, the base class.

Every builder stores examples ``{"input": image, "target": image, "id": str}`` in
ArrayRecord files (no TensorFlow is needed to write or read them). Images are decoded
here with :func:`ailut_jax.imageio.read_image_raw`, the project's reference decoder.
A file's original bytes are stored when TFDS's own decoder (OpenCV) reproduces that
decode exactly; otherwise (an EXIF-rotated JPEG, an odd TIFF) a lossless PNG of the
reference decode is stored. Either way the data read back equals
``read_image_raw(path)`` pixel for pixel.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from ailut_jax.imageio import ImageReadError, read_image_raw

# PNG settings for re-encoded images: level 1 with the RLE strategy encodes a 480p photo
# about 1.5x faster than OpenCV's default (level 3) and, on photos, no larger.


class DatasetBuildError(ValueError):
    """A dataset could not be built; the message lists every offending file."""


@dataclasses.dataclass(frozen=True)
class Pair:
    """One example to be built: its id and the two files it is made from."""

    id: str
    input_path: Path
    target_path: Path


def image_feature(bits: int) -> tfds.features.Image:
    return tfds.features.Image(shape=(None, None, 3), dtype=np.uint16 if bits == 16 else np.uint8)


def pair_features(input_bits: int) -> tfds.features.FeaturesDict:
    """Features of one example: 8/16-bit input, 8-bit target, string id."""
    return tfds.features.FeaturesDict(
        {"input": image_feature(input_bits), "target": image_feature(8), "id": tfds.features.Text()}
    )


def encode_png(arr: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB uint8/uint16 array."""
    import cv2

    params = [
        cv2.IMWRITE_PNG_COMPRESSION,
        1,
        cv2.IMWRITE_PNG_STRATEGY,
        cv2.IMWRITE_PNG_STRATEGY_RLE,
    ]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr[..., ::-1]), params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {arr.shape} {arr.dtype} image as PNG")
    return buf.tobytes()


def stored_bytes(path: Path, feature: tfds.features.Image) -> bytes:
    """Bytes to store for ``path`` such that the feature decodes them to the reference pixels."""
    raw = Path(path).read_bytes()
    reference = read_image_raw(path)
    try:
        decoded = feature.decode_example_np(raw)
    except Exception:  # OpenCV can't read it (WebP without codec, odd TIFF...): re-encode
        decoded = None
    if (
        decoded is not None
        and decoded.shape == reference.shape
        and decoded.dtype == reference.dtype
        and np.array_equal(decoded, reference)
    ):
        return raw
    return encode_png(reference)


def _check_pair(pair: Pair, input_bits: int) -> list[str]:
    problems = []
    shapes = {}
    for role, path, bits in (
        ("input", pair.input_path, input_bits),
        ("target", pair.target_path, 8),
    ):
        if not Path(path).is_file():
            problems.append(f"{pair.id}: missing {role} {path}")
            continue
        try:
            arr = read_image_raw(path)
        except ImageReadError as exc:
            problems.append(f"{pair.id}: corrupt {role}: {exc}")
            continue
        got_bits = 16 if arr.dtype == np.uint16 else 8
        if got_bits != bits:
            problems.append(f"{pair.id}: {role} {path} is {got_bits}-bit, expected {bits}-bit")
            continue
        shapes[role] = arr.shape
    if len(shapes) == 2 and shapes["input"] != shapes["target"]:
        problems.append(
            f"{pair.id}: size mismatch: input {pair.input_path} is "
            f"{shapes['input'][1]}x{shapes['input'][0]}, target {pair.target_path} is "
            f"{shapes['target'][1]}x{shapes['target'][0]}"
        )
    return problems


def validate_pairs(
    splits: Mapping[str, Sequence[Pair]], input_bits: int, *, what: str, max_listed: int = 50
) -> None:
    """Decode every file of every pair; raise one :class:`DatasetBuildError` listing all problems.

    Checks: both files exist, decode as RGB, have the expected bit depth (input
    ``input_bits``, target 8) and the same height and width; every split is non-empty.
    """
    problems = [f"split '{name}' has no pairs" for name, pairs in splits.items() if not pairs]
    all_pairs = [p for pairs in splits.values() for p in pairs]
    # Decoders release the GIL, so threads overlap the decoding of thousands of files.
    workers = min(8, (os.cpu_count() or 1) + 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for found in pool.map(lambda p: _check_pair(p, input_bits), all_pairs):
            problems.extend(found)
    if problems:
        listed = "\n  ".join(problems[:max_listed])
        if len(problems) > max_listed:
            listed += f"\n  ... and {len(problems) - max_listed} more"
        raise DatasetBuildError(
            f"cannot build {what}: {len(problems)} problem(s) in the source files:\n  {listed}"
        )


def read_id_list(path: str | os.PathLike) -> list[str]:
    """Ids from a split-list file: one per line, blank lines and ``#`` comments ignored.

    A trailing image extension (``a0001.jpg``) is dropped, so file lists work too.
    """
    ids = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        stem, ext = os.path.splitext(line)
        ids.append(stem if ext.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff") else line)
    return ids


def parse_split_files(specs: Iterable[str] | None) -> dict[str, Path]:
    """``["train=a.txt", "test.txt"]`` -> ``{"train": a.txt, "test": test.txt}``.

    Without ``SPLIT=`` the split is named after the file (``train.txt`` -> ``train``).
    """
    out: dict[str, Path] = {}
    for spec in specs or ():
        name, sep, file = str(spec).partition("=")
        if not sep:
            file, name = spec, Path(spec).stem
        if not Path(file).is_file():
            raise DatasetBuildError(f"split file {file} does not exist")
        out[name] = Path(file)
    return out


class PairBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the paired builders: subclasses say where the pairs are (``_collect_pairs``)."""

    DESCRIPTION = ""
    HOMEPAGE = ""
    CITATION = ""

    def _input_bits(self) -> int:
        return getattr(self.builder_config, "input_bits", 8)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=pair_features(self._input_bits()),
            supervised_keys=("input", "target"),
            # Keep the examples in generation (id) order: evaluation reads them in order.
            disable_shuffling=True,
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
        )

    def _collect_pairs(self) -> dict[str, list[Pair]]:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        del dl_manager
        splits = self._collect_pairs()
        validate_pairs(splits, self._input_bits(), what=f"{self.name}/{self.builder_config.name}")
        return {name: self._generate_examples(pairs) for name, pairs in splits.items()}

    def _generate_examples(self, pairs: Sequence[Pair]) -> Iterator[tuple[str, dict]]:
        in_feature = image_feature(self._input_bits())
        out_feature = image_feature(8)
        for pair in pairs:
            yield (
                pair.id,
                {
                    "input": stored_bytes(pair.input_path, in_feature),
                    "target": stored_bytes(pair.target_path, out_feature),
                    "id": pair.id,
                },
            )
