"""MIT-Adobe FiveK pairs from a local export, in the layout the AdaInt authors used.

::

    SOURCE/input/JPG/480p/a0001.jpg                 sRGB inputs (8-bit)
    SOURCE/input/PNG/480p_16bits_XYZ_WB/a0001.png   XYZ inputs (16-bit), the ``xyz_*`` configs
    SOURCE/expertC/JPG/480p/a0001.jpg               targets, experts A..E

Splits come from split-list files (one id per line, like the original's ``train.txt`` /
``test.txt``) or, by default, by id: a0001-a4500 train, a4501-a5000 test.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import tensorflow_datasets as tfds

from ailut_jax.data._common import DatasetBuildError, Pair, PairBuilder, read_id_list

_DESCRIPTION = __doc__
DEFAULT_TRAIN_LAST_ID = 4500
_ID = re.compile(r"^a(\d{4})$")

_INPUT_DIRS = {
    "srgb": ("input/JPG/480p", ".jpg"),
    "xyz": ("input/PNG/480p_16bits_XYZ_WB", ".png"),
}


@dataclasses.dataclass
class FivekConfig(tfds.core.BuilderConfig):
    """``space``: "srgb" (8-bit JPEG inputs) or "xyz" (16-bit PNG); ``expert``: "A".."E"."""

    space: str = "srgb"
    expert: str = "C"

    @property
    def input_bits(self) -> int:
        return 16 if self.space == "xyz" else 8


def _configs() -> list[FivekConfig]:
    out = []
    for space in ("srgb", "xyz"):
        for expert in "CABDE":
            prefix = "" if space == "srgb" else "xyz_"
            out.append(
                FivekConfig(
                    name=f"{prefix}expert_{expert.lower()}",
                    description=f"{space} inputs, Expert {expert} targets",
                    space=space,
                    expert=expert,
                )
            )
    return out


def _ids_in(folder: Path, suffix: str) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.iterdir() if p.suffix.lower() == suffix and _ID.match(p.stem)}


def default_split(ids, train_last_id: int = DEFAULT_TRAIN_LAST_ID) -> dict[str, list[str]]:
    """The common FiveK split by id number: up to a4500 train, the rest test."""
    ids = sorted(ids)
    return {
        "train": [i for i in ids if int(i[1:]) <= train_last_id],
        "test": [i for i in ids if int(i[1:]) > train_last_id],
    }


class Fivek(PairBuilder):
    """MIT-Adobe FiveK (480p export), input -> one expert's retouch."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "expert_c"
    DESCRIPTION = _DESCRIPTION
    HOMEPAGE = "https://data.csail.mit.edu/graphics/fivek/"
    CITATION = (
        "@inproceedings{fivek, author={Bychkovsky, Vladimir and Paris, Sylvain and Chan, Eric "
        "and Durand, Fr{\\'e}do}, title={Learning Photographic Global Tonal Adjustment with a "
        "Database of Input / Output Image Pairs}, booktitle={CVPR}, year={2011}}"
    )

    def __init__(self, *, source: str | os.PathLike | None = None, split_files=None, **kwargs):
        """``source``: the FiveK root; ``split_files``: ``{split: path}`` of id lists."""
        super().__init__(**kwargs)
        self._source = Path(source) if source is not None else None
        self._split_files = dict(split_files or {})

    def _collect_pairs(self) -> dict[str, list[Pair]]:
        if self._source is None or not self._source.is_dir():
            raise DatasetBuildError(f"fivek needs --source, the FiveK root (got {self._source})")
        cfg = self.builder_config
        in_rel, in_suffix = _INPUT_DIRS[cfg.space]
        in_dir = self._source / in_rel
        out_dir = self._source / f"expert{cfg.expert}" / "JPG" / "480p"
        if self._split_files:
            split_ids = {name: read_id_list(path) for name, path in self._split_files.items()}
        else:
            found = _ids_in(in_dir, in_suffix) | _ids_in(out_dir, ".jpg")
            if not found:
                raise DatasetBuildError(
                    f"fivek: no aNNNN{in_suffix} inputs in {in_dir} and no targets in {out_dir}"
                )
            split_ids = default_split(found)
        return {
            name: [Pair(i, in_dir / f"{i}{in_suffix}", out_dir / f"{i}.jpg") for i in ids]
            for name, ids in split_ids.items()
        }
