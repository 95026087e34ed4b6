"""Host-side training driver: compiled chunks of updates over many seeds, logs, checkpoints, resume.

`train_run(config, env, seeds, out_dir)` runs `jit(vmap(run K updates))` over the seeds from a host
loop. After every chunk it appends one row per (seed, update) to `metrics.csv` and `metrics.jsonl`
(flushed and fsynced, so a crash loses nothing already computed), updates a rich progress bar, and
every `checkpoint_every` updates saves the whole runner state (params, optimiser, env states, RNG
keys, update count) with orbax. `resume=True` restores the last checkpoint, drops metric rows logged
after it, and continues; the result equals an uninterrupted run with the same seeds.

Files in `out_dir`: `run.json` (config, seeds, env, devices, compile time), `metrics.csv`,
`metrics.jsonl`, `checkpoints/<update>/`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from car_jax.errors import UserError
from car_jax.rl.config import PPOConfig, PPOHyper
from car_jax.rl.ppo import PPOTrainer, RunnerState

FIXED_COLUMNS = ("seed", "update", "env_steps", "time")


@dataclass
class RunResult:
    """What `train_run` returns: final runner (stacked over seeds) and all metrics [S, U, ...]."""

    runner: RunnerState
    metrics: dict[str, np.ndarray]
    seeds: tuple[int, ...]
    out_dir: Path
    compile_seconds: float
    train_seconds: float

    @property
    def params(self) -> Any:
        """Final network params, stacked over seeds (leading axis)."""
        return self.runner.params


def default_chunk(num_updates: int, target_chunks: int = 20) -> int:
    """The largest divisor of `num_updates` not above num_updates / target_chunks (at least 1)."""
    goal = max(1, num_updates // target_chunks)
    return max(d for d in range(1, goal + 1) if num_updates % d == 0)


def train_run(
    config: PPOConfig,
    env: Any,
    seeds: Sequence[int] | int,
    out_dir: str | os.PathLike,
    resume: bool = False,
    chunk_updates: int | None = None,
    checkpoint_every: int | None = None,
    network: nn.Module | Callable[[PPOConfig, Any], nn.Module] | None = None,
    hyper: PPOHyper | None = None,
    progress: bool = True,
    chunk_callback: Callable[[int, dict[str, Any]], None] | None = None,
    label: str | None = None,
    trainer: PPOTrainer | None = None,
) -> RunResult:
    """Train `len(seeds)` agents at once on `env`, logging and checkpointing in `out_dir`.

    Args:
      seeds: seed list, or an int n for seeds 0..n-1. Seed s uses `jax.random.key(s)`.
      resume: continue from the last checkpoint in `out_dir` (same config and seeds required);
        without it, an `out_dir` that already holds metrics is refused.
      chunk_updates: updates per compiled call (default: a divisor of num_updates, ~20 chunks).
        Host work (logs, progress, checkpoints) happens only between chunks.
      checkpoint_every: save at the first chunk end at or after each multiple of this many
        updates (default: every 5 chunks); the final state is always saved.
      hyper: traced float hyperparameters shared by all seeds (default `config.hyper()`).
      chunk_callback: `f(update, summary)` after each chunk, once logs and checkpoint are on disk.
      label: text shown on the progress bar (default: the env id).
      trainer: a prebuilt `PPOTrainer` for (config, env) to reuse; `network` is ignored then.
    """
    import orbax.checkpoint as ocp  # NOTE: imported here: orbax is slow to import.

    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds:
        raise UserError("train_run needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"train_run seeds must be distinct, got {list(seeds)}")
    num_updates = config.num_updates
    chunk = default_chunk(num_updates) if chunk_updates is None else int(chunk_updates)
    if not 1 <= chunk <= num_updates:
        raise UserError(f"chunk_updates must lie in [1, num_updates={num_updates}], got {chunk}")
    ckpt_every = 5 * chunk if checkpoint_every is None else int(checkpoint_every)
    if ckpt_every < 1:
        raise UserError(f"checkpoint_every must be >= 1 update, got {ckpt_every}")
    env_name = str(getattr(env, "id", "") or type(env).__name__)
    label = label or env_name

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_path, jsonl_path, csv_path = out / "run.json", out / "metrics.jsonl", out / "metrics.csv"
    ckpt_dir = (out / "checkpoints").absolute()

    if trainer is None:
        trainer = PPOTrainer(config, env, network)
    hyper = config.hyper() if hyper is None else hyper
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    init_fn = trainer.batched_init()

    meta = {
        "env": env_name,
        "seeds": list(seeds),
        "config": config.to_dict(),
        "hyper": {k: float(v) for k, v in vars(hyper).items()},
        "chunk_updates": chunk,
        "checkpoint_every": ckpt_every,
        "devices": [str(d) for d in jax.devices()],
    }
    manager = ocp.CheckpointManager(
        ckpt_dir, options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    )
    try:
        # --- start or resume ------------------------------------------------------------------
        if resume and manager.latest_step() is not None:
            _check_resumable(meta_path, meta)
            # NOTE: a real (not abstract) template, so restored leaves get the same shardings
            # as a fresh run's and the compiled chunk accepts them.
            runner_template = init_fn(keys, hyper)
            step = int(manager.latest_step())
            runner = _restore(manager, step, runner_template)
            rows = _read_rows(jsonl_path, max_update=step)
        else:
            if not resume and (jsonl_path.exists() or manager.latest_step() is not None):
                raise UserError(
                    f"{out} already holds a training run; pass resume=True (--resume) to continue "
                    "it, or choose another output directory"
                )
            runner = init_fn(keys, hyper)
            step, rows = 0, []
        columns = _rewrite_logs(jsonl_path, csv_path, rows)

        # --- compile the chunk function (ahead of time, so the timings exclude it) ---------------
        t0 = time.perf_counter()

        def chunk_fn(n: int):
            return trainer.batched_run(n).lower(runner).compile()

        executables: dict[int, Any] = {}
        if step < num_updates:
            executables[min(chunk, num_updates - step)] = chunk_fn(min(chunk, num_updates - step))
        compile_seconds = time.perf_counter() - t0
        meta["compile_seconds"] = compile_seconds
        meta_path.write_text(json.dumps(meta, indent=2))

        # --- host loop over chunks ---------------------------------------------------------------
        train_seconds = 0.0
        bar = _ProgressBar(label, num_updates, step, enabled=progress)
        with bar:
            while step < num_updates:
                n = min(chunk, num_updates - step)
                t_start = time.perf_counter()
                if n not in executables:  # a shorter last chunk
                    executables[n] = chunk_fn(n)
                runner, metrics = executables[n](runner)
                metrics = jax.device_get(metrics)
                dt = time.perf_counter() - t_start
                train_seconds += dt
                step += n
                new_rows = _metric_rows(seeds, metrics, config.batch_size, wall=train_seconds)
                columns = _append_rows(jsonl_path, csv_path, new_rows, columns)
                rows.extend(new_rows)
                if step // ckpt_every > (step - n) // ckpt_every or step == num_updates:
                    _save(manager, step, runner)
                summary = _summary(metrics, n * config.batch_size * len(seeds) / dt, step)
                summary["env_steps"] = step * config.batch_size
                bar.update(step, summary)
                if chunk_callback is not None:
                    chunk_callback(step, summary)
        if manager.latest_step() != num_updates:
            _save(manager, num_updates, runner)
    finally:
        manager.close()

    return RunResult(
        runner=runner,
        metrics=_stack_rows(rows, seeds),
        seeds=seeds,
        out_dir=out,
        compile_seconds=compile_seconds,
        train_seconds=train_seconds,
    )


# --- checkpoints -------------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _save(manager: Any, step: int, runner: RunnerState) -> None:
    """Save the runner's leaves (typed PRNG keys as their raw uint32 data) and wait for it."""
    import orbax.checkpoint as ocp

    leaves = jax.tree.leaves(runner)
    data = {f"{i:05d}": jax.random.key_data(x) if _is_key(x) else x for i, x in enumerate(leaves)}
    manager.save(step, args=ocp.args.StandardSave({"leaves": data}), force=True)
    manager.wait_until_finished()


