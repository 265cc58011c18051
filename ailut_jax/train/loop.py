"""Born-again training of AdaInt: generations, data-parallel steps, checkpoints, reports.

:func:`train` runs a whole config in a work directory::

    WORKDIR/config.json            the validated config (a restart must use the same)
    WORKDIR/canvases.json          the canvas sizes training batches are padded to
    WORKDIR/checkpoints/           orbax: every ``checkpoint_every`` steps and each generation's end
    WORKDIR/gen{k}/model/          generation k's model directory (``ailut enhance --checkpoint``)
    WORKDIR/gen{k}/eval.json       its test-split metrics
    WORKDIR/gen{k}/grid.png        before/after grid of test photos
    WORKDIR/gen{k}/vertices.png    learned vertices per channel against the uniform grid
    WORKDIR/model/                 the deployed model: the last generation (a copy)
    WORKDIR/metrics.csv, tensorboard/, results.json, results.md

Generation 0 (the teacher) learns from the targets; generation k >= 1 starts from a fresh
initialisation (seed ``config.seed + k``) and also matches generation k-1's outputs on
the same augmented batches (Born-Again Networks, docs/training.md#born-again-generations).

Crops of any size are padded into at most ``config.data.canvas_buckets`` canvas sizes
(:mod:`ailut_jax.data.canvas`), so each step function compiles at most that many times;
JAX's persistent compilation cache (``$AILUT_CACHE_DIR`` or the user cache folder) keeps
the compiled steps for resumed and repeated runs. With several processes
(``jax.distributed``), every process runs this same function: each reads its own share
of every global batch, all of them save checkpoints (orbax coordinates them), and only
process 0 evaluates and writes reports, figures and model directories.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ailut_jax.data import canvas
from ailut_jax.enhance import Enhancer
from ailut_jax.metrics import METRIC_LABELS, METRIC_NAMES, format_metric
from ailut_jax.modeldir import load_model_dir, save_model_dir
from ailut_jax.models import AiLUT, count_params
from ailut_jax.train import evaluation, report
from ailut_jax.train import step as step_lib
from ailut_jax.train.checkpoint import RunCheckpoints
from ailut_jax.train.config import ConfigError, TrainConfig, validate_config


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the message names the step and the last good checkpoint."""


_T0 = time.perf_counter()


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", flush=True)


def open_data(config):
    """``(train_source, test_source)``; builds the dataset first when that is possible.

    Raises:
      ConfigError: the dataset is not built and ``config.data.source`` is not given.
    """
    from ailut_jax.data import dataset_path, is_built, open_source

    d = config.data
    data_dir = d.data_dir
    name, cfg = d.name, d.config
    kwargs = {}
    if d.source:
        kwargs["source"] = d.source
    split_files = {k: v for k, v in (("train", d.train_list), ("test", d.test_list)) if v}
    if split_files:
        kwargs["split_files"] = split_files
    if name == "pairs" and not is_built(name, cfg, data_dir):
        where = dataset_path(name, cfg, data_dir)
        raise ConfigError(
            f"invalid training config:\n  config.data: dataset pairs/{cfg} is not built "
            f"(looked in {where}); build it first with `ailut build-dataset pairs --name "
            f"{cfg} --inputs BEFORE_DIR --targets AFTER_DIR`"
        )
    if not is_built(name, cfg, data_dir) and name != "ailut_demo" and not d.source:
        where = dataset_path(name, cfg, data_dir)
        raise ConfigError(
            f"invalid training config:\n  config.data: dataset {name}/{d.config} is not built "
            f"(looked in {where}) and config.data.source is not set; pass "
            f"--config.data.source=/path/to/{name} (the raw dataset folder) or build it with "
            f"`ailut build-dataset {name} --source DIR`"
        )
    train = open_source(name, "train", config=cfg, data_dir=data_dir, build=True, **kwargs)
    test = open_source(name, d.test_split, config=cfg, data_dir=data_dir, build=False)
    return train, test


def _train_loader(config: TrainConfig, source, generation: int, ladder):
    from ailut_jax.data.pipeline import make_train_loader

    d = config.data
    return make_train_loader(
        source,
        batch_size=config.batch_size // jax.process_count(),
        seed=config.seed + 1000 * generation,
        ladder=ladder,
        crop_size=d.crop_size,
        resize_to=d.resize_to,
        flip_prob=d.flip_prob,
        brightness=d.brightness,
        saturation=d.saturation,
        worker_count=d.worker_count,
    )


