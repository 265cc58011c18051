"""Born-again training of AdaInt: generations, data-parallel steps, checkpoints, reports.

:func:`train` runs a whole config in a work directory::

    WORKDIR/config.json            the validated config (a restart must use the same)
    WORKDIR/checkpoints/           orbax: every ``checkpoint_every`` steps and each generation's end
    WORKDIR/gen{k}/model/          generation k's model directory (``ailut enhance --checkpoint``)
    WORKDIR/gen{k}/eval.json       its test-split metrics
    WORKDIR/gen{k}/grid.png        before/after grid of test photos
    WORKDIR/gen{k}/vertices.png    learned vertices per channel against the uniform grid
    WORKDIR/model/                 the deployed model: the last generation (a copy)
    WORKDIR/metrics.csv, tensorboard/, results.json, results.md

Generation 0 (the teacher) learns from the targets; generation k >= 1 starts from a fresh
initialisation (seed ``config.seed + k``) and also matches generation k-1's outputs on
the same augmented batches (Born-Again Networks, ADAINT.md section 6).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ailut_jax.modeldir import load_model_dir, save_model_dir
from ailut_jax.models import AiLUT, count_params
from ailut_jax.train import evaluation, report
from ailut_jax.train import step as step_lib
from ailut_jax.train.checkpoint import RunCheckpoints
from ailut_jax.train.config import ConfigError, model_config, validate_config


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
    data_dir = d.data_dir or None
    name, cfg = d.name, d.config or None
    kwargs = {}
    if d.source:
        kwargs["source"] = d.source
    split_files = {k: v for k, v in (("train", d.train_list), ("test", d.test_list)) if v}
    if split_files:
        kwargs["split_files"] = split_files
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


def _train_loader(config, source, generation: int):
    from ailut_jax.data.pipeline import make_train_loader

    d = config.data
    local_batch = config.batch_size // jax.process_count()
    return make_train_loader(
        source,
        batch_size=local_batch,
        seed=config.seed + 1000 * generation,
        crop_size=d.crop_size or None,
        resize_to=d.resize_to or None,
        flip_prob=d.flip_prob,
        brightness=d.brightness,
        saturation=d.saturation,
        worker_count=d.worker_count,
    )


def _check_workdir_config(workdir: Path, config) -> None:
    path = workdir / "config.json"
    current = json.loads(config.to_json_best_effort(sort_keys=True))
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
        path.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


class _Generation:
    """Everything one generation's training needs, built from the config and a seed."""

    def __init__(self, config, generation: int):
        self.generation = generation
        self.seed = config.seed + generation
        model = AiLUT(model_config(config), rngs=nnx.Rngs(self.seed))
        self.graphdef, self.params, self.batch_stats, self.rng_state = step_lib.split_model(model)
        self.tx = step_lib.make_optimizer(config.optim, config.steps)
        self.opt_state = self.tx.init(self.params)
        self.key = jax.random.key(self.seed)

    def host_state(self) -> dict:
        return {
            "params": nnx.to_pure_dict(self.params),
            "batch_stats": nnx.to_pure_dict(self.batch_stats),
            "opt_state": self.opt_state,
            "key": jax.random.key_data(self.key),
        }

    def load_host_state(self, state: dict) -> None:
        nnx.replace_by_pure_dict(self.params, state["params"])
        nnx.replace_by_pure_dict(self.batch_stats, state["batch_stats"])
        self.opt_state = state["opt_state"]
        self.key = jax.random.wrap_key_data(jnp.asarray(state["key"]))

    def model(self) -> AiLUT:
        return nnx.merge(self.graphdef, self.params, self.batch_stats, self.rng_state)


def _as_host(tree):
    return jax.tree.map(lambda x: np.asarray(x), tree)


