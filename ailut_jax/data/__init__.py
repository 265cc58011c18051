"""Paired-image datasets (TFDS builders, ArrayRecord files, no TensorFlow) and their loaders.

Datasets: ``fivek`` (configs ``expert_a``..``expert_e``, ``xyz_expert_*``), ``ppr10k``
(``target_a``.., ``target_a_aug``..), the built-in ``ailut_demo`` (``retouch``,
``cube``) and ``pairs`` (your own before/after folders; one config per name you choose).
Build with ``ailut build-dataset NAME`` or :func:`build_dataset`; read with
:func:`open_source`, which gives random access to examples
``{"input": uint8|uint16 (H, W, 3), "target": uint8 (H, W, 3), "id": str}``.
Batches for training come from :mod:`ailut_jax.data.pipeline`.

Datasets live under :func:`default_data_dir`: ``$AILUT_DATA_DIR`` if set, else
``$XDG_CACHE_HOME/ailut_jax/tensorflow_datasets`` (``~/.cache/...``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

# name -> (module, builder class name)
DATASETS: dict[str, tuple[str, str]] = {
    "fivek": ("ailut_jax.data.fivek", "Fivek"),
    "ppr10k": ("ailut_jax.data.ppr10k", "Ppr10k"),
    "ailut_demo": ("ailut_jax.data.demo", "AilutDemo"),
    "pairs": ("ailut_jax.data.pairs", "Pairs"),
}
DATA_DIR_ENV = "AILUT_DATA_DIR"


def default_data_dir() -> Path:
    """``$AILUT_DATA_DIR``, else ``$XDG_CACHE_HOME/ailut_jax/tensorflow_datasets``."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ailut_jax" / "tensorflow_datasets"


def builder_class(name: str):
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    module, cls = DATASETS[name]
    return getattr(importlib.import_module(module), cls)


def _resolve(name: str, config: str | None, data_dir):
    cls = builder_class(name)
    config = config or cls.DEFAULT_CONFIG_NAME
    if getattr(cls, "ANY_CONFIG_NAME", False):
        cls.check_config_name(config)
    elif config not in cls.builder_configs:
        raise ValueError(
            f"unknown config {config!r} of {name}; known: {', '.join(cls.builder_configs)}"
        )
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    final = data_dir / name / config / str(cls.VERSION)
    return cls, config, data_dir, final


def dataset_path(name: str, config: str | None = None, data_dir=None) -> Path:
    """Where ``name/config`` is (or would be) stored."""
    return _resolve(name, config, data_dir)[3]


def is_built(name: str, config: str | None = None, data_dir=None) -> bool:
    return (dataset_path(name, config, data_dir) / "dataset_info.json").is_file()


def _options(cls, builder_kwargs: dict) -> dict:
    """The builder's keyword options, defaults filled in, updated with ``builder_kwargs``."""
    params = inspect.signature(cls.__init__).parameters.values()
    options = {
        p.name: p.default
        for p in params
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "config"
    }
    options.update(builder_kwargs)
    return options


def build_dataset(
    name: str, *, config: str | None = None, data_dir=None, force: bool = False, **builder_kwargs
) -> Path:
    """Build ``name/config`` under ``data_dir`` and return its folder.

    ``builder_kwargs`` go to the builder: ``source`` (the dataset's root folder; the
    demo's optional folder of extra photos), ``split_files`` (``{split: id list path}``,
    fivek / ppr10k / pairs), ``cube_file`` (demo ``cube`` config), ``inputs`` / ``targets``
    / ``test_fraction`` (pairs). The build records what it was made from
    (``ailut_build.json``, see :mod:`ailut_jax.data.provenance`). An existing build made
    from the same inputs is kept unless ``force``; one made from other inputs raises
    :class:`~ailut_jax.data.provenance.StaleDatasetError` (naming the difference) unless
    ``force``. The build happens in a temporary folder beside the final one and is moved
    into place only when complete: a failed build (e.g.
    :class:`~ailut_jax.data._common.DatasetBuildError` listing bad files) leaves nothing.
    """
    from ailut_jax.data import provenance

    cls, config, data_dir, final = _resolve(name, config, data_dir)
    options = _options(cls, builder_kwargs)
    if (final / "dataset_info.json").is_file() and not force:
        # A build from before builds were recorded is trusted only when no input is named.
        if builder_kwargs or provenance.read_record(final) is not None:
            provenance.check_record(final, name, config, options)
        return final
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".building-{name}-", dir=data_dir))
    try:
        # Fingerprint the inputs before reading them: a file changed during the build
        # then makes the next request stop rather than trust this build.
        record = provenance.make_record(name, config, str(cls.VERSION), options)
        builder = cls(
            data_dir=tmp_root, config=config, file_format="array_record", **builder_kwargs
        )
        if hasattr(builder, "build_notes"):
            record.update(builder.build_notes())
        # TFDS prints where it prepared the data, i.e. the temporary folder: keep quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(download_dir=tmp_root / "downloads")
        built = tmp_root / name / config / str(cls.VERSION)
        provenance.write_record(built, record)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            old = tmp_root / "replaced"
            os.replace(final, old)
        os.replace(built, final)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return final


