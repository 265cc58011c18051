"""The ``pairs`` dataset (your own before/after folders) and build records (no stale builds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _photos import crop, retouch
from PIL import Image

from ailut_jax.cli import main as ailut_main
from ailut_jax.data import build_dataset, build_record, dataset_path, open_source
from ailut_jax.data._common import DatasetBuildError
from ailut_jax.data.pairs import hold_out
from ailut_jax.data.provenance import StaleDatasetError
from ailut_jax.imageio import EXIF_ORIENTATION, read_image_raw, write_image


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return exif.tobytes()


def make_folders(root: Path, n: int = 6) -> tuple[Path, Path]:
    """``n`` plain pairs ``p00``..: JPEG inputs, PNG targets."""
    before, after = root / "before", root / "after"
    before.mkdir(parents=True, exist_ok=True)
    after.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img = crop(k)
        Image.fromarray(img).save(before / f"p{k:02d}.jpg", quality=92)
        write_image(after / f"p{k:02d}.png", retouch(img))
    return before, after


def add_awkward_files(before: Path, after: Path) -> None:
    """A 16-bit TIFF input, an EXIF-rotated target, and every kind of unusable file."""
    img = crop(7)
    # 16-bit TIFF input with a JPEG target.
    wide = img.astype(np.uint16) * 257 + np.uint16(100)
    tifffile.imwrite(before / "deep.tif", wide, photometric="rgb")
    Image.fromarray(retouch(img)).save(after / "deep.jpg", quality=95)
    # The target is stored turned (56 wide, 40 high read as 40x56 only after EXIF 6).
    turned = np.rot90(retouch(img), k=1)  # orientation 6 turns it back clockwise
    write_image(before / "turned.png", img)
    Image.fromarray(np.ascontiguousarray(turned)).save(
        after / "turned.jpg", quality=95, exif=_exif(6)
    )
    # Unusable: no target, no input, corrupt, sizes differ, one name twice.
    write_image(before / "lonely_in.png", img)
    write_image(after / "lonely_out.png", img)
    (before / "broken.jpg").write_bytes(b"not a jpeg at all")
    write_image(after / "broken.png", img)
    write_image(before / "sizes.png", img)
    write_image(after / "sizes.png", crop(7, size=(30, 56)))
    write_image(before / "twice.png", img)
    Image.fromarray(img).save(before / "twice.jpg")
    write_image(after / "twice.png", img)
    (before / "notes.xmp").write_text("sidecar, ignored")


def _all(src) -> dict[str, dict]:
    return {src[i]["id"]: src[i] for i in range(len(src))}


def test_pairs_by_name_across_formats_16_bit_and_exif_skipping_bad_files(tmp_path, capsys):
    before, after = make_folders(tmp_path, n=6)
    add_awkward_files(before, after)
    data_dir = tmp_path / "tfds"
    status = ailut_main(
        [
            "build-dataset", "pairs", "--name", "mine", "--inputs", str(before),
            "--targets", str(after), "--test-fraction", "0.25", "--data-dir", str(data_dir),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1, err  # some files skipped, the rest built
    for name in ("lonely_in.png", "lonely_out.png", "broken.jpg", "sizes", "twice"):
        assert name in err, (name, err)
    assert "size mismatch" in err and "Traceback" not in err
    train = open_source("pairs", "train", config="mine", data_dir=data_dir)
    test = open_source("pairs", "test", config="mine", data_dir=data_dir)
    examples = {**_all(train), **_all(test)}
    assert sorted(examples) == sorted([f"p{k:02d}" for k in range(6)] + ["deep", "turned"])
    assert len(test) == 2  # round(0.25 * 8)
    assert train.input_bits == 16  # one 16-bit input makes the inputs 16-bit
    for pair_id, ex in examples.items():
        assert ex["input"].dtype == np.uint16 and ex["target"].dtype == np.uint8
        if pair_id == "deep":
            want_in = read_image_raw(before / "deep.tif")
            assert want_in.dtype == np.uint16
        else:
            stem = before / f"{pair_id}.{'png' if pair_id == 'turned' else 'jpg'}"
            want_in = read_image_raw(stem).astype(np.uint16) * 257  # widened exactly
        np.testing.assert_array_equal(ex["input"], want_in)
        target_file = next(after.glob(f"{pair_id}.*"))
        np.testing.assert_array_equal(ex["target"], read_image_raw(target_file))
    # The EXIF-rotated target was read turned back: same size as its input.
    assert examples["turned"]["target"].shape == (40, 56, 3)
    record = build_record("pairs", "mine", data_dir)
    assert record["input_bits"] == 16 and len(record["skipped"]) == 5
    assert record["splits"]["test"] == sorted(_all(test))


def test_nothing_usable_is_exit_status_2_and_leaves_nothing(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    write_image(before / "a.png", crop(0))
    write_image(after / "b.png", crop(0))
    data_dir = tmp_path / "tfds"
    args = ["build-dataset", "pairs", "--inputs", str(before), "--targets", str(after)]
    status = ailut_main([*args, "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert status == 2
    assert "no usable pair" in err and "a.png" in err and "b.png" in err
    assert "Traceback" not in err
    assert not dataset_path("pairs", "default", data_dir).exists()
    assert not any(p.name.startswith(".building") for p in data_dir.glob("*"))
    # A missing folder, a bad name: one line each, status 2.
    status = ailut_main([*args[:3], str(tmp_path / "nope"), *args[4:], "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert status == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    status = ailut_main([*args, "--name", "../evil", "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert status == 2 and "bad dataset name" in err


def test_16_bit_png_and_exif_png_input_and_full_size_option(tmp_path):
    before, after = make_folders(tmp_path, n=2)
    img = crop(3, size=(50, 70))
    deep = img.astype(np.uint16) * 257 + np.uint16(7)
    write_image(before / "big.png", deep)
    edit16 = retouch(img).astype(np.uint16) * 257 + np.uint16(120)  # a 16-bit target
    write_image(after / "big.png", edit16)
    data_dir = tmp_path / "tfds"
    build_dataset(
        "pairs", config="small", data_dir=data_dir, inputs=before, targets=after,
        max_short_edge=25, test_fraction=0.3,
    )  # fmt: skip
    examples = {
        **_all(open_source("pairs", "train", config="small", data_dir=data_dir)),
        **_all(open_source("pairs", "test", config="small", data_dir=data_dir)),
    }
    big = examples["big"]
    assert big["input"].dtype == np.uint16 and big["input"].shape == (25, 35, 3)
    assert big["target"].shape == (25, 35, 3) and big["target"].dtype == np.uint8
    # The 16-bit target is rounded to 8 bits (then shrunk): about the 8-bit edit.
    assert abs(big["target"].astype(float).mean() - retouch(img).mean()) < 1.0
    # The area filter keeps colours: the shrunk input averages the original.
    assert abs(big["input"].mean() - deep.mean()) < 0.01 * 65535


def test_held_out_split_is_deterministic_and_sized():
    names = [f"IMG_{k:04d}" for k in range(40)]
    train, test = hold_out(names, 0.2)
    assert len(test) == 8 and len(train) == 32 and not set(train) & set(test)
    # Same split whatever the order the files were listed in.
    assert hold_out(list(reversed(names)), 0.2) == (train, test)
    assert len(hold_out(names + [f"IMG_{k:04d}" for k in range(40, 50)], 0.2)[1]) == 10
    # Not simply the first or last names.
    assert test != sorted(names)[:8] and test != sorted(names)[-8:]
    # Always at least one pair on each side.
    assert [len(s) for s in hold_out(["a", "b"], 0.01)] == [1, 1]
    assert [len(s) for s in hold_out(["a", "b", "c"], 0.99)] == [1, 2]
    with pytest.raises(DatasetBuildError, match="at least 2"):
        hold_out(["only"], 0.2)
    with pytest.raises(DatasetBuildError, match="test-fraction"):
        hold_out(names, 1.0)


def test_builds_with_the_same_folders_split_the_same_and_names_coexist(tmp_path):
    before, after = make_folders(tmp_path / "a", n=8)
    b2, a2 = make_folders(tmp_path / "b", n=3)
    data_dir = tmp_path / "tfds"
    other_dir = tmp_path / "tfds2"
    build_dataset("pairs", config="one", data_dir=data_dir, inputs=before, targets=after)
    build_dataset("pairs", config="one", data_dir=other_dir, inputs=before, targets=after)
    build_dataset("pairs", config="two", data_dir=data_dir, inputs=b2, targets=a2)
    ids = [
        sorted(_all(open_source("pairs", "test", config="one", data_dir=d)))
        for d in (data_dir, other_dir)
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 2  # round(0.2 * 8)
    assert len(open_source("pairs", "train", config="one", data_dir=data_dir)) == 6
    two = _all(open_source("pairs", "train", config="two", data_dir=data_dir))
    assert len(two) == 2  # 3 pairs: 1 held out
    np.testing.assert_array_equal(
        two[sorted(two)[0]]["target"], read_image_raw(a2 / f"{sorted(two)[0]}.png")
    )


def test_split_files_choose_the_splits(tmp_path, capsys):
    before, after = make_folders(tmp_path, n=5)
    (tmp_path / "train.txt").write_text("p00\np01.jpg\np02\n")
    (tmp_path / "test.txt").write_text("# held out\np03\nmissing\n")
    data_dir = tmp_path / "tfds"
    status = ailut_main(
        [
            "build-dataset", "pairs", "--inputs", str(before), "--targets", str(after),
            "--split-file", str(tmp_path / "train.txt"), "--split-file", str(tmp_path / "test.txt"),
            "--data-dir", str(data_dir),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "missing" in err and "p04: in no split list" in err
    assert sorted(_all(open_source("pairs", "test", data_dir=data_dir))) == ["p03"]
    assert len(open_source("pairs", "train", data_dir=data_dir)) == 3


# ------------------------------------------------------------------ no stale builds


def test_same_inputs_reuse_the_build_other_inputs_stop_force_rebuilds(tmp_path, capsys):
    before, after = make_folders(tmp_path / "a", n=4)
    b2, a2 = make_folders(tmp_path / "b", n=4)
    data_dir = tmp_path / "tfds"
    path = build_dataset("pairs", config="x", data_dir=data_dir, inputs=before, targets=after)
    stamp = (path / "dataset_info.json").stat().st_mtime_ns
    record = json.loads((path / "ailut_build.json").read_text())
    assert record["builder_version"] == "1.0.0" and record["config"] == "x"
    assert record["options"]["inputs"]["path"] == str(before.resolve())
    assert record["options"]["test_fraction"] == 0.2
    # Same request: the build is reused, not redone.
    assert (
        build_dataset("pairs", config="x", data_dir=data_dir, inputs=before, targets=after) == path
    )
    assert (path / "dataset_info.json").stat().st_mtime_ns == stamp

    base = ["build-dataset", "pairs", "--name", "x", "--data-dir", str(data_dir)]
    capsys.readouterr()
    status = ailut_main([*base, "--inputs", str(before), "--targets", str(a2)])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert "--targets" in err and str(a2.resolve()) in err and "--force" in err
    status = ailut_main(
        [*base, "--inputs", str(before), "--targets", str(after), "--test-fraction", "0.5"]
    )
    err = capsys.readouterr().err
    assert status == 2 and "--test-fraction" in err and "0.5" in err
    # Files the build does not read (a sub-folder, a sidecar) change nothing.
    (before / "rejects").mkdir()
    write_image(before / "rejects" / "p09.png", crop(9))
    (before / "p00.xmp").write_text("sidecar")
    assert (
        build_dataset("pairs", config="x", data_dir=data_dir, inputs=before, targets=after) == path
    )
    # A folder whose files changed since the build is another input too.
    Image.fromarray(crop(9)).save(before / "p00.jpg", quality=50)
    with pytest.raises(StaleDatasetError, match="--inputs folder .* changed"):
        build_dataset("pairs", config="x", data_dir=data_dir, inputs=before, targets=after)
    with pytest.raises(StaleDatasetError, match="changed"):  # also when only opening
        open_source("pairs", "train", config="x", data_dir=data_dir, inputs=before, targets=after)
    # Opening without inputs reads what is built.
    assert len(open_source("pairs", "train", config="x", data_dir=data_dir)) == 3
    # --force rebuilds from the new inputs.
    status = ailut_main([*base, "--inputs", str(b2), "--targets", str(a2), "--force"])
    assert status == 0, capsys.readouterr().err
    rebuilt = build_record("pairs", "x", data_dir)
    assert rebuilt["options"]["targets"]["path"] == str(a2.resolve())
    assert not any(p.name.startswith(".building") for p in data_dir.iterdir())
    # A build from before records existed: kept when nothing is asked, else rebuilt on --force.
    (dataset_path("pairs", "x", data_dir) / "ailut_build.json").unlink()
    assert build_dataset("pairs", config="x", data_dir=data_dir) == path
    with pytest.raises(StaleDatasetError, match="no record of what it was built from"):
        build_dataset("pairs", config="x", data_dir=data_dir, inputs=b2, targets=a2)


def test_a_failed_build_leaves_nothing_and_keeps_the_previous_build(tmp_path, monkeypatch):
    import ailut_jax.data.pairs as pairs

    before, after = make_folders(tmp_path, n=4)
    data_dir = tmp_path / "tfds"
    path = build_dataset("pairs", config="keep", data_dir=data_dir, inputs=before, targets=after)
    old = sorted(_all(open_source("pairs", "train", config="keep", data_dir=data_dir)))
    real = pairs._stored
    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) > 2:
            raise OSError("disk full (simulated)")
        return real(*args)

    monkeypatch.setattr(pairs, "_stored", failing)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(
            "pairs", config="keep", data_dir=data_dir, inputs=before, targets=after, force=True
        )
    with pytest.raises(OSError, match="disk full"):
        build_dataset("pairs", config="new", data_dir=data_dir, inputs=before, targets=after)
    assert not dataset_path("pairs", "new", data_dir).exists()
    assert [p.name for p in data_dir.iterdir() if p.name.startswith(".")] == []
    assert sorted(_all(open_source("pairs", "train", config="keep", data_dir=data_dir))) == old
    assert (path / "ailut_build.json").is_file()


def test_other_datasets_record_their_inputs_and_the_trainer_follows_the_rule(tmp_path):
    from test_data_builders import make_fivek

    from ailut_jax.train import ConfigError
    from ailut_jax.train.config import base_config, validate_config
    from ailut_jax.train.loop import open_data

    root = make_fivek(tmp_path / "fivek")
    other = make_fivek(tmp_path / "fivek2", ids=("a0001", "a4501"))
    data_dir = tmp_path / "tfds"
    build_dataset("fivek", data_dir=data_dir, source=root)
    (tmp_path / "train.txt").write_text("a0001\na0002\n")
    with pytest.raises(StaleDatasetError, match="--split-file"):
        build_dataset(
            "fivek", data_dir=data_dir, source=root, split_files={"train": tmp_path / "train.txt"}
        )

    def config(**data):
        c = base_config()
        c.data.data_dir = str(data_dir)
        for k, v in data.items():
            c.data[k] = v
        return validate_config(c)

    # The trainer's automatic build: the same source opens, another one stops.
    train, test = open_data(config(source=str(root)))
    assert len(train) == 2 and len(test) == 1
    with pytest.raises(StaleDatasetError, match="--source: built from .*fivek, asked for .*fivek2"):
        open_data(config(source=str(other)))
    # No source: use what is built.
    assert len(open_data(config())[0]) == 2
    # pairs: the trainer never builds, it says how.
    c = base_config()
    c.data.name, c.data.config, c.data.data_dir = "pairs", "never_built", str(data_dir)
    with pytest.raises(ConfigError, match="ailut build-dataset pairs --name never_built"):
        open_data(validate_config(c))
    c.data.config = "../escape"
    with pytest.raises(ConfigError, match="config.data.config: pairs: bad dataset name"):
        validate_config(c)
    c.data.config, c.data.source = "mine", str(root)
    with pytest.raises(ConfigError, match="config.data.source: pairs datasets are built"):
        validate_config(c)


def test_configs_pairs_trains_then_enhances_and_exports_a_cube(tmp_path, capsys):
    """The three README commands on a tiny folder (two steps of configs/pairs.py)."""
    from test_train import load_config

    from ailut_jax.train import train

    before, after = make_folders(tmp_path, n=6)
    data_dir = tmp_path / "tfds"
    assert ailut_main(
        ["build-dataset", "pairs", "--name", "mine", "--inputs", str(before),
         "--targets", str(after), "--data-dir", str(data_dir)]
    ) == 0  # fmt: skip
    from ailut_jax.cli.train import PROJECT_CONFIGS, resolve_config_arg

    assert "pairs" in PROJECT_CONFIGS
    assert resolve_config_arg("pairs").endswith("configs/pairs.py")
    config = load_config("pairs", "mine")
    assert config.data.name == "pairs" and config.data.config == "mine"
    config.data.data_dir = str(data_dir)
    config.data.crop_size = 32
    config.model.n_vertices = 9
    config.model.input_size = 64
    config.steps, config.eval_every, config.checkpoint_every = 2, 0, 1
    config.progress = False
    workdir = tmp_path / "runs/mine"
    result = train(config, workdir)
    assert result["dataset"] == "pairs/mine" and result["test_images"] == 1
    assert [r["model"] for r in result["rows"]] == ["identity (input unchanged)", "teacher (gen 0)"]
    model = workdir / "model"
    out = tmp_path / "enhanced"
    assert (
        ailut_main(["enhance", "--checkpoint", str(model), "--out", str(out), "-q", str(before)])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == [f"p{k:02d}.png" for k in range(6)]
    cube = tmp_path / "look.cube"
    photo = str(before / "p00.jpg")
    assert ailut_main(["export-cube", "--checkpoint", str(model), photo, "--out", str(cube)]) == 0
    assert cube.read_text().count("\n") > 33**3
