"""ailut evaluate: pairing, per-image numbers checked against an independent computation."""

import csv
import json
from pathlib import Path

import _models
import numpy as np
import pytest

from ailut_jax import metrics
from ailut_jax.cli import main
from ailut_jax.evaluate import find_pairs, summarize, write_report
from ailut_jax.imageio import quantize, read_image_raw, write_image


@pytest.fixture(scope="session")
def official_dir(tmp_path_factory):
    return _models.official_srgb_dir(tmp_path_factory)


@pytest.fixture(scope="session")
def random_dir(tmp_path_factory):
    return _models.random_model_dir(tmp_path_factory)


def _graded(img: np.ndarray, gamma: float, gain) -> np.ndarray:
    """A stand-in "expert retouch": a tone curve and a colour balance."""
    out = (img / 255.0) ** gamma * np.asarray(gain)
    return quantize(out)


def _write_folder_pairs(root: Path, sizes) -> tuple[Path, Path]:
    inputs, targets = root / "inputs", root / "targets"
    inputs.mkdir()
    targets.mkdir()
    for k, (w, h) in enumerate(sizes):
        img = _models.photo(w, h)
        if k % 2:
            img = img[::-1, ::-1].copy()
        write_image(inputs / f"img{k}.png", img)
        # Targets as JPEG, like FiveK's: pairs are matched by stem, not by suffix.
        from PIL import Image

        Image.fromarray(_graded(img, 0.8, (1.05, 1.0, 0.9))).save(
            targets / f"img{k}.jpg", quality=95
        )
    return inputs, targets


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- pairing


def test_find_pairs_matches_stems_across_suffixes(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "gt").mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "in" / name).write_bytes(b"x")
    for name in ("a.png", "b.tif", "c.jpg"):
        (tmp_path / "gt" / name).write_bytes(b"x")
    pairs = find_pairs(tmp_path / "in", tmp_path / "gt")
    assert [(p.name, p.input_path.name, p.target_path.name) for p in pairs] == [
        ("a", "a.jpg", "a.png"),
        ("b", "b.png", "b.tif"),
    ]


