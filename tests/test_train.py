"""End-to-end training: FiveK / PPR10K configs on tiny real-layout folders, born-again
results, model directories, config errors, non-finite loss, kill-and-resume."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _photos import crop, retouch
from PIL import Image

from ailut_jax.train import ConfigError, TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None):
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _crop(k: int, size=(48, 64)) -> np.ndarray:
    return crop(k, size, origin=(40, 60))


def make_fivek(root: Path) -> Path:
    """FiveK's 480p layout: input/JPG/480p and expertC/JPG/480p, ids a0001.. (a4501+ test)."""
    for k, image_id in enumerate(("a0001", "a0002", "a0003", "a4501", "a4502")):
        img = _crop(k)
        for sub, arr in (("input", img), ("expertC", retouch(img))):
            (root / sub / "JPG/480p").mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / sub / "JPG/480p" / f"{image_id}.jpg", quality=95)
    return root


def make_ppr10k(root: Path) -> Path:
    """PPR10K's flat layout: source/ and source_aug_6/ 16-bit TIFF, target_a/ 8-bit TIFF."""
    import tifffile

    for k, image_id in enumerate(("0_0", "12_3", "1400_1")):
        img = _crop(k, (40, 48))
        img16 = img.astype(np.uint16) * 257
        for sub in ("source", "source_aug_6", "target_a"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(root / "source" / f"{image_id}.tif", img16, photometric="rgb")
        for j in range(2):
            tifffile.imwrite(
                root / "source_aug_6" / f"{image_id}_{j}.tif", img16 // (j + 1), photometric="rgb"
            )
        tifffile.imwrite(root / "target_a" / f"{image_id}.tif", retouch(img), photometric="rgb")
    return root


def tiny(config, data_dir: Path, source: Path, **overrides):
    """A two-step-per-generation version of a real config (small model and crops)."""
    config.data.source = str(source)
    config.data.data_dir = str(data_dir)
    config.model.n_vertices = 9
    config.model.input_size = 64
    config.batch_size = 2  # one image on each of the two test devices
    # The authors' ratio crops: every batch has crops of other sizes, padded to canvases.
    config.data.crop_size = None
    config.steps = 2
    config.generations = 2
    config.log_every = 1
    config.eval_every = 0
    config.checkpoint_every = 1
    config.keep_checkpoints = 2
    config.optim.n_fix_iters = 1
    config.progress = False
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


@pytest.fixture(scope="module")
def fivek_root(tmp_path_factory):
    return make_fivek(tmp_path_factory.mktemp("FiveK"))


@pytest.fixture(scope="module")
def fivek_data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def _params(model_dir: Path) -> dict:
    import jax
    from flax import nnx

    from ailut_jax.modeldir import load_model_dir

    model = load_model_dir(model_dir)
    flat = jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


def test_fivek_config_trains_born_again_end_to_end(tmp_path, fivek_root, fivek_data_dir):
    config = tiny(load_config("fivek_srgb"), fivek_data_dir, fivek_root)
    workdir = tmp_path / "run"
    result = train(config, workdir)

    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == [
        "identity (input unchanged)",
        "teacher (gen 0)",
        "student (gen 1)",
        "ensemble of 2 generations",
    ]
    for r in rows.values():
        assert np.isfinite([r["psnr"], r["ssim"], r["delta_e"]]).all()
        assert 5 < r["psnr"] < 60 and 0 < r["ssim"] <= 1
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["rows"] == result["rows"] and saved["test_images"] == 2
    assert "| student (gen 1) |" in (workdir / "results.md").read_text()
    for gen in (0, 1):
        gdir = workdir / f"gen{gen}"
        for name in ("grid.png", "vertices.png"):
            assert (gdir / name).stat().st_size > 1000
        ev = json.loads((gdir / "eval.json").read_text())
        assert ev["psnr"] == pytest.approx(rows[list(rows)[gen + 1]]["psnr"])
    # Students start from their own initialisation: the generations differ.
    p0, p1 = _params(workdir / "gen0/model"), _params(workdir / "gen1/model")
    assert any(not np.array_equal(p0[k], p1[k]) for k in p0)
    assert _params(workdir / "model").keys() == p1.keys()
    assert all(np.array_equal(_params(workdir / "model")[k], p1[k]) for k in p1)
    # Metrics: CSV and TensorBoard events.
    csv_text = (workdir / "metrics.csv").read_text()
    assert "generation,global_step,step,name,value" in csv_text
    assert ",distill," in csv_text and ",loss," in csv_text
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    # Checkpoints: the last K, numbered by global step (generation * steps + step).
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [3, 4]

    # The deployed model is accepted by `ailut enhance`.
    from ailut_jax.cli import main as ailut_main

    photo = tmp_path / "photo.png"
    Image.fromarray(_crop(1)).save(photo)
    out = tmp_path / "enhanced"
    assert (
        ailut_main(
            ["enhance", "--checkpoint", str(workdir / "model"), "--out", str(out), str(photo)]
        )
        == 0
    )
    assert len(list(out.iterdir())) == 1

    # Running again resumes at the end: nothing is retrained, the results are the same.
    again = train(config, workdir)
    assert again["rows"] == result["rows"]


@pytest.mark.slow
def test_default_config_short_run_beats_the_identity(tmp_path):
    """`python train.py` with no --config is the demo (configs/demo.py): the built-in data,
    a teacher and two students. Cut to 60 steps each, every generation already improves
    on the unmodified input."""
    workdir = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--workdir", str(workdir)]
    cmd += ["--config.steps=60", "--config.checkpoint_every=30", "--config.eval_every=0"]
    cmd += [f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.progress=False"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((workdir / "results.json").read_text())
    assert result["config"] == "demo" and result["dataset"] == "ailut_demo/retouch"
    rows = {r["model"]: r for r in result["rows"]}
    assert list(rows) == [
        "identity (input unchanged)",
        "teacher (gen 0)",
        "student (gen 1)",
        "student (gen 2)",
        "ensemble of 3 generations",
    ]
    identity = rows["identity (input unchanged)"]["psnr"]
    for name in list(rows)[1:]:
        assert rows[name]["psnr"] > identity + 1.0, (name, rows[name], identity)
    assert "| teacher (gen 0) |" in proc.stdout
    assert (workdir / "model/config.json").is_file()


def test_ppr10k_config_trains_resnet18_end_to_end(tmp_path):
    root = make_ppr10k(tmp_path / "PPR10K")
    config = tiny(load_config("ppr10k"), tmp_path / "tfds", root, generations=1)
    config.model.input_size = 32
    config.data.resize_to = 48  # ratio crop, then resize, as the PPR10K recipe does
    result = train(config, tmp_path / "run")
    assert [r["model"] for r in result["rows"]] == ["identity (input unchanged)", "teacher (gen 0)"]
    assert np.isfinite(result["rows"][1]["psnr"])
    from ailut_jax.modeldir import read_model_dir_config

    mcfg, meta = read_model_dir_config(tmp_path / "run/model")
    assert (mcfg.backbone, mcfg.n_ranks) == ("resnet18", 5) and meta["generation"] == 0


def test_config_errors_are_reported_before_any_work(tmp_path, fivek_root):
    import ml_collections

    base = tiny(load_config("fivek_srgb"), tmp_path / "tfds", fivek_root)
    workdir = tmp_path / "run"

    unknown = ml_collections.ConfigDict(base.to_dict())
    unknown.model.n_vertex = 9
    unknown.stepz = 3
    with pytest.raises(ConfigError) as err:
        train(unknown, workdir)
    assert "config.model.n_vertex" in str(err.value) and "config.stepz" in str(err.value)

    as_dict = base.to_dict()
    as_dict["steps"] = "ten"
    as_dict["optim"]["lr"] = True
    wrong = ml_collections.ConfigDict(as_dict)
    with pytest.raises(ConfigError) as err:
        train(wrong, workdir)
    assert "config.steps must be int" in str(err.value) and "config.optim.lr" in str(err.value)

    missing = ml_collections.ConfigDict(base.to_dict())
    missing.data.source = ""
    with pytest.raises(ConfigError, match="not built .* config.data.source"):
        train(missing, workdir)
    missing.data.source = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        train(missing, workdir)
    assert not workdir.exists() and not (tmp_path / "tfds").exists()

    # The command line rejects unknown keys and wrong types before importing JAX work.
    for flag in ("--config.nope=1", "--config.steps=abc"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), flag, "--workdir", str(workdir)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode != 0 and not workdir.exists(), proc.stderr[-2000:]


def test_non_finite_loss_stops_with_a_clear_message(
    tmp_path, fivek_root, fivek_data_dir, monkeypatch
):
    from ailut_jax.train import step as step_lib

    # Three good steps (each checkpointed), then a batch of NaN pixels: the loss of the
    # fourth step is non-finite and training must stop there, naming the last good one.
    real_shard = step_lib.shard_batch
    calls = []

    def poisoned_shard(batch, n_devices):
        calls.append(1)
        out = real_shard(batch, n_devices)
        if len(calls) == 4:
            out = dict(out, input=np.full_like(out["input"], np.nan))
        return out

    monkeypatch.setattr(step_lib, "shard_batch", poisoned_shard)
    config = tiny(load_config("fivek_srgb"), fivek_data_dir, fivek_root, steps=6)
    workdir = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="non-finite") as err:
        train(config, workdir)
    message = str(err.value)
    assert "generation 0" in message and "Last good checkpoint: checkpoint" in message
    failed_step = int(message.split("step ")[1].split(".")[0])
    assert failed_step == 4
    kept = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert kept and max(kept) == 3
    assert not (workdir / "results.json").exists()


KILL_STEPS = 24  # steps per generation in the kill-and-resume test


def _train_cmd(workdir: Path, data_dir: Path, source: Path) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "train.py"),
        "--config",
        str(ROOT / "configs/fivek_srgb.py"),
        "--workdir",
        str(workdir),
        f"--config.data.source={source}",
        f"--config.data.data_dir={data_dir}",
        "--config.data.crop_size=32",
        "--config.batch_size=2",
        "--config.model.n_vertices=9",
        "--config.model.input_size=64",
        f"--config.steps={KILL_STEPS}",
        "--config.generations=2",
        "--config.checkpoint_every=2",
        "--config.optim.n_fix_iters=2",
        "--config.log_every=1",
        "--config.eval_every=0",
        "--config.progress=False",
    ]