def _restore(manager: Any, step: int, template: RunnerState) -> RunnerState:
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
        if _is_key(x):
            data = jax.device_put(value, jax.random.key_data(x).sharding)
            value = jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        else:
            value = jax.device_put(value, x.sharding)
        out.append(value)
    return jax.tree.unflatten(treedef, out)


def _check_resumable(meta_path: Path, meta: dict) -> None:
    """Refuse to resume a run whose config, seeds or env differ from this call's."""
    if not meta_path.exists():
        raise UserError(f"cannot resume: {meta_path} is missing")
    old = json.loads(meta_path.read_text())
    for field in ("env", "seeds", "config", "hyper", "chunk_updates"):
        if old.get(field) != json.loads(json.dumps(meta[field])):
            raise UserError(
                f"cannot resume {meta_path.parent}: its {field} differs from this call's "
                f"(was {old.get(field)!r}, now {meta[field]!r})"
            )


# --- metric logs -------------------------------------------------------------------------------


def _metric_rows(
    seeds: tuple[int, ...], metrics: dict, steps_per_update: int, wall: float
) -> list[dict]:
    """One row per (seed, update) of a chunk's metrics [S, n, ...]."""
    rows = []
    n = next(iter(metrics.values())).shape[1]
    for s, seed in enumerate(seeds):
        for u in range(n):
            row = {"seed": seed, "update": int(metrics["update"][s, u])}
            row["env_steps"] = row["update"] * steps_per_update
            row["time"] = round(wall, 3)
            for name, value in sorted(metrics.items()):
                if name in ("update", "env_steps"):
                    continue
                v = np.asarray(value[s, u])
                row[name] = [_num(x) for x in v.tolist()] if v.ndim else _num(v.item())
            rows.append(row)
    return rows