def build_record(name: str, config: str | None = None, data_dir=None) -> dict | None:
    """What ``name/config`` was built from (``ailut_build.json``), or None."""
    from ailut_jax.data import provenance

    return provenance.read_record(dataset_path(name, config, data_dir))


class PairSource:
    """Random access to built examples as numpy: ``{"input", "target", "id"}``.

    ``input`` is uint8 or uint16 ``(H, W, 3)`` (divide by :attr:`input_scale`),
    ``target`` uint8 ``(H, W, 3)`` (divide by :attr:`target_scale` = 255), ``id`` a str.
    Picklable, so grain can read it in worker processes.
    """

    def __init__(self, tfds_source, *, name: str, split: str, input_bits: int):
        self._source = tfds_source
        self.name = name
        self.split = split
        self.input_bits = input_bits
        self.input_scale = 65535.0 if input_bits == 16 else 255.0
        self.target_scale = 255.0

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict:
        record = self._source[index]
        example_id = record["id"]
        if isinstance(example_id, bytes):
            example_id = example_id.decode()
        return {"input": record["input"], "target": record["target"], "id": str(example_id)}

    def __repr__(self) -> str:
        return f"PairSource({self.name}, split={self.split!r}, {len(self)} pairs)"


def open_source(
    name: str = "ailut_demo",
    split: str = "train",
    *,
    config: str | None = None,
    data_dir=None,
    build: bool | None = None,
    **builder_kwargs,
) -> PairSource:
    """Open one split of a built dataset as a :class:`PairSource`.

    ``build``: build first when missing. Defaults to True for ``ailut_demo`` (built offline
    in well under a minute) and False for the others, which need ``source=``. When the
    dataset is built and ``builder_kwargs`` are given, they must be the ones it was built
    from (else :class:`~ailut_jax.data.provenance.StaleDatasetError`).
    """
    cls, config, data_dir, final = _resolve(name, config, data_dir)
    if (final / "dataset_info.json").is_file() and builder_kwargs:
        from ailut_jax.data import provenance

        provenance.check_record(final, name, config, _options(cls, builder_kwargs))
    if not (final / "dataset_info.json").is_file():
        if build if build is not None else name == "ailut_demo":
            build_dataset(name, config=config, data_dir=data_dir, **builder_kwargs)
        else:
            how = (
                f"pairs --name {config} --inputs DIR --targets DIR"
                if name == "pairs"
                else f"{name} --config {config} --source DIR"
            )
            raise FileNotFoundError(
                f"{name}/{config} is not built under {data_dir}; run "
                f"`ailut build-dataset {how} --data-dir {data_dir}`"
            )
    builder = cls(data_dir=data_dir, config=config)
    if split not in builder.info.splits:
        have = list(builder.info.splits)
        raise ValueError(f"{name}/{config} has no split {split!r}; it has {have}")
    input_dtype = np.dtype(builder.info.features["input"].np_dtype)
    bits = 16 if input_dtype == np.uint16 else 8
    return PairSource(builder.as_data_source(split=split), name=name, split=split, input_bits=bits)