def _env(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    env["JAX_PLATFORMS"] = "cpu"
    return env


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, fivek_root, fivek_data_dir):
    """The uninterrupted run both resume tests must reproduce: one process, two devices."""
    reference = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(
        _train_cmd(reference, fivek_data_dir, fivek_root),
        env=_env(2),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return reference


def _committed(checkpoints: Path) -> list[int]:
    if not checkpoints.is_dir():
        return []
    return sorted(
        int(p.name)
        for p in checkpoints.iterdir()
        if p.name.isdigit() and (p / "commit_success.txt").is_file()
    )


def _kill_when_committed(procs: list, checkpoints: Path, target: int) -> int:
    """Wait until the checkpoint at global step ``target`` is committed, SIGKILL every
    process at once, and return the latest committed step."""
    deadline = time.monotonic() + 600
    while (
        target not in _committed(checkpoints)
        and all(p.poll() is None for p in procs)
        and time.monotonic() < deadline
    ):
        time.sleep(0.005)
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait(timeout=60)
    assert all(p.returncode == -signal.SIGKILL for p in procs), [p.returncode for p in procs]
    return max(_committed(checkpoints))


def _assert_same_run(reference: Path, workdir: Path, **tolerance) -> None:
    for gen in ("gen0", "gen1"):
        want, got = _params(reference / gen / "model"), _params(workdir / gen / "model")
        assert want.keys() == got.keys()
        for k in want:
            if tolerance:
                np.testing.assert_allclose(got[k], want[k], err_msg=f"{gen} {k}", **tolerance)
            else:
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"{gen} {k}")


