"""Host-side training driver: compiled chunks of updates over many seeds, logs, checkpoints, resume.

`train_run(config, env, seeds, out_dir)` runs `jit(vmap(run K updates))` over the seeds from a host
loop. After every chunk it appends one row per (seed, update) to `metrics.csv` and `metrics.jsonl`
(flushed and fsynced, so a crash loses nothing already computed), updates a rich progress bar, and
every `checkpoint_every` updates saves the whole runner state (params, optimiser, env states, RNG
keys, update count) with orbax. `resume=True` restores the last checkpoint, drops metric rows logged
after it, and continues; the result equals an uninterrupted run with the same seeds.

Files in `out_dir`: `run.json` (config, seeds, env, devices, compile time), `metrics.csv`,
`metrics.jsonl`, `checkpoints/<update>/`. The parts live beside this host loop:
`car_jax.rl.checkpoints` (orbax save/restore, the resume check), `car_jax.rl.metric_logs` (the
row logs) and `car_jax.rl.progress` (the progress bar).
"""

from __future__ import annotations

import json
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
from car_jax.rl import checkpoints, metric_logs
from car_jax.rl.config import PPOConfig, PPOHyper
from car_jax.rl.ppo import PPOTrainer, RunnerState
from car_jax.rl.progress import ProgressBar, chunk_summary


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
    manager = checkpoints.open_manager(ckpt_dir)
    try:
        # --- start or resume ------------------------------------------------------------------
        if resume and manager.latest_step() is not None:
            checkpoints.check_resumable(meta_path, meta)
            # NOTE: a real (not abstract) template, so restored leaves get the same shardings
            # as a fresh run's and the compiled chunk accepts them.
            runner_template = init_fn(keys, hyper)
            step = int(manager.latest_step())
            runner = checkpoints.restore(manager, step, runner_template)
            rows = metric_logs.read_rows(jsonl_path, max_update=step)
        else:
            if not resume and (jsonl_path.exists() or manager.latest_step() is not None):
                raise UserError(
                    f"{out} already holds a training run; pass resume=True (--resume) to continue "
                    "it, or choose another output directory"
                )
            runner = init_fn(keys, hyper)
            step, rows = 0, []
        columns = metric_logs.rewrite_logs(jsonl_path, csv_path, rows)

        # --- compile the chunk function (ahead of time, so the timings exclude it) ---------------
        t0 = time.perf_counter()

        def chunk_fn(n: int):
            return trainer.batched_run(n).lower(runner, jnp.int32(step)).compile()

        executables: dict[int, Any] = {}
        if step < num_updates:
            executables[min(chunk, num_updates - step)] = chunk_fn(min(chunk, num_updates - step))
        compile_seconds = time.perf_counter() - t0
        meta["compile_seconds"] = compile_seconds
        meta_path.write_text(json.dumps(meta, indent=2))

        # --- host loop over chunks ---------------------------------------------------------------
        train_seconds = 0.0
        bar = ProgressBar(label, num_updates, step, enabled=progress)
        with bar:
            while step < num_updates:
                n = min(chunk, num_updates - step)
                t_start = time.perf_counter()
                if n not in executables:  # a shorter last chunk
                    executables[n] = chunk_fn(n)
                runner, metrics = executables[n](runner, jnp.int32(step))
                metrics = jax.device_get(metrics)
                dt = time.perf_counter() - t_start
                train_seconds += dt
                step += n
                new_rows = metric_logs.metric_rows(
                    seeds, metrics, config.batch_size, wall=train_seconds
                )
                columns = metric_logs.append_rows(jsonl_path, csv_path, new_rows, columns)
                rows.extend(new_rows)
                if step // ckpt_every > (step - n) // ckpt_every or step == num_updates:
                    checkpoints.save(manager, step, runner)
                summary = chunk_summary(metrics, n * config.batch_size * len(seeds) / dt, step)
                summary["env_steps"] = step * config.batch_size
                bar.update(step, summary)
                if chunk_callback is not None:
                    chunk_callback(step, summary)
        if manager.latest_step() != num_updates:
            checkpoints.save(manager, num_updates, runner)
    finally:
        manager.close()

    return RunResult(
        runner=runner,
        metrics=metric_logs.stack_rows(rows, seeds),
        seeds=seeds,
        out_dir=out,
        compile_seconds=compile_seconds,
        train_seconds=train_seconds,
    )