def test_find_pairs_errors(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(ValueError, match="no images"):
        find_pairs(tmp_path / "in", tmp_path / "gt")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_pairs(tmp_path / "missing", tmp_path / "gt")
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "in" / name).write_bytes(b"x")
    (tmp_path / "gt" / "a.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="2 of 3 inputs have no target .*: b, c"):
        find_pairs(tmp_path / "in", tmp_path / "gt")
    (tmp_path / "gt" / "a.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="several images share a name: a.jpg, a.png"):
        find_pairs(tmp_path / "in", tmp_path / "gt")


def test_summarize_and_report(tmp_path):
    rows = [
        {"name": "x", "psnr": 20.0, "ssim": 0.5, "ssim_paper": 0.6, "delta_e": 3.0},
        {"name": "y", "psnr": 30.0, "ssim": 0.7, "ssim_paper": 0.8, "delta_e": 5.0},
    ]
    summary = summarize(rows, [2.0, 0.1, 0.3], wall_seconds=4.0)
    assert summary["model"] == {"psnr": 25.0, "ssim": 0.6, "ssim_paper": 0.7, "delta_e": 4.0}
    assert summary["images_per_s"] == 0.5
    assert summary["model_ms_first"] == 2000.0
    assert summary["model_ms_median"] == pytest.approx(200.0)
    assert summary["model_images_per_s"] == pytest.approx(5.0)
    csv_path, json_path = write_report(tmp_path / "r", rows, summary)
    assert [r["name"] for r in _read_csv(csv_path)] == ["x", "y"]
    assert json.loads(json_path.read_text())["model"]["psnr"] == 25.0


# --------------------------------------------------------------------------- command


def test_evaluate_folders_random_model(tmp_path, random_dir):
    """Every number in the report is recomputed here from the model's output."""
    from ailut_jax.enhance import Enhancer

    inputs, targets = _write_folder_pairs(tmp_path, [(96, 64), (61, 47)])
    out = tmp_path / "out"
    args = ["evaluate", "--checkpoint", str(random_dir), "--inputs", str(inputs)]
    args += ["--targets", str(targets), "--save-path", str(out), "--identity", "--no-progress"]
    assert main(args) == 0

    rows = _read_csv(out / "metrics.csv")
    assert [r["name"] for r in rows] == ["img0", "img1"]
    enhancer = Enhancer.from_checkpoint(random_dir)
    for row in rows:
        img = read_image_raw(inputs / f"{row['name']}.png")
        target = read_image_raw(targets / f"{row['name']}.jpg")
        expected = quantize(np.asarray(enhancer(img / np.float32(255))))
        np.testing.assert_array_equal(read_image_raw(out / f"{row['name']}.png"), expected)
        for name, value in metrics.all_metrics(expected, target).items():
            assert float(row[name]) == pytest.approx(value, abs=1e-6)
        for name, value in metrics.all_metrics(img, target).items():
            assert float(row[f"identity_{name}"]) == pytest.approx(value, abs=1e-6)
        assert float(row["model_ms"]) > 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 2
    for key in ("model", "identity"):
        prefix = "" if key == "model" else "identity_"
        for name in ("psnr", "ssim", "ssim_paper", "delta_e"):
            mean = np.mean([float(r[prefix + name]) for r in rows])
            assert summary[key][name] == pytest.approx(mean, abs=1e-5)
    assert summary["model_images_per_s"] > 0 and summary["images_per_s"] > 0
    assert summary["checkpoint"] == str(random_dir)
    assert summary["source"] == str(inputs)


def test_evaluate_official_model_on_a4739(tmp_path, official_dir, capsys):
    from ailut_jax.enhance import Enhancer

    inputs, targets = _write_folder_pairs(tmp_path, [(722, 480), (722, 480)])
    report = tmp_path / "report"
    args = ["evaluate", "--checkpoint", str(official_dir), "--inputs", str(inputs)]
    args += ["--targets", str(targets), "--report", str(report), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "2 images" in printed and "ms/image" in printed

    row = _read_csv(report / "metrics.csv")[0]
    img = read_image_raw(inputs / "img0.png")
    expected = quantize(np.asarray(Enhancer.from_checkpoint(official_dir)(img / np.float32(255))))
    want = metrics.all_metrics(expected, read_image_raw(targets / "img0.jpg"))
    for name, value in want.items():
        assert float(row[name]) == pytest.approx(value, abs=1e-6)
    summary = json.loads((report / "summary.json").read_text())
    print(
        f"official model, 722x480 on {summary['backend']}: {summary['model_ms_median']:.1f} ms "
        f"per image after compilation ({summary['model_ms_first']:.0f} ms first call)"
    )
    assert "identity" not in summary and summary["count"] == 2
    assert not (report / "img0.png").exists()  # no --save-path: no images


def test_evaluate_identity_only(tmp_path):
    inputs, targets = _write_folder_pairs(tmp_path, [(40, 30), (40, 30)])
    report = tmp_path / "r"
    args = ["evaluate", "--identity", "--inputs", str(inputs), "--targets", str(targets)]
    assert main(args + ["--report", str(report), "--no-progress", "--limit", "1"]) == 0
    rows = _read_csv(report / "metrics.csv")
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {
        "name",
        "identity_psnr",
        "identity_ssim",
        "identity_ssim_paper",
        "identity_delta_e",
    }
    img, target = read_image_raw(inputs / "img0.png"), read_image_raw(targets / "img0.jpg")
    assert float(row["identity_psnr"]) == pytest.approx(metrics.psnr(img, target), abs=1e-6)


def test_evaluate_dataset_split(tmp_path, random_dir):
    """--dataset reads a built FiveK split; its ids name the rows."""
    pytest.importorskip("tensorflow_datasets")
    from PIL import Image

    from ailut_jax.data import build_dataset

    root = tmp_path / "FiveK"
    (root / "input" / "JPG" / "480p").mkdir(parents=True)
    (root / "expertC" / "JPG" / "480p").mkdir(parents=True)
    for k, image_id in enumerate(["a0001", "a4501", "a4502"]):
        img = _models.photo(48, 32)[:, :: 1 if k % 2 else -1]
        Image.fromarray(img).save(root / "input" / "JPG" / "480p" / f"{image_id}.jpg", quality=95)
        target = _graded(img, 0.9, (1.0, 1.0, 1.0))
        Image.fromarray(target).save(
            root / "expertC" / "JPG" / "480p" / f"{image_id}.jpg", quality=95
        )
    data_dir = tmp_path / "tfds"
    build_dataset("fivek", config="expert_c", data_dir=data_dir, source=root)

    report = tmp_path / "r"
    args = [
        "evaluate",
        "--checkpoint",
        str(random_dir),
        "--dataset",
        "fivek",
        "--config",
        "expert_c",
    ]
    args += ["--data-dir", str(data_dir), "--report", str(report), "--identity", "--no-progress"]
    assert main(args) == 0
    rows = _read_csv(report / "metrics.csv")
    assert sorted(r["name"] for r in rows) == ["a4501", "a4502"]  # the default test split
    target = read_image_raw(root / "expertC" / "JPG" / "480p" / "a4501.jpg")
    img = read_image_raw(root / "input" / "JPG" / "480p" / "a4501.jpg")
    row = next(r for r in rows if r["name"] == "a4501")
    assert float(row["identity_psnr"]) == pytest.approx(metrics.psnr(img, target), abs=1e-6)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["source"] == "fivek/expert_c:test"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--identity", "--inputs", "{in}"], "--inputs needs --targets"),
        (["--inputs", "{in}", "--targets", "{gt}"], "give --checkpoint"),
        (["--identity", "--dataset", "fivek", "--targets", "{gt}"], "--targets goes with --inputs"),
        (["--identity", "--inputs", "{gt}", "--targets", "{in}"], "inputs have no target"),
        (["--identity", "--dataset", "fivek", "--data-dir", "{in}"], "is not built"),
    ],
)
def test_evaluate_usage_errors(tmp_path, capsys, args, message):
    inputs, targets = _write_folder_pairs(tmp_path, [(40, 30)])
    (targets / "extra.jpg").write_bytes((targets / "img0.jpg").read_bytes())
    args = [a.format(**{"in": inputs, "gt": targets}) for a in args]
    assert main(["evaluate", "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err


def test_evaluate_shape_mismatch_is_reported(tmp_path, capsys):
    inputs, targets = _write_folder_pairs(tmp_path, [(40, 30)])
    write_image(targets / "img0.jpg", _models.photo(41, 30))
    args = ["evaluate", "--identity", "--inputs", str(inputs), "--targets", str(targets)]
    assert main(args + ["--report", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "img0: input (30, 40, 3) and target (30, 41, 3) differ" in capsys.readouterr().err


def test_one_metric_list_drives_evaluate_and_training_reports():
    """`ailut evaluate`'s summary and the training results table report the same metrics,
    in the same order, from metrics.METRIC_NAMES."""
    from ailut_jax.evaluate import format_summary
    from ailut_jax.train.evaluation import results_table, score

    assert metrics.METRIC_NAMES == ("psnr", "ssim", "ssim_paper", "delta_e")
    values = {"psnr": 21.234, "ssim": 0.91234, "ssim_paper": 0.93456, "delta_e": 7.891}
    table = results_table([dict(model="teacher (gen 0)", **values)]).splitlines()
    assert table[0] == "| model | PSNR (dB) | SSIM | SSIM (paper) | Delta-E |"
    assert table[2] == "| teacher (gen 0) | 21.23 | 0.9123 | 0.9346 | 7.89 |"
    rows = [dict(name="a", model_ms=1.0, **values)]
    summary = format_summary(summarize(rows, [0.1, 0.1], 1.0)).splitlines()[1]
    assert summary == "   model: PSNR (dB) 21.23  SSIM 0.9123  SSIM (paper) 0.9346  Delta-E 7.89"

    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    output = np.clip(target / 255.0 + rng.normal(0, 0.02, target.shape), 0, 1)
    assert score(output, target) == metrics.all_metrics(quantize(output), target)