def test_sigkill_mid_generation_then_resume_is_bit_identical(
    tmp_path, fivek_root, fivek_data_dir, reference_run
):
    env = _env(2)
    workdir = tmp_path / "killed"
    cmd = _train_cmd(workdir, fivek_data_dir, fivek_root)
    log = (tmp_path / "killed.log").open("w")
    killed = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    # Mid-generation of the first student (its teacher must come back from disk too):
    # wait until the checkpoint of generation 1, step 2 is committed, then kill at once.
    latest = _kill_when_committed([killed], workdir / "checkpoints", KILL_STEPS + 2)
    gen, step = divmod(latest, KILL_STEPS)
    assert gen == 1 and 0 < step < KILL_STEPS, (latest, _committed(workdir / "checkpoints"))
    assert not (workdir / "results.json").exists()
    assert (workdir / "gen0/model/config.json").exists()
    assert not (workdir / "gen1").exists()

    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from checkpoint {latest}: generation 1, step {step}" in resumed.stdout
    _assert_same_run(reference_run, workdir)
    a = json.loads((reference_run / "results.json").read_text())["rows"]
    b = json.loads((workdir / "results.json").read_text())["rows"]
    assert a == b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_processes(workdir: Path, data_dir: Path, source: Path, logs: Path) -> list:
    """Two training processes on this machine, one CPU device each, joined through JAX's
    coordinator on a free localhost port (the CPU collectives are gloo)."""
    port = _free_port()
    procs = []
    for pid in range(2):
        cmd = _train_cmd(workdir, data_dir, source) + [
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={pid}",
        ]
        log = (logs / f"process{pid}.log").open("a")
        procs.append(
            subprocess.Popen(cmd, env=_env(1), stdout=log, stderr=subprocess.STDOUT, text=True)
        )
    return procs