def train(config: ml_collections.ConfigDict, workdir, *, progress: bool | None = None) -> dict:
    """Run (or resume) the born-again training described by ``config`` in ``workdir``.

    Returns the results document (also written as ``results.json`` / ``results.md``).

    Raises:
      ConfigError: before any work, for an invalid config or a missing dataset.
      TrainingDiverged: the loss became non-finite; checkpoints up to the last good
        one are kept.
    """
    config = validate_config(config)
    workdir = Path(workdir).absolute()
    n_global = jax.device_count()
    if config.batch_size % n_global:
        raise ConfigError(
            f"invalid training config:\n  config.batch_size={config.batch_size} does not split "
            f"evenly over {n_global} devices; use a multiple of {n_global}"
        )
    train_source, test_source = open_data(config)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir_config(workdir, config)
    is_main = jax.process_index() == 0
    show_progress = config.progress if progress is None else progress

    examples = evaluation.eval_examples(test_source, config.data.eval_limit)
    ckpt = RunCheckpoints(
        workdir / "checkpoints",
        steps_per_generation=config.steps,
        keep=config.keep_checkpoints,
    )
    writer = report.MetricWriter(workdir, enabled=is_main)
    _log(
        f"ailut-jax training {config.name}: {config.generations} generation(s) x "
        f"{config.steps} steps, global batch {config.batch_size} on {n_global} device(s); "
        f"{len(train_source)} training pairs, {len(examples)} test images; workdir {workdir}"
    )
    start_gen, start_step, restored = 0, 0, None
    latest = ckpt.latest()
    try:
        if latest is not None:
            start_gen, start_step = ckpt.position(latest)
            restored = latest
            _log(f"resuming from checkpoint {latest}: generation {start_gen}, step {start_step}")
        forward = None
        steps_cache = {}
        weights = []  # (params, batch_stats) of each finished generation, host copies
        for gen in range(start_gen):
            model = load_model_dir(_gen_dir(workdir, gen) / "model")
            _, params, stats, _ = step_lib.split_model(model)
            weights.append((params, stats))
        gen_results = [
            json.loads((_gen_dir(workdir, g) / "eval.json").read_text()) for g in range(start_gen)
        ]
        for gen in range(start_gen, config.generations):
            g = _Generation(config, gen)
            if forward is None:
                forward = evaluation.Forward(g.graphdef, g.rng_state, config.impl)
            it = _train_loader(config, train_source, gen)
            step0 = 0
            if restored is not None:
                state, meta = ckpt.restore(restored, g.host_state())
                g.load_host_state(state)
                it.set_state(meta["data_iterator"])
                step0 = meta["step"]
                restored = None
            teacher = weights[-1] if gen > 0 else None
            if step0 < config.steps:
                _train_generation(
                    config,
                    g,
                    it,
                    teacher,
                    step0,
                    ckpt,
                    writer,
                    forward,
                    examples,
                    show_progress,
                    steps_cache,
                )
            ckpt.wait()
            result = _finish_generation(config, workdir, g, forward, examples, is_main)
            gen_results.append(result)
            weights.append((g.params, g.batch_stats))
        ckpt.wait()
    finally:
        ckpt.close()
        writer.close()

    identity = evaluation.identity_scores(examples)
    rows = [dict(model="identity (input unchanged)", **identity)]
    for gen, r in enumerate(gen_results):
        label = "teacher (gen 0)" if gen == 0 else f"student (gen {gen})"
        rows.append(dict(model=label, **{k: r[k] for k in evaluation.METRIC_NAMES}))
    if len(weights) > 1:
        ens = evaluation.evaluate_ensemble(forward, weights, examples)
        rows.append(dict(model=f"ensemble of {len(weights)} generations", **ens))
    extra = {
        "config": config.name,
        "dataset": f"{config.data.name}/{config.data.config}",
        "test_images": len(examples),
        "generations": config.generations,
        "steps_per_generation": config.steps,
        "deployed_model": str(workdir / "model"),
        "final_minus_identity_psnr": rows[len(gen_results)]["psnr"] - identity["psnr"],
    }
    if is_main:
        last = _gen_dir(workdir, config.generations - 1) / "model"
        shutil.copytree(last, workdir / "model", dirs_exist_ok=True)
        table = evaluation.write_results(workdir, rows, extra)
        _log("\n" + table + "\n")
        _log(f"deployed model (last generation): {workdir / 'model'}")
    return dict(extra, rows=rows)


def _gen_dir(workdir: Path, gen: int) -> Path:
    return workdir / f"gen{gen}"


