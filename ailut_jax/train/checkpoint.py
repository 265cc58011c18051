"""orbax checkpoints of a born-again run: one manager, numbered by global step.

A checkpoint holds the generation being trained, the steps it has done, its parameters,
BatchNorm statistics, optimizer state and PRNG key (``state``, an orbax standard pytree)
and the data iterator's position (``meta``, JSON). The manager's step number is
``generation * steps_per_generation + step``, so the latest checkpoint is the furthest
point of the run. The frozen teacher is never checkpointed: it is the previous
generation's model directory.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp


class RunCheckpoints:
    def __init__(self, directory: Path, *, steps_per_generation: int, keep: int):
        self.steps_per_generation = steps_per_generation
        self.manager = ocp.CheckpointManager(
            Path(directory).absolute(),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "meta"),
        )

    def global_step(self, generation: int, step: int) -> int:
        return generation * self.steps_per_generation + step

    def latest(self) -> int | None:
        return self.manager.latest_step()

    def position(self, global_step: int) -> tuple[int, int]:
        """``(generation, step)`` of a checkpoint number (step == steps: generation done)."""
        gen, step = divmod(global_step, self.steps_per_generation)
        if step == 0 and gen > 0:
            return gen - 1, self.steps_per_generation
        return gen, step

    def save(self, generation: int, step: int, state: dict, meta: dict) -> None:
        """Save host copies of ``state`` (a pytree of arrays) and ``meta`` (JSON)."""
        state = jax.tree.map(np.asarray, state)
        meta = dict(meta, generation=generation, step=step)
        self.manager.save(
            self.global_step(generation, step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )

    def restore(self, global_step: int, abstract_state: dict) -> tuple[dict, dict]:
        """``(state, meta)`` of checkpoint ``global_step``; ``abstract_state`` gives the tree."""
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), abstract_state)
        restored = self.manager.restore(
            global_step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], restored["meta"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