@pytest.mark.slow
def test_two_processes_match_one_process_and_resume_after_kill(
    tmp_path, fivek_root, fivek_data_dir, reference_run
):
    """Two processes with one device each train what one process does with two devices;
    killed together mid-generation, they resume from the committed checkpoint."""
    workdir = tmp_path / "two"
    procs = _launch_processes(workdir, fivek_data_dir, fivek_root, tmp_path)
    latest = _kill_when_committed(procs, workdir / "checkpoints", KILL_STEPS + 2)
    gen, step = divmod(latest, KILL_STEPS)
    logs = "".join((tmp_path / f"process{i}.log").read_text() for i in range(2))
    assert gen == 1 and 0 < step < KILL_STEPS, (latest, logs[-3000:])
    assert "in 2 process(es)" in (tmp_path / "process0.log").read_text()

    procs = _launch_processes(workdir, fivek_data_dir, fivek_root, tmp_path)
    for p in procs:
        p.wait(timeout=600)
    logs = [(tmp_path / f"process{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert f"resuming from checkpoint {latest}: generation 1, step {step}" in logs[0]
    # The same data reaches the same devices; only the cross-process all-reduce may round
    # differently from the in-process one.
    _assert_same_run(reference_run, workdir, rtol=1e-5, atol=1e-6)
    # Only process 0 evaluates and writes results.
    want = json.loads((reference_run / "results.json").read_text())["rows"]
    got = json.loads((workdir / "results.json").read_text())["rows"]
    assert [r["model"] for r in got] == [r["model"] for r in want]
