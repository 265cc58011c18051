"""PPR10K portrait retouching pairs (360p export): 16-bit TIFF inputs, 8-bit targets a/b/c.

Two layouts are accepted under ``SOURCE``:

* the AdaInt one: ``source/1530_4.tif``, ``source_aug_6/1530_4_2.tif``,
  ``target_a/1530_4.tif`` (and ``target_b``, ``target_c``), with optional split lists
  ``train.txt`` / ``test.txt`` / ``train_aug.txt`` given by ``--split-file``;
* the official release: ``train/source``, ``train/target_a``, ..., ``val/source``, ...
  (``val`` becomes the ``test`` split).

Ids are ``GROUP_INDEX``; an augmented input ``GROUP_INDEX_K`` shares the target
``GROUP_INDEX``. Without split lists the flat layout is split by group as in the
original: groups 0-1355 train, 1356-1680 test. The ``*_aug`` configs train on the six
augmented renditions of each input (``source_aug_6``) and test on ``source``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import tensorflow_datasets as tfds

from ailut_jax.data._common import DatasetBuildError, Pair, PairBuilder, read_id_list

_DESCRIPTION = __doc__
FIRST_TEST_GROUP = 1356
_ID = re.compile(r"^(\d+)_(\d+)(?:_(\d+))?$")


@dataclasses.dataclass
class Ppr10kConfig(tfds.core.BuilderConfig):
    target: str = "a"
    augmented: bool = False
    input_bits: int = 16


def _configs() -> list[Ppr10kConfig]:
    return [
        Ppr10kConfig(
            name=f"target_{t}{'_aug' if aug else ''}",
            description=f"expert {t} targets{', six augmented inputs per photo' if aug else ''}",
            target=t,
            augmented=aug,
        )
        for aug in (False, True)
        for t in "abc"
    ]


def _target_id(input_id: str) -> str:
    """``1530_4_2`` (augmented rendition 2 of 1530_4) -> ``1530_4``."""
    return "_".join(input_id.split("_")[:2])


def _tif_ids(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(
        (p.stem for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff")),
        key=_sort_key,
    )


def _sort_key(image_id: str):
    m = _ID.match(image_id)
    return tuple(int(g) for g in m.groups() if g is not None) if m else (1 << 30, image_id)


def _find(folder: Path, image_id: str) -> Path:
    for suffix in (".tif", ".tiff"):
        if (folder / f"{image_id}{suffix}").exists():
            return folder / f"{image_id}{suffix}"
    return folder / f"{image_id}.tif"


class Ppr10k(PairBuilder):
    """PPR10K (360p), 16-bit input -> expert a/b/c retouch."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = _configs()
    DEFAULT_CONFIG_NAME = "target_a"
    DESCRIPTION = _DESCRIPTION
    HOMEPAGE = "https://github.com/csjliang/PPR10K"
    CITATION = (
        "@inproceedings{ppr10k, author={Liang, Jie and Zeng, Hui and Cui, Miaomiao and Xie, "
        "Xuansong and Zhang, Lei}, title={PPR10K: A Large-Scale Portrait Photo Retouching "
        "Dataset with Human-Region Mask and Group-Level Consistency}, booktitle={CVPR}, "
        "year={2021}}"
    )

    def __init__(self, *, source: str | os.PathLike | None = None, split_files=None, **kwargs):
        super().__init__(**kwargs)
        self._source = Path(source) if source is not None else None
        self._split_files = dict(split_files or {})

    def _collect_pairs(self) -> dict[str, list[Pair]]:
        root = self._source
        if root is None or not root.is_dir():
            raise DatasetBuildError(f"ppr10k needs --source, the PPR10K root (got {root})")
        cfg = self.builder_config
        train_in = "source_aug_6" if cfg.augmented else "source"
        target = f"target_{cfg.target}"
        # split -> (input folder, target folder, ids or None = all inputs, keep test groups?)
        if (root / "train").is_dir() and (root / "val").is_dir():  # official release layout
            if self._split_files:
                raise DatasetBuildError(
                    "ppr10k: split files apply to the flat layout; "
                    f"{root} has train/ and val/ folders"
                )
            plan = {
                "train": (root / "train" / train_in, root / "train" / target, None, None),
                "test": (root / "val" / "source", root / "val" / target, None, None),
            }
        elif self._split_files:
            plan = {
                name: (
                    root / (train_in if name == "train" else "source"),
                    root / target,
                    read_id_list(path),
                    None,
                )
                for name, path in self._split_files.items()
            }
        else:
            plan = {
                "train": (root / train_in, root / target, None, False),
                "test": (root / "source", root / target, None, True),
            }
        splits: dict[str, list[Pair]] = {}
        for name, (in_dir, out_dir, ids, test_groups) in plan.items():
            if ids is None:
                ids = _tif_ids(in_dir)
                if not ids:
                    raise DatasetBuildError(f"ppr10k: no .tif inputs in {in_dir}")
                if test_groups is not None:
                    ids = [i for i in ids if _is_test_group(i) == test_groups]
            splits[name] = [Pair(i, _find(in_dir, i), _find(out_dir, _target_id(i))) for i in ids]
        return splits


def _is_test_group(image_id: str) -> bool:
    m = _ID.match(image_id)
    return bool(m) and int(m.group(1)) >= FIRST_TEST_GROUP
