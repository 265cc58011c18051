"""Every `ailut` subcommand answers bad input with one line naming it and a fixed status.

Statuses: 0 done, 1 partly done (some inputs skipped), 2 bad usage or input (or nothing
could be done); never a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import _models
import numpy as np
import pytest
from PIL import Image

from ailut_jax.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _models.random_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A good photo, a truncated JPEG, a text file, a corrupt model dir and a bad .cube."""
    root = tmp_path_factory.mktemp("cli-inputs")
    Image.fromarray(_models.photo(48, 32)).save(root / "good.png")
    full = root / "full.jpg"
    Image.fromarray(_models.photo(64, 48)).save(full, quality=90)
    (root / "truncated.jpg").write_bytes(full.read_bytes()[:200])
    (root / "notes.txt").write_text("not an image\n")
    broken = root / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    (root / "bad.cube").write_text("LUT_3D_SIZE 2\n0 0 0\n1 1 1\n")
    (root / "ok.cube").write_text(
        "LUT_3D_SIZE 2\n"
        + "\n".join(f"{r} {g} {b}" for b in (0, 1) for g in (0, 1) for r in (0, 1))
    )
    return root


def _run(capsys, args: list[str]) -> tuple[int, str]:
    status = main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": error: " in line]


def bad_checkpoints(files: Path) -> list[tuple[str, str]]:
    # (--checkpoint value, words the message must contain)
    return [
        (str(files / "no-such-model"), "no such model directory"),
        (str(files / "good.png"), "not a directory"),
        (str(files / "broken-model"), "invalid JSON"),
        (str(files / "missing.pth"), "missing.pth"),
    ]


@pytest.mark.parametrize("command", ["enhance", "export-cube", "plot", "evaluate"])
def test_bad_checkpoint_is_one_line_and_status_2(command, files, tmp_path, capsys):
    for checkpoint, words in bad_checkpoints(files):
        args = {
            "enhance": ["enhance", str(files / "good.png"), "--out", str(tmp_path / "o")],
            "export-cube": [
                "export-cube", str(files / "good.png"), "--out", str(tmp_path / "x.cube"),
            ],
            "plot": ["plot", str(files / "good.png"), "--out", str(tmp_path / "p.png")],
            "evaluate": [
                "evaluate", "--inputs", str(files), "--targets", str(files), "--quiet",
                "--report", str(tmp_path / "r"),
            ],
        }[command]  # fmt: skip
        if command == "evaluate":
            # Folder pairs are read before the model: give a readable pair folder.
            pair_dir = tmp_path / "pairs"
            pair_dir.mkdir(exist_ok=True)
            Image.fromarray(_models.photo(24, 16)).save(pair_dir / "a.png")
            args[2] = args[4] = str(pair_dir)
        status, err = _run(capsys, [*args, "--checkpoint", checkpoint])
        assert status == 2, (command, checkpoint, err)
        lines = _error_lines(err)
        assert len(lines) == 1 and lines[0].startswith(f"ailut {command}: error: "), err
        assert words in lines[0], (command, checkpoint, lines)
        assert not (tmp_path / "x.cube").exists() and not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("command", ["export-cube", "plot"])
@pytest.mark.parametrize(
    "image,words",
    [
        ("missing.jpg", "missing.jpg: no such file"),
        ("truncated.jpg", "truncated.jpg: cannot decode image"),
        ("notes.txt", "notes.txt: cannot decode image"),
    ],
)
def test_single_image_commands_name_a_bad_image(
    command, image, words, model_dir, files, tmp_path, capsys
):
    out = tmp_path / ("x.cube" if command == "export-cube" else "p.png")
    args = [command, str(files / image), "--checkpoint", str(model_dir), "--out", str(out)]
    status, err = _run(capsys, args)
    assert status == 2 and words in err and len(_error_lines(err)) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("command", ["enhance", "apply-cube"])
def test_batch_commands_skip_bad_images_with_status_1_or_2(
    command, model_dir, files, tmp_path, capsys
):
    head = (
        ["enhance", "--checkpoint", str(model_dir)]
        if command == "enhance"
        else ["apply-cube", str(files / "ok.cube")]
    )
    bad = [str(files / n) for n in ("missing.jpg", "truncated.jpg", "notes.txt")]
    # Some good, some bad: the good one is written, each bad one named, status 1.
    out = tmp_path / "some"
    status, err = _run(capsys, [*head, str(files / "good.png"), *bad, "--out", str(out)])
    assert status == 1, err
    assert (out / "good.png").is_file() and len(list(out.iterdir())) == 1
    lines = _error_lines(err)
    assert len(lines) == 3, err
    for name, line in zip(("missing.jpg", "truncated.jpg", "notes.txt"), lines):
        assert name in line
    # Nothing could be done: status 2.
    status, err = _run(capsys, [*head, *bad, "--out", str(tmp_path / "none")])
    assert status == 2 and len(_error_lines(err)) == 3, err


def test_apply_cube_names_a_missing_or_malformed_cube(files, tmp_path, capsys):
    for cube, words in (("nope.cube", "nope.cube"), ("bad.cube", "needs 2^3 = 8 data lines")):
        args = ["apply-cube", str(files / cube), str(files / "good.png"), "--out", str(tmp_path)]
        status, err = _run(capsys, args)
        assert status == 2 and words in err and len(_error_lines(err)) == 1, err


