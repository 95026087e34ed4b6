"""Checkpoints of a seed-stacked `RunnerState` with orbax: save, restore, and the resume check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from car_jax.errors import UserError
from car_jax.rl.ppo import RunnerState

# What must match between a run on disk and the call that resumes it.
RESUME_FIELDS = ("env", "seeds", "config", "hyper", "chunk_updates", "observation")


def open_manager(ckpt_dir: Path) -> Any:
    """An orbax CheckpointManager over `ckpt_dir` keeping the last two checkpoints."""
    import orbax.checkpoint as ocp  # NOTE: imported here: orbax is slow to import.

    return ocp.CheckpointManager(
        ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    )


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def save(manager: Any, step: int, runner: RunnerState) -> None:
    """Save the runner's leaves (typed PRNG keys as their raw uint32 data) and wait for it."""
    import orbax.checkpoint as ocp

    leaves = jax.tree.leaves(runner)
    data = {f"{i:05d}": jax.random.key_data(x) if _is_key(x) else x for i, x in enumerate(leaves)}
    manager.save(step, args=ocp.args.StandardSave({"leaves": data}), force=True)
    manager.wait_until_finished()


def restore(manager: Any, step: int, template: RunnerState) -> RunnerState:
    """Load checkpoint `step` into the structure, dtypes and shardings of `template`."""
    import orbax.checkpoint as ocp

    leaves, treedef = jax.tree.flatten(template)
    target = {}
    for i, x in enumerate(leaves):
        if _is_key(x):
            x = jax.eval_shape(jax.random.key_data, x)
        target[f"{i:05d}"] = np.zeros(x.shape, x.dtype)
    restored = manager.restore(step, args=ocp.args.StandardRestore({"leaves": target}))["leaves"]
    out = []
    for i, x in enumerate(leaves):
        value = restored[f"{i:05d}"]
        if tuple(value.shape) != tuple(target[f"{i:05d}"].shape):
            raise UserError(
                f"cannot resume from checkpoint {step} in {manager.directory}: its leaf {i} has "
                f"shape {tuple(value.shape)} where this run's state has "
                f"{tuple(target[f'{i:05d}'].shape)}, so it was saved by another network (e.g. "
                "a MiniGrid progress-observation run trained with the other "
                "--ppo embed_constant_once setting: resume with the one it was trained with)"
            )
        if _is_key(x):
            data = jax.device_put(value, jax.random.key_data(x).sharding)
            value = jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        else:
            value = jax.device_put(value, x.sharding)
        out.append(value)
    return jax.tree.unflatten(treedef, out)


def check_resumable(meta_path: Path, meta: dict) -> None:
    """Refuse to resume a run whose config, seeds or env differ from this call's."""
    if not meta_path.exists():
        raise UserError(f"cannot resume: {meta_path} is missing")
    old = json.loads(meta_path.read_text())
    for field in RESUME_FIELDS:
        if field not in old and field == "observation":
            continue  # written by versions that did not record it: nothing to compare
        if field == "config" and isinstance(old.get(field), dict):
            # A field added to PPOConfig since the run started is not compared: it takes this
            # call's value (conv_impl: both implementations compute the same function; a network
            # whose shape it changes, embed_constant_once, is caught by `restore`).
            now = json.loads(json.dumps(meta.get(field) or {}))
            old = {**old, field: {**now, **old[field]}}
        if old.get(field) != json.loads(json.dumps(meta.get(field))):
            raise UserError(
                f"cannot resume {meta_path.parent}: its {field} differs from this call's "
                f"(was {old.get(field)!r}, now {meta[field]!r})"
            )