def _train_generation(
    config, g, it, teacher, step0, ckpt, writer, forward, examples, progress, steps_cache
):
    from tqdm import tqdm

    devices = jax.local_devices()
    n_dev = len(devices)
    role = "teacher" if g.generation == 0 else f"student {g.generation}"
    distill = teacher is not None and config.distill.weight > 0
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
    params = step_lib.replicate(g.params, devices)
    stats = step_lib.replicate(g.batch_stats, devices)
    opt_state = step_lib.replicate(g.opt_state, devices)
    teacher_rep = step_lib.replicate(teacher, devices) if distill else None
    n_params = count_params(g.model())
    _log(f"generation {g.generation} ({role}): {n_params:,} parameters, seed {g.seed}")

    bar = tqdm(
        total=config.steps,
        initial=step0,
        desc=f"gen {g.generation} ({role})",
        unit="step",
        disable=not (progress and jax.process_index() == 0),
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
        loss = float(metrics["loss"][0])
        if not math.isfinite(loss):
            where = (
                f"checkpoint {last_good} in {ckpt.manager.directory}"
                if last_good is not None
                else "none (no checkpoint was saved yet)"
            )
            raise TrainingDiverged(
                f"training stopped: the loss became non-finite ({loss}) at generation "
                f"{g.generation}, step {step}. Last good checkpoint: {where}. Lower "
                f"config.optim.lr (now {config.optim.lr:g}) or check the data; a restart "
                "resumes from that checkpoint."
            )
        return loss

    try:
        for step in range(step0, config.steps):
            batch = step_lib.shard_batch(_trim(next(it), config.data.shape_multiple), n_dev)
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
                scalars = {k: float(v[0]) for k, v in metrics.items()}
                scalars["steps_per_s"] = rate
                writer.write(g.generation, ckpt.global_step(g.generation, done), done, scalars)
                bar.set_postfix(loss=f"{loss:.4g}", psnr=f"{scalars['psnr']:.2f}", refresh=False)
            if config.eval_every and done % config.eval_every == 0 and done < config.steps:
                w = (step_lib.unreplicate(params), step_lib.unreplicate(stats))
                ev = evaluation.evaluate(forward, w, examples, names=("psnr",))
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
                    g.host_state(),
                    {"data_iterator": it.get_state()},
                )
                last_good = ckpt.global_step(g.generation, done)
                if jax.process_index() == 0:
                    # Tests (and users watching a log) can tell a checkpoint was requested.
                    bar.write(f"checkpoint: generation {g.generation} step {done}")
    finally:
        bar.close()
    sync_host()


def _trim(batch: dict, multiple: int) -> dict:
    """Cut ``(B, H, W, 3)`` images down to multiples of ``multiple`` (sides shorter than
    ``multiple`` are kept)."""
    if multiple <= 1:
        return batch
    h, w = batch["input"].shape[1:3]
    h2 = h - h % multiple if h >= multiple else h
    w2 = w - w % multiple if w >= multiple else w
    if (h2, w2) == (h, w):
        return batch
    return dict(batch, input=batch["input"][:, :h2, :w2], target=batch["target"][:, :h2, :w2])


def _finish_generation(config, workdir, g, forward, examples, is_main) -> dict:
    gdir = _gen_dir(workdir, g.generation)
    weights = (g.params, g.batch_stats)
    result = evaluation.evaluate(forward, weights, examples)
    result["generation"] = g.generation
    if is_main:
        gdir.mkdir(parents=True, exist_ok=True)
        model = g.model()
        save_model_dir(
            gdir / "model",
            model,
            {
                "source": "ailut-jax train",
                "config": config.name,
                "generation": g.generation,
                "steps": config.steps,
                "test_metrics": {k: result[k] for k in evaluation.METRIC_NAMES},
            },
        )
        (gdir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        _figures(gdir, g, forward, weights, examples, config)
    _log(
        f"generation {g.generation} test: PSNR {result['psnr']:.2f} dB, "
        f"SSIM {result['ssim']:.4f}, Delta-E {result['delta_e']:.2f}"
    )
    return result


def _figures(gdir, g, forward, weights, examples, config) -> None:
    rows, verts = [], []
    for i, ex in enumerate(examples):
        out = forward(weights, ex["input"])
        verts.append(np.asarray(out.vertices[0]))
        if i < config.grid_images:
            rows.append((ex["id"], ex["input"][0], np.asarray(out.output[0]), ex["target"] / 255.0))
    role = "teacher" if g.generation == 0 else f"student {g.generation}"
    title = f"{config.name}: generation {g.generation} ({role})"
    if rows:
        report.save_grid(gdir / "grid.png", rows, title)
    if verts:
        report.save_vertex_plot(gdir / "vertices.png", np.stack(verts), title)
