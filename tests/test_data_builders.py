"""FiveK / PPR10K builders: tiny folders of real photo crops, built and read back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from ailut_jax.cli import main as ailut_main
from ailut_jax.data import build_dataset, dataset_path, is_built, open_source
from ailut_jax.data._common import DatasetBuildError
from ailut_jax.imageio import read_image_raw, write_image

PHOTOS = {
    "astronaut": skimage.data.astronaut,
    "coffee": skimage.data.coffee,
    "chelsea": skimage.data.chelsea,
    "rocket": skimage.data.rocket,
}


def _crop(name: str, i: int = 0, size=(40, 56)) -> np.ndarray:
    img = PHOTOS[name]()
    y, x = 30 + 7 * i, 50 + 11 * i
    return np.ascontiguousarray(img[y : y + size[0], x : x + size[1]])


def _retouched(img: np.ndarray) -> np.ndarray:
    """A stand-in 'expert' edit: brighter, warmer."""
    f = (img / 255.0) ** 0.8 * np.array([1.0, 0.97, 0.9])
    return np.rint(np.clip(f, 0, 1) * 255).astype(np.uint8)


def _to16(img8: np.ndarray) -> np.ndarray:
    return (img8.astype(np.uint16) * 257 + np.arange(img8.size).reshape(img8.shape) % 200).astype(
        np.uint16
    )


def _save_jpeg(path: Path, img: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=90, **kwargs)


def make_fivek(root: Path, ids=("a0001", "a0002", "a4501"), xyz=False) -> Path:
    names = list(PHOTOS)
    for k, image_id in enumerate(ids):
        img = _crop(names[k % len(names)], k)
        _save_jpeg(root / "input/JPG/480p" / f"{image_id}.jpg", img)
        _save_jpeg(root / "expertC/JPG/480p" / f"{image_id}.jpg", _retouched(img))
        if xyz:
            (root / "input/PNG/480p_16bits_XYZ_WB").mkdir(parents=True, exist_ok=True)
            write_image(root / "input/PNG/480p_16bits_XYZ_WB" / f"{image_id}.png", _to16(img))
    return root


def _nothing_left(data_dir: Path) -> bool:
    return not data_dir.exists() or not any(
        p for p in data_dir.rglob("*") if p.is_file() or p.name.startswith(".building")
    )


def _assert_split_exact(src, expect: dict[str, tuple[Path, Path]]) -> None:
    assert len(src) == len(expect)
    seen = set()
    for i in range(len(src)):
        ex = src[i]
        in_path, out_path = expect[ex["id"]]
        want_in, want_out = read_image_raw(in_path), read_image_raw(out_path)
        assert ex["input"].dtype == want_in.dtype and ex["target"].dtype == np.uint8
        np.testing.assert_array_equal(ex["input"], want_in)
        np.testing.assert_array_equal(ex["target"], want_out)
        seen.add(ex["id"])
    assert seen == set(expect)


def test_fivek_default_split_reads_back_exactly(tmp_path):
    root = make_fivek(tmp_path / "FiveK")
    data_dir = tmp_path / "tfds"
    path = build_dataset("fivek", data_dir=data_dir, source=root)
    assert path == dataset_path("fivek", data_dir=data_dir) and is_built("fivek", data_dir=data_dir)
    train = open_source("fivek", "train", data_dir=data_dir)
    test = open_source("fivek", "test", data_dir=data_dir)
    assert train.input_scale == 255.0

    def paths(i):
        return (root / f"input/JPG/480p/{i}.jpg", root / f"expertC/JPG/480p/{i}.jpg")

    _assert_split_exact(train, {i: paths(i) for i in ("a0001", "a0002")})
    _assert_split_exact(test, {"a4501": paths("a4501")})
    assert [train[i]["id"] for i in range(len(train))] == ["a0001", "a0002"]  # id order
    assert not list(data_dir.glob(".building*"))


def test_fivek_split_files_and_xyz_16bit(tmp_path):
    root = make_fivek(tmp_path / "FiveK", ids=("a0001", "a0002", "a0003"), xyz=True)
    (tmp_path / "train.txt").write_text("a0003\na0001\n")
    (tmp_path / "test.txt").write_text("a0002.jpg\n\n")
    data_dir = tmp_path / "tfds"
    build_dataset(
        "fivek",
        config="xyz_expert_c",
        data_dir=data_dir,
        source=root,
        split_files={"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"},
    )
    train = open_source("fivek", "train", config="xyz_expert_c", data_dir=data_dir)
    test = open_source("fivek", "test", config="xyz_expert_c", data_dir=data_dir)
    assert train.input_scale == 65535.0 and train.input_bits == 16

    def paths(i):
        return (
            root / f"input/PNG/480p_16bits_XYZ_WB/{i}.png",
            root / f"expertC/JPG/480p/{i}.jpg",
        )

    _assert_split_exact(train, {i: paths(i) for i in ("a0003", "a0001")})
    _assert_split_exact(test, {"a0002": paths("a0002")})
    assert train[0]["input"].dtype == np.uint16
    assert [train[i]["id"] for i in range(2)] == ["a0003", "a0001"]  # split-file order


def test_exif_rotated_jpeg_is_stored_as_decoded(tmp_path):
    """OpenCV ignores EXIF orientation here; the stored pixels must still match imageio."""
    root = make_fivek(tmp_path / "FiveK", ids=("a0001", "a4501"))
    img = _crop("coffee", 3, size=(40, 56))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    _save_jpeg(root / "input/JPG/480p/a0001.jpg", img, exif=exif)
    _save_jpeg(root / "expertC/JPG/480p/a0001.jpg", np.rot90(_retouched(img), -1).copy())
    data_dir = tmp_path / "tfds"
    build_dataset("fivek", data_dir=data_dir, source=root)
    ex = open_source("fivek", "train", data_dir=data_dir)[0]
    assert ex["input"].shape == (56, 40, 3)
    np.testing.assert_array_equal(ex["input"], read_image_raw(root / "input/JPG/480p/a0001.jpg"))


def test_bad_fivek_folder_lists_every_problem_and_leaves_nothing(tmp_path):
    root = make_fivek(tmp_path / "FiveK", ids=("a0001", "a0002", "a0003", "a0004", "a4501"))
    (root / "input/JPG/480p/a0002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "expertC/JPG/480p/a0003.jpg").unlink()
    _save_jpeg(root / "expertC/JPG/480p/a0004.jpg", _crop("rocket", 0, size=(30, 56)))
    data_dir = tmp_path / "tfds"
    with pytest.raises(DatasetBuildError) as err:
        build_dataset("fivek", data_dir=data_dir, source=root)
    msg = str(err.value)
    assert "3 problem(s)" in msg
    assert "a0002: corrupt input" in msg and "a0002.jpg" in msg
    assert "a0003: missing target" in msg and "expertC/JPG/480p/a0003.jpg" in msg
    assert "a0004: size mismatch" in msg and "56x40" in msg and "56x30" in msg
    assert "a0001" not in msg
    assert _nothing_left(data_dir)
    assert not is_built("fivek", data_dir=data_dir)


def test_missing_split_list_id_is_reported(tmp_path):
    root = make_fivek(tmp_path / "FiveK", ids=("a0001", "a4501"))
    (tmp_path / "train.txt").write_text("a0001\na0777\n")
    (tmp_path / "test.txt").write_text("a4501\n")
    with pytest.raises(DatasetBuildError, match="a0777: missing input"):
        build_dataset(
            "fivek",
            data_dir=tmp_path / "tfds",
            source=root,
            split_files={"train": tmp_path / "train.txt", "test": tmp_path / "test.txt"},
        )
    assert _nothing_left(tmp_path / "tfds")


def make_ppr10k_flat(root: Path) -> dict[str, np.ndarray]:
    """AdaInt layout: source/ (16-bit TIFF), source_aug_6/, target_a/ (8-bit TIFF)."""
    import tifffile

    photos = {}
    for k, image_id in enumerate(["0_0", "12_3", "1400_1"]):
        img = _crop(list(PHOTOS)[k], k, size=(36, 48))
        photos[image_id] = img
        for sub in ("source", "source_aug_6", "target_a"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "source" / f"{image_id}.tif", _to16(img), photometric="rgb")
        for j in range(2):
            aug = np.clip(_to16(img).astype(np.int64) * (9 + j) // 10, 0, 65535).astype(np.uint16)
            tifffile.imwrite(root / "source_aug_6" / f"{image_id}_{j}.tif", aug, photometric="rgb")
        tifffile.imwrite(root / "target_a" / f"{image_id}.tif", _retouched(img), photometric="rgb")
    return photos


def test_ppr10k_flat_layout_group_split_and_aug(tmp_path):
    root = tmp_path / "PPR10K"
    make_ppr10k_flat(root)
    data_dir = tmp_path / "tfds"
    build_dataset("ppr10k", data_dir=data_dir, source=root)
    train = open_source("ppr10k", "train", data_dir=data_dir)
    test = open_source("ppr10k", "test", data_dir=data_dir)
    assert train.input_scale == 65535.0

    def paths(i, sub="source"):
        return (root / sub / f"{i}.tif", root / "target_a" / f"{'_'.join(i.split('_')[:2])}.tif")

    _assert_split_exact(train, {i: paths(i) for i in ("0_0", "12_3")})  # groups < 1356
    _assert_split_exact(test, {"1400_1": paths("1400_1")})

    build_dataset("ppr10k", config="target_a_aug", data_dir=data_dir, source=root)
    train_aug = open_source("ppr10k", "train", config="target_a_aug", data_dir=data_dir)
    ids = ("0_0_0", "0_0_1", "12_3_0", "12_3_1")
    _assert_split_exact(train_aug, {i: paths(i, "source_aug_6") for i in ids})
    test_aug = open_source("ppr10k", "test", config="target_a_aug", data_dir=data_dir)
    _assert_split_exact(test_aug, {"1400_1": paths("1400_1")})


def test_ppr10k_official_layout_via_cli(tmp_path, capsys):
    import tifffile

    root = tmp_path / "ppr"
    for split, ids in (("train", ["3_0", "3_1"]), ("val", ["1500_0"])):
        for k, image_id in enumerate(ids):
            img = _crop("astronaut", k + (5 if split == "val" else 0), size=(32, 40))
            for sub in ("source", "target_b"):
                (root / split / sub).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / split / "source" / f"{image_id}.tif", _to16(img))
            tifffile.imwrite(root / split / "target_b" / f"{image_id}.tif", _retouched(img))
    data_dir = tmp_path / "tfds"
    argv = ["build-dataset", "ppr10k", "--config", "target_b", "--source", str(root)]
    assert ailut_main([*argv, "--data-dir", str(data_dir)]) == 0
    assert "train: 2 pairs, test: 1 pairs" in capsys.readouterr().out
    test = open_source("ppr10k", "test", config="target_b", data_dir=data_dir)
    _assert_split_exact(
        test,
        {"1500_0": (root / "val/source/1500_0.tif", root / "val/target_b/1500_0.tif")},
    )


def test_cli_reports_bad_folder(tmp_path, capsys):
    root = make_fivek(tmp_path / "FiveK", ids=("a0001", "a4501"))
    (root / "expertC/JPG/480p/a4501.jpg").write_bytes(b"garbage")
    data_dir = tmp_path / "tfds"
    rc = ailut_main(["build-dataset", "fivek", "--source", str(root), "--data-dir", str(data_dir)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "a4501: corrupt target" in err and "a4501.jpg" in err
    assert _nothing_left(data_dir)
    rc = ailut_main(["build-dataset", "fivek", "--data-dir", str(data_dir)])
    assert rc == 2 and "needs --source" in capsys.readouterr().err


def test_open_source_of_unbuilt_dataset_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="ailut build-dataset fivek"):
        open_source("fivek", "train", data_dir=tmp_path)