def _num(x: Any) -> Any:
    """JSON-safe number: NaN and inf become None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _flat(row: dict) -> dict:
    """Row for the CSV: vector metrics spread over name_0, name_1, ... columns."""
    out = {}
    for k, v in row.items():
        if isinstance(v, list):
            out.update({f"{k}_{i}": x for i, x in enumerate(v)})
        else:
            out[k] = v
    return out


def _read_rows(path: Path, max_update: int) -> list[dict]:
    """Rows of an existing metrics.jsonl up to `max_update` (later ones were not checkpointed)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if row["update"] <= max_update:
            rows.append(row)
    return rows


def _rewrite_logs(jsonl_path: Path, csv_path: Path, rows: list[dict]) -> list[str] | None:
    """Write both logs afresh from `rows` (atomically); returns the CSV columns (None if no rows)."""
    columns = _columns(rows[0]) if rows else None
    for path in (jsonl_path, csv_path):
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            if path is jsonl_path:
                f.writelines(json.dumps(r) + "\n" for r in rows)
            elif columns is not None:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(_flat(r) for r in rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return columns


def _columns(row: dict) -> list[str]:
    flat = _flat(row)
    return list(FIXED_COLUMNS) + [k for k in flat if k not in FIXED_COLUMNS]


def _append_rows(
    jsonl_path: Path, csv_path: Path, rows: list[dict], columns: list[str] | None
) -> list[str]:
    """Append rows to both logs, flushed and fsynced; writes the CSV header on first use."""
    with open(jsonl_path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())
    new_header = columns is None
    columns = columns or _columns(rows[0])
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
        if new_header:
            writer.writeheader()
        writer.writerows(_flat(r) for r in rows)
        f.flush()
        os.fsync(f.fileno())
    return columns


def _stack_rows(rows: list[dict], seeds: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Metric rows back to arrays [S, U, ...] (None -> NaN), ordered by seed then update."""
    by_seed = {
        s: sorted((r for r in rows if r["seed"] == s), key=lambda r: r["update"]) for s in seeds
    }
    names = [k for k in rows[0] if k != "seed"] if rows else []

    def value(v):
        if isinstance(v, list):
            return [np.nan if x is None else x for x in v]
        return np.nan if v is None else v

    return {
        name: np.asarray([[value(r[name]) for r in by_seed[s]] for s in seeds], dtype=np.float64)
        for name in names
    }


# --- progress ---------------------------------------------------------------------------------


def _summary(metrics: dict, steps_per_second: float, update: int) -> dict[str, Any]:
    """Last update of a chunk, averaged over seeds (NaN-aware), plus throughput."""
    last = {k: np.asarray(v)[:, -1] for k, v in metrics.items()}
    out = {
        "update": update,
        "env_steps": int(last["env_steps"][0]),
        "steps_per_second": steps_per_second,
    }
    for name in ("episode_return", "episode_length", "success_rate", "subtask_rate"):
        if name in last:
            v = last[name].astype(np.float64)
            out[name] = (
                np.nanmean(v, axis=0) if np.isfinite(v).any() else np.full(v.shape[1:], np.nan)
            )
    return out


class _ProgressBar:
    """A rich progress bar over updates; a no-op when disabled."""

    def __init__(self, label: str, total: int, done: int, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[stats]}"),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task(label, total=total, completed=done, stats="compiled")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, step: int, summary: dict[str, Any]) -> None:
        """Show the latest chunk's throughput, return, success and sub-task rates."""
        if not self.enabled:
            return
        parts = [f"{summary['steps_per_second']:,.0f} steps/s"]
        if "episode_return" in summary:
            parts.append(f"return {float(summary['episode_return']):.3f}")
        if "success_rate" in summary:
            parts.append(f"success {float(summary['success_rate']):.2f}")
        if "subtask_rate" in summary:
            rates = " ".join(f"{x:.2f}" for x in np.atleast_1d(summary["subtask_rate"]))
            parts.append(f"subtasks [{rates}]")
        self.progress.update(self.task, completed=step, stats="  ".join(parts))