def plan_canvases(config: TrainConfig, workdir: Path) -> tuple[int, ...]:
    """The canvas sizes of this run: planned once from the training images' sizes (read
    from their encoded headers) and kept in ``canvases.json``, so a resumed run pads
    exactly as the first did."""
    path = workdir / "canvases.json"
    if path.exists():
        return tuple(json.loads(path.read_text())["ladder"])
    d = config.data
    sizes = []
    if d.crop_size is None and d.resize_to is None:
        sizes = canvas.image_sizes(d.name, "train", config=d.config, data_dir=d.data_dir)
    lo, hi = canvas.crop_pixel_range(sizes, crop_size=d.crop_size, resize_to=d.resize_to)
    ladder = canvas.bucket_ladder(lo, hi, d.canvas_buckets)
    if jax.process_index() == 0:
        doc = {
            "ladder": list(ladder),
            "crop_pixels": [lo, hi],
            "train_images": len(sizes) or None,
            "distinct_image_sizes": len(set(sizes)) or None,
        }
        _write_atomic(path, json.dumps(doc, indent=2) + "\n")
    return ladder


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache unless the user configured one:
    ``$AILUT_CACHE_DIR/jax`` or ``$XDG_CACHE_HOME/ailut_jax/jax`` (``~/.cache``).
    ``AILUT_CACHE_DIR=off`` leaves it off."""
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    root = os.environ.get("AILUT_CACHE_DIR")
    if root == "off":
        return None
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ailut_jax"
    path = Path(root).expanduser() / "jax"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Every training compile is worth keeping (the default skips those under 1 s).
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _check_workdir_config(workdir: Path, config: TrainConfig) -> None:
    path = workdir / "config.json"
    current = config.to_dict()
    if path.exists():
        saved = json.loads(path.read_text())
        ignore = {"progress"}
        diff = sorted(
            k
            for k in set(saved) | set(current)
            if k not in ignore and saved.get(k) != current.get(k)
        )
        if diff:
            raise ConfigError(
                f"{workdir} holds a run with a different config (keys {diff} differ); "
                "resume it with the same config or choose another --workdir"
            )
    elif jax.process_index() == 0:
        _write_atomic(path, json.dumps(current, indent=2, sort_keys=True) + "\n")


class _Generation:
    """Everything one generation's training needs, built from the config and a seed."""

    def __init__(self, config: TrainConfig, generation: int):
        self.generation = generation
        self.seed = config.seed + generation
        model = AiLUT(config.model.model_config(), rngs=nnx.Rngs(self.seed))
        if config.model.backbone_weights is not None:
            from ailut_jax.convert import load_resnet18_weights, load_torch_state_dict

            weights = load_torch_state_dict(config.model.backbone_weights)
            load_resnet18_weights(model, weights)
        self.graphdef, self.params, self.batch_stats, self.rng_state = step_lib.split_model(model)
        self.tx = step_lib.make_optimizer(config.optim, config.steps)
        self.opt_state = self.tx.init(self.params)
        self.key = jax.random.key(self.seed)

    def host_state(self, teacher=None) -> dict:
        state = {
            "params": nnx.to_pure_dict(self.params),
            "batch_stats": nnx.to_pure_dict(self.batch_stats),
            "opt_state": self.opt_state,
            "key": jax.random.key_data(self.key),
        }
        if teacher is not None:
            # The frozen teacher travels with the student's checkpoints, so every process
            # can resume from the checkpoint alone (model directories are process 0's).
            state["teacher"] = {
                "params": nnx.to_pure_dict(teacher[0]),
                "batch_stats": nnx.to_pure_dict(teacher[1]),
            }
        return state

    def load_host_state(self, state: dict):
        """Restore from a checkpoint's state; returns the teacher ``(params, stats)`` or None."""
        nnx.replace_by_pure_dict(self.params, state["params"])
        nnx.replace_by_pure_dict(self.batch_stats, state["batch_stats"])
        self.opt_state = state["opt_state"]
        self.key = jax.random.wrap_key_data(jnp.asarray(state["key"]))
        if "teacher" not in state:
            return None
        params = jax.tree.map(lambda x: x, self.params)
        stats = jax.tree.map(lambda x: x, self.batch_stats)
        nnx.replace_by_pure_dict(params, state["teacher"]["params"])
        nnx.replace_by_pure_dict(stats, state["teacher"]["batch_stats"])
        return params, stats

    def model(self) -> AiLUT:
        return nnx.merge(self.graphdef, self.params, self.batch_stats, self.rng_state)