def test_evaluate_names_a_missing_folder_and_an_unreadable_image(
    model_dir, files, tmp_path, capsys
):
    base = ["evaluate", "--checkpoint", str(model_dir), "--quiet", "--report", str(tmp_path / "r")]
    status, err = _run(capsys, [*base, "--inputs", str(tmp_path / "nope"), "--targets", str(files)])
    assert status == 2 and "nope: no such folder" in err, err
    inputs, targets = tmp_path / "in", tmp_path / "gt"
    inputs.mkdir()
    targets.mkdir()
    (inputs / "a.jpg").write_bytes((files / "truncated.jpg").read_bytes())
    Image.fromarray(_models.photo(64, 48)).save(targets / "a.png")
    status, err = _run(capsys, [*base, "--inputs", str(inputs), "--targets", str(targets)])
    assert status == 2 and "a.jpg: cannot decode image" in err and len(_error_lines(err)) == 1


def test_convert_names_a_missing_or_foreign_file(files, tmp_path, capsys):
    for src, words in (("missing.pth", "no such checkpoint file"), ("notes.txt", "notes.txt")):
        status, err = _run(capsys, ["convert", str(files / src), "--out", str(tmp_path / "m")])
        assert status == 2 and words in err and len(_error_lines(err)) == 1, err
        assert not (tmp_path / "m").exists()


def test_build_dataset_names_a_missing_source(tmp_path, capsys):
    args = ["build-dataset", "fivek", "--source", str(tmp_path / "nope")]
    status, err = _run(capsys, [*args, "--data-dir", str(tmp_path / "d")])
    assert status == 2 and "nope" in err and len(_error_lines(err)) == 1, err
    assert not (tmp_path / "d" / "fivek").exists()


def test_usage_errors_are_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["enhance"])  # argparse: IMAGE and --checkpoint are required
    assert exit_info.value.code == 2
    assert main(["plot", "x.png", "--checkpoint", "m", "--out", "o.png", "--colors", "1"]) == 2
    assert "--colors must be in [2, 256]" in capsys.readouterr().err


def test_console_script_and_train_entry_point(tmp_path):
    """The installed `ailut` and `python train.py` give the same statuses as main()."""
    ailut = Path(sys.executable).with_name("ailut")
    proc = subprocess.run([str(ailut), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("ailut-jax ")
    proc = subprocess.run(
        [str(ailut), "export-cube", "x.png", "--checkpoint", str(tmp_path), "--out", "y.cube"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("ailut export-cube: error: ")
    train = Path(__file__).resolve().parents[1] / "train.py"
    for flags, words in (
        (["--config", str(tmp_path / "nope.py")], "nope.py"),
        (["--config.nope=1"], "nope"),
        (["--config.steps=abc"], "steps"),
        (["--config", "fivek_srgb", f"--config.data.source={tmp_path / 'nowhere'}"], "nowhere"),
        (["--num_processes=2", "--process_id=2"], "--process_id must be in 0 .. num_processes-1"),
        (["--num_processes=0"], "--num_processes must be >= 1"),
    ):
        proc = subprocess.run(
            [sys.executable, str(train), *flags, "--workdir", str(tmp_path / "run")],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 2, (flags, proc.stderr[-2000:])
        assert words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / "run").exists()


def test_cluster_detection_reads_the_launchers_environment():
    from ailut_jax.cli.train import cluster_detected

    assert not cluster_detected({})
    assert not cluster_detected({"SLURM_NTASKS": "1", "OMPI_COMM_WORLD_SIZE": "1"})
    assert cluster_detected({"SLURM_NTASKS": "4"})
    assert cluster_detected({"OMPI_COMM_WORLD_SIZE": "2"})
    assert cluster_detected({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"})
    assert not cluster_detected({"SLURM_NTASKS": "n/a"})


def test_missing_extra_names_the_extra():
    from ailut_jax.cli._common import missing_extra_message

    message = missing_extra_message(ModuleNotFoundError("No module named 'grain'", name="grain"))
    assert message.endswith('pip install "ailut-jax[train]"')
    message = missing_extra_message(ModuleNotFoundError("x", name="matplotlib.pyplot"))
    assert "ailut-jax[plot]" in message


def test_evaluate_save_path_writes_nested_dataset_ids(model_dir, tmp_path, capsys):
    """Demo ids hold '/': the enhanced images land in matching subfolders."""
    from ailut_jax.data import build_dataset

    data_dir = tmp_path / "tfds"
    build_dataset("ailut_demo", data_dir=data_dir, train_pairs_per_photo=1, test_pairs_per_photo=1)
    out = tmp_path / "saved"
    args = ["evaluate", "--checkpoint", str(model_dir), "--dataset", "ailut_demo"]
    args += ["--data-dir", str(data_dir), "--save-path", str(out), "--quiet"]
    status, err = _run(capsys, args)
    assert status == 0, err
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    names = [row.split(",")[0] for row in rows]
    assert names and all("/" in n for n in names)
    for name in names:
        saved = np.asarray(Image.open(out / f"{name}.png"))
        assert saved.ndim == 3 and saved.shape[-1] == 3