def _as_host(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


def train(config: ml_collections.ConfigDict | TrainConfig, workdir, *, progress=None) -> dict:
    """Run (or resume) the born-again training described by ``config`` in ``workdir``.

    Returns the results document (also written as ``results.json`` / ``results.md``; in
    processes other than 0, which do not evaluate, ``rows`` is empty).

    Raises:
      ConfigError: before any work, for an invalid config or a missing dataset.
      TrainingDiverged: the loss or the gradients became non-finite; checkpoints up to
        the last good one are kept.
    """
    config = validate_config(config)
    workdir = Path(workdir).absolute()
    n_global = jax.device_count()
    if config.batch_size % n_global:
        raise ConfigError(
            f"invalid training config:\n  config.batch_size={config.batch_size} does not split "
            f"evenly over {n_global} devices; use a multiple of {n_global}"
        )
    enable_compilation_cache()
    train_source, test_source = open_data(config)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir_config(workdir, config)
    ladder = plan_canvases(config, workdir)
    is_main = jax.process_index() == 0
    show_progress = config.progress if progress is None else progress

    ckpt = RunCheckpoints(
        workdir / "checkpoints",
        steps_per_generation=config.steps,
        keep=config.keep_checkpoints,
    )
    writer = report.MetricWriter(workdir, enabled=is_main)
    n_test = (
        len(test_source)
        if config.data.eval_limit is None
        else min(config.data.eval_limit, len(test_source))
    )
    _log(
        f"ailut-jax training {config.name}: {config.generations} generation(s) x "
        f"{config.steps} steps, global batch {config.batch_size} on {n_global} device(s) "
        f"in {jax.process_count()} process(es); {len(train_source)} training pairs, "
        f"{n_test} test images; canvases of {', '.join(f'{n:,}' for n in ladder)} pixels; "
        f"workdir {workdir}"
    )
    start_gen, restored = 0, None
    latest = ckpt.latest()
    gen_results: list[dict] = []
    try:
        if latest is not None:
            start_gen, start_step = ckpt.position(latest)
            restored = latest
            _log(f"resuming from checkpoint {latest}: generation {start_gen}, step {start_step}")
        if is_main:
            gen_results = [
                json.loads((_gen_dir(workdir, g) / "eval.json").read_text())
                for g in range(start_gen)
            ]
        teacher = None
        steps_cache: dict = {}
        for gen in range(start_gen, config.generations):
            g = _Generation(config, gen)
            it = _train_loader(config, train_source, gen, ladder)
            step0 = 0
            if restored is not None:
                state, meta = ckpt.restore(restored, g.host_state(_abstract_teacher(g, gen)))
                teacher = g.load_host_state(state)
                it.set_state(meta["data_iterator"])
                step0 = meta["step"]
                restored = None
            elif gen > 0 and teacher is None:
                # Resuming exactly at a generation boundary: the previous generation's
                # final weights are its last checkpoint.
                teacher = _previous_generation(config, ckpt, gen)
            if step0 < config.steps:
                _train_generation(
                    config, g, it, teacher, step0, ckpt, writer, test_source, show_progress,
                    steps_cache, ladder,
                )  # fmt: skip
            ckpt.wait()
            if is_main:
                gen_results.append(_finish_generation(config, workdir, g, test_source))
            teacher = (g.params, g.batch_stats)
        ckpt.wait()
    finally:
        ckpt.close()
        writer.close()

    extra = {
        "config": config.name,
        "dataset": f"{config.data.name}/{config.data.config}",
        "test_images": n_test,
        "generations": config.generations,
        "steps_per_generation": config.steps,
        "deployed_model": str(workdir / "model"),
    }
    if not is_main:
        return dict(extra, rows=[])
    # The final table: identity, every generation and their ensemble, in one pass.
    enhancers = {
        f"gen{k}": Enhancer(load_model_dir(_gen_dir(workdir, k) / "model"), impl=config.impl)
        for k in range(config.generations)
    }
    scores = evaluation.evaluate(
        test_source,
        enhancers,
        limit=config.data.eval_limit,
        identity=True,
        ensemble=len(enhancers) > 1,
    )
    identity = scores[evaluation.IDENTITY]
    rows = [dict(model="identity (input unchanged)", **identity)]
    for k in range(config.generations):
        label = "teacher (gen 0)" if k == 0 else f"student (gen {k})"
        rows.append(dict(model=label, **scores[f"gen{k}"]))
    if len(enhancers) > 1:
        rows.append(
            dict(model=f"ensemble of {len(enhancers)} generations", **scores[evaluation.ENSEMBLE])
        )
    extra["final_minus_identity_psnr"] = rows[config.generations]["psnr"] - identity["psnr"]
    last = _gen_dir(workdir, config.generations - 1) / "model"
    shutil.copytree(last, workdir / "model", dirs_exist_ok=True)
    table = evaluation.write_results(workdir, rows, extra)
    _log("\n" + table + "\n")
    _log(f"deployed model (last generation): {workdir / 'model'}")
    return dict(extra, rows=rows)


def _abstract_teacher(g: _Generation, gen: int):
    """The teacher's tree (for restoring a student's checkpoint) or None for the teacher."""
    return (g.params, g.batch_stats) if gen > 0 else None


def _previous_generation(config: TrainConfig, ckpt: RunCheckpoints, gen: int):
    """Generation ``gen - 1``'s final ``(params, batch_stats)`` from its last checkpoint."""
    prev = _Generation(config, gen - 1)
    state, _ = ckpt.restore(
        ckpt.global_step(gen - 1, config.steps), prev.host_state(_abstract_teacher(prev, gen - 1))
    )
    prev.load_host_state(state)
    return prev.params, prev.batch_stats


def _gen_dir(workdir: Path, gen: int) -> Path:
    return workdir / f"gen{gen}"


def _bucket_agreement(batch: dict) -> dict:
    """Pad this process's canvases to the largest canvas of all processes' batches: every
    process must feed ``pmap`` the same shapes."""
    if jax.process_count() == 1:
        return batch
    from jax.experimental import multihost_utils

    sizes = multihost_utils.process_allgather(np.int32(batch["input"].shape[1]))
    return canvas.pad_to(batch, int(np.max(sizes)))


def _train_generation(
    config: TrainConfig,
    g: _Generation,
    it,
    teacher,
    step0: int,
    ckpt: RunCheckpoints,
    writer,
    test_source,
    progress: bool,
    steps_cache: dict,
    ladder,
):
    from tqdm import tqdm

    n_dev = jax.local_device_count()
    role = "teacher" if g.generation == 0 else f"student {g.generation}"
    distill = teacher is not None and config.distill.weight > 0
    is_main = jax.process_index() == 0
    # Every generation has the same architecture and optimizer, so the students share one
    # compiled step (and the teacher another): pmap caches by function identity.
    if distill not in steps_cache:
        step_fn = step_lib.make_train_step(
            g.graphdef,
            g.rng_state,
            g.tx,
            step_lib.step_config(config, distill=distill),
            axis_name=step_lib.AXIS,
            teacher_graphdef=g.graphdef if distill else None,
        )
        steps_cache[distill] = step_lib.pmap_train_step(step_fn)
    p_step = steps_cache[distill]
    params = step_lib.replicate(g.params)
    stats = step_lib.replicate(g.batch_stats)
    opt_state = step_lib.replicate(g.opt_state)
    teacher_rep = step_lib.replicate(teacher) if distill else None
    n_params = count_params(g.model())
    _log(f"generation {g.generation} ({role}): {n_params:,} parameters, seed {g.seed}")

    bar = tqdm(
        total=config.steps,
        initial=step0,
        desc=f"gen {g.generation} ({role})",
        unit="step",
        disable=not (progress and is_main),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    last_good = ckpt.latest()
    t_last, s_last = time.perf_counter(), step0
    metrics = None

    def sync_host():
        g.params = _as_host(step_lib.unreplicate(params))
        g.batch_stats = _as_host(step_lib.unreplicate(stats))
        g.opt_state = _as_host(step_lib.unreplicate(opt_state))

    def check_finite(step):
        """The step's loss, after checking that loss, gradients and parameters are finite."""
        values = {k: float(step_lib.unreplicate(metrics[k])) for k in _GUARDED}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            where = (
                f"checkpoint {last_good} in {ckpt.manager.directory}"
                if last_good is not None
                else "none (no checkpoint was saved yet)"
            )
            what = ", ".join(f"{k} = {v}" for k, v in bad.items())
            raise TrainingDiverged(
                f"training stopped: non-finite values ({what}) at generation "
                f"{g.generation}, step {step}. Last good checkpoint: {where}. Lower "
                f"config.optim.lr (now {config.optim.lr:g}) or check the data; a restart "
                "resumes from that checkpoint."
            )
        return values["loss"]

    try:
        for step in range(step0, config.steps):
            batch = step_lib.shard_batch(_bucket_agreement(next(it)), n_dev)
            params, stats, opt_state, metrics = p_step(
                params, stats, opt_state, batch, g.key, jnp.int32(step), teacher_rep
            )
            done = step + 1
            bar.update(1)
            if done % config.log_every == 0 or done == config.steps:
                loss = check_finite(done)
                now = time.perf_counter()
                rate = (done - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, done
                scalars = {k: float(step_lib.unreplicate(v)) for k, v in metrics.items()}
                scalars["steps_per_s"] = rate
                writer.write(g.generation, ckpt.global_step(g.generation, done), done, scalars)
                bar.set_postfix(loss=f"{loss:.4g}", psnr=f"{scalars['psnr']:.2f}", refresh=False)
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                if is_main:
                    model = nnx.merge(
                        g.graphdef,
                        step_lib.unreplicate(params),
                        step_lib.unreplicate(stats),
                        g.rng_state,
                    )
                    ev = evaluation.evaluate(
                        test_source,
                        {"model": Enhancer(model, impl=config.impl)},
                        limit=config.data.eval_limit,
                        names=("psnr",),
                    )["model"]
                    writer.write(
                        g.generation,
                        ckpt.global_step(g.generation, done),
                        done,
                        {"test_psnr": ev["psnr"]},
                    )
                    bar.write(f"gen {g.generation} step {done}: test PSNR {ev['psnr']:.2f} dB")
            if done % config.checkpoint_every == 0 or done == config.steps:
                check_finite(done)
                sync_host()
                ckpt.save(
                    g.generation,
                    done,
                    g.host_state(teacher),
                    {"data_iterator": it.get_state()},
                )
                last_good = ckpt.global_step(g.generation, done)
                if is_main:
                    # Tests (and users watching a log) can tell a checkpoint was requested.
                    bar.write(f"checkpoint: generation {g.generation} step {done}")
    finally:
        bar.close()
    sync_host()


#: Checked before each log line and checkpoint: a finite loss with non-finite gradients
#: would poison the parameters and then the "last good" checkpoint.
_GUARDED = ("loss", "grad_norm", "param_norm")


def _finish_generation(config: TrainConfig, workdir: Path, g: _Generation, test_source) -> dict:
    """Process 0: save generation ``g``'s model, score it, draw its figures."""
    gdir = _gen_dir(workdir, g.generation)
    model = g.model()
    grid, verts = [], []

    def visit(index, image_id, inp, target, predictions):
        p = predictions["model"]
        verts.append(np.asarray(p["vertices"]))
        if index < config.grid_images:
            grid.append((image_id, inp, np.asarray(p["output"]), target / 255.0))

    scores = evaluation.evaluate(
        test_source,
        {"model": Enhancer(model, impl=config.impl)},
        limit=config.data.eval_limit,
        visit=visit,
    )
    result = dict(scores["model"], generation=g.generation)
    gdir.mkdir(parents=True, exist_ok=True)
    save_model_dir(
        gdir / "model",
        model,
        {
            "source": "ailut-jax train",
            "config": config.name,
            "generation": g.generation,
            "steps": config.steps,
            "test_metrics": {k: result[k] for k in METRIC_NAMES},
        },
    )
    _write_atomic(gdir / "eval.json", json.dumps(result, indent=2) + "\n")
    role = "teacher" if g.generation == 0 else f"student {g.generation}"
    title = f"{config.name}: generation {g.generation} ({role})"
    if grid:
        report.save_grid(gdir / "grid.png", grid, title)
    if verts:
        report.save_vertex_plot(gdir / "vertices.png", np.stack(verts), title)
    summary = ", ".join(
        f"{METRIC_LABELS[m][0]} {format_metric(m, result[m])}" for m in METRIC_NAMES
    )
    _log(f"generation {g.generation} test: {summary}")
    return result
