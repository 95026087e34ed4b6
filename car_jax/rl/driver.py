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

The loop itself is `train_folders`: one compiled program whose units (networks) are split over
one or more run folders, each logging and checkpointing its own slice. `train_run` is one folder;
`car_jax.multi.train_specs` (several reward specs side by side) is one folder per spec.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from car_jax.errors import UserError
from car_jax.map_limit import release_if_near_limit
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


@dataclass
class RunFolder:
    """A run folder of a training program: the units (networks) it logs and checkpoints.

    `units` picks its slice of the stacked runner and metrics (None: all units); `meta` goes
    to its `run.json` (with the compile time) and must match on resume; `cut(metrics)` maps its
    metrics [seeds, n, ...] to what it logs.
    """

    path: Path
    meta: dict
    units: slice | None = None
    cut: Callable[[dict], dict] | None = None


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of `n` (>= 0; 0 is divided by everything) in [1, max(1, at_most)]."""
    return max(d for d in range(1, max(1, at_most) + 1) if n % d == 0)


def default_chunk(num_updates: int, target_chunks: int = 20) -> int:
    """The largest divisor of `num_updates` not above num_updates / target_chunks (at least 1)."""
    return _largest_divisor(num_updates, num_updates // target_chunks)


def eval_aligned_chunk(config: PPOConfig, target_chunks: int = 20) -> int:
    """The largest chunk length not above num_updates / target_chunks whose chunks end at every
    evaluation point: it divides `eval_interval` and the last stretch after the last multiple
    of it, so one compiled length serves the whole run (at least 1)."""
    step = math.gcd(config.eval_interval, config.num_updates % config.eval_interval)
    return _largest_divisor(step, config.num_updates // target_chunks)


def evaluates_between_chunks(config: PPOConfig, chunk: int) -> bool:
    """Whether chunks of `chunk` updates end at every evaluation point of `config`, so the driver
    evaluates between them (a separate compiled call) instead of inside the chunk's scan."""
    interval, tail = config.eval_interval, config.num_updates % config.eval_interval
    return config.eval_episodes > 0 and interval % chunk == 0 and tail % chunk == 0


def seed_tuple(seeds: Sequence[int] | int, who: str) -> tuple[int, ...]:
    """`seeds` as a tuple (an int n means 0..n-1); refuses none or repeated ones."""
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds:
        raise UserError(f"{who} needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{who} seeds must be distinct, got {list(seeds)}")
    return seeds


def base_meta(config: PPOConfig, env: Any, seeds: tuple[int, ...], hyper: PPOHyper,
              chunk: int, checkpoint_every: int) -> dict:  # fmt: skip
    """The `run.json` fields every run folder has (a resume must match them, the observation's
    additions included: they change what the policy sees, not always the shape)."""
    return {
        "env": str(getattr(env, "id", "") or type(env).__name__),
        "observation": getattr(env, "observation_meta", dict)(),
        "seeds": list(seeds),
        "config": config.to_dict(),
        "hyper": {k: float(v) for k, v in vars(hyper).items()},
        "chunk_updates": chunk,
        "checkpoint_every": checkpoint_every,
        "devices": [str(d) for d in jax.devices()],
    }


def schedule(config: PPOConfig, chunk_updates: int | None, checkpoint_every: int | None):
    """(updates per compiled call, checkpoint interval), defaults filled in and checked.

    The default chunk ends at every evaluation point when a chunk at least half as long as the
    plain default does (`eval_aligned_chunk`): the driver then evaluates between chunks, where an
    evaluation costs less than half what it costs inside the chunk's scan on DoorKey-16x16
    (benchmarks/run_breakdown.py).
    """
    num_updates = config.num_updates
    if chunk_updates is None:
        chunk = default_chunk(num_updates)
        if config.eval_episodes > 0:
            aligned = eval_aligned_chunk(config)
            chunk = aligned if 2 * aligned >= chunk else chunk
    else:
        chunk = int(chunk_updates)
    if not 1 <= chunk <= num_updates:
        raise UserError(f"chunk_updates must lie in [1, num_updates={num_updates}], got {chunk}")
    ckpt_every = 5 * chunk if checkpoint_every is None else int(checkpoint_every)
    if ckpt_every < 1:
        raise UserError(f"checkpoint_every must be >= 1 update, got {ckpt_every}")
    return chunk, ckpt_every


def units_of(tree: Any, units: slice | None) -> Any:
    """The `units` slice of every leaf of a unit-stacked tree (the tree itself for None: all)."""
    if units is None:
        return tree
    return jax.tree.map(lambda x: x[units], tree)


def with_evaluation(metrics: dict, evaluation: dict) -> dict:
    """A chunk's metrics [units, n, ...] with `evaluation` [units, ...] as its last update's."""
    return {k: v.at[:, -1].set(evaluation[k]) if k in evaluation else v for k, v in metrics.items()}


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
    seeds = seed_tuple(seeds, "train_run")
    chunk, ckpt_every = schedule(config, chunk_updates, checkpoint_every)
    if trainer is None:
        trainer = PPOTrainer(config, env, network)
    hyper = config.hyper() if hyper is None else hyper
    meta = base_meta(config, env, seeds, hyper, chunk, ckpt_every)
    run_fn, eval_fn = trainer.batched_run, None
    if trainer.evaluator is not None and evaluates_between_chunks(config, chunk):
        run_fn, eval_fn = partial(trainer.batched_run, evaluate=False), trainer.batched_evaluate()
    (result,) = train_folders(
        config, trainer.batched_init(), run_fn, seeds, [RunFolder(Path(out_dir), meta)],
        hyper=hyper, resume=resume, chunk=chunk, checkpoint_every=ckpt_every, progress=progress,
        label=label or meta["env"], chunk_callback=chunk_callback, eval_fn=eval_fn,
    )  # fmt: skip
    return result


def train_folders(
    config: PPOConfig,
    init_fn: Callable[..., RunnerState],
    run_fn: Callable[[int], Any],
    seeds: tuple[int, ...],
    folders: Sequence[RunFolder],
    *,
    hyper: PPOHyper,
    chunk: int,
    checkpoint_every: int,
    resume: bool = False,
    progress: bool = True,
    label: str = "",
    chunk_callback: Callable[[int, dict[str, Any]], None] | None = None,
    run_args: tuple = (),
    program_meta: tuple[Path, dict] | None = None,
    eval_fn: Callable[..., dict] | None = None,
) -> list[RunResult]:
    """The host loop: train every unit in one compiled program, each folder logging its slice.

    Unit u starts from `jax.random.key(seeds[u % len(seeds)])`; every folder holds `len(seeds)`
    units, one per seed. `init_fn(keys, hyper)` is the batched init, `run_fn(n)` the jitted
    chunk of n updates called as `(runner, *run_args, start)`. A resume needs every folder to
    hold a checkpoint and continues from the earliest. `program_meta` = (path, meta) writes one
    more `run.json` for the whole program (with the compile time). Returns one `RunResult` per
    folder.

    `eval_fn`, when given, is the jitted evaluation `(runner, *run_args) -> eval metrics [units,
    ...]` and `run_fn` must then log NaN evaluations: the loop ends a chunk at every update
    where `config.eval_due`, evaluates there, and logs the result in that update's row.
    """
    release_if_near_limit()  # a long process (a sweep, a search) must not die in XLA's compiler
    num_updates, units = config.num_updates, len(folders) * len(seeds)
    keys = jax.vmap(jax.random.key)(jnp.asarray([s for _ in folders for s in seeds], jnp.uint32))
    for f in folders:
        f.path.mkdir(parents=True, exist_ok=True)
    jsonl = [f.path / "metrics.jsonl" for f in folders]
    csvs = [f.path / "metrics.csv" for f in folders]
    managers = [checkpoints.open_manager((f.path / "checkpoints").absolute()) for f in folders]
    try:
        # --- start or resume ------------------------------------------------------------------
        latest = [m.latest_step() for m in managers]
        if resume and None in latest and any(s is not None for s in latest):
            # Every folder is saved at the same steps, so a missing one was removed or comes
            # from another run; starting afresh would overwrite the others' logs.
            lacking = [str(f.path) for f, s in zip(folders, latest) if s is None]
            holding = [f"{f.path} (update {s})" for f, s in zip(folders, latest) if s is not None]
            raise UserError(
                f"cannot resume: {', '.join(lacking)} hold(s) no checkpoint while "
                f"{', '.join(holding)} do; a run saves all its folders together. Restore the "
                "missing checkpoints, or train into another output directory (nothing was "
                "changed)"
            )
        if resume and all(s is not None for s in latest):
            for f in folders:
                checkpoints.check_resumable(f.path / "run.json", f.meta)
            step = int(min(latest))
            # NOTE: a real (not abstract) template, so restored leaves get the same shardings
            # as a fresh run's and the compiled chunk accepts them.
            template = init_fn(keys, hyper)
            parts = [
                checkpoints.restore(m, step, units_of(template, f.units))
                for f, m in zip(folders, managers)
            ]
            runner = parts[0] if len(parts) == 1 else jax.tree.map(lambda *x: jnp.concatenate(x), *parts)  # fmt: skip
            rows = [metric_logs.read_rows(p, max_update=step) for p in jsonl]
        else:
            held = [
                f.path for f, s, p in zip(folders, latest, jsonl) if s is not None or p.exists()
            ]
            if not resume and held:
                raise UserError(
                    f"{held[0]} already holds a training run; pass resume=True (--resume) to "
                    "continue it, or choose another output directory"
                )
            runner = init_fn(keys, hyper)
            step, rows = 0, [[] for _ in folders]
        columns = [metric_logs.rewrite_logs(j, c, r) for j, c, r in zip(jsonl, csvs, rows)]

        # --- compile the chunk function (ahead of time, so the timings exclude it) ---------------
        t0 = time.perf_counter()
        executables: dict[int, Any] = {}

        def compiled(n: int):
            if n not in executables:
                start = jnp.int32(step)
                executables[n] = run_fn(n).lower(runner, *run_args, start).compile()
            return executables[n]

        def chunk_length() -> int:
            n = min(chunk, num_updates - step)
            return n if eval_fn is None else min(n, config.next_eval(step) - step)

        if step < num_updates:
            compiled(chunk_length())
            if eval_fn is not None:
                executables["eval"] = eval_fn.lower(runner, *run_args).compile()
            compile_seconds = time.perf_counter() - t0
        else:  # a finished run read back (resume): nothing compiled, keep what it recorded
            recorded = json.loads((folders[0].path / "run.json").read_text())
            compile_seconds = float(recorded.get("compile_seconds", 0.0))
        for f in folders:
            (f.path / "run.json").write_text(json.dumps({**f.meta, "compile_seconds": compile_seconds}, indent=2))  # fmt: skip
        if program_meta is not None:
            path, meta = program_meta
            path.write_text(json.dumps({**meta, "compile_seconds": compile_seconds}, indent=2))

        # --- host loop over chunks ---------------------------------------------------------------
        # NOTE: a resumed run's clock goes on from its last logged row, so the "time" column stays
        # monotonic and train_seconds is the whole run's training time.
        train_seconds = float(rows[0][-1].get("time", 0.0)) if rows[0] else 0.0
        bar = ProgressBar(label, num_updates, step, enabled=progress)
        with bar:
            while step < num_updates:
                n = chunk_length()
                t_start = time.perf_counter()
                fn = compiled(n)  # a shorter last chunk compiles here
                runner, metrics = fn(runner, *run_args, jnp.int32(step))
                if eval_fn is not None and config.eval_due(step + n):
                    metrics = with_evaluation(metrics, executables["eval"](runner, *run_args))
                metrics = jax.device_get(metrics)
                dt = time.perf_counter() - t_start
                train_seconds += dt
                step += n
                save = step // checkpoint_every > (step - n) // checkpoint_every or step == num_updates  # fmt: skip
                for i, f in enumerate(folders):
                    part = units_of(metrics, f.units)
                    part = part if f.cut is None else f.cut(part)
                    new_rows = metric_logs.metric_rows(seeds, part, config.batch_size, wall=train_seconds)  # fmt: skip
                    columns[i] = metric_logs.append_rows(jsonl[i], csvs[i], new_rows, columns[i])
                    rows[i].extend(new_rows)
                    if save:
                        checkpoints.save(managers[i], step, units_of(runner, f.units))
                summary = chunk_summary(metrics, n * config.batch_size * units / dt, step)
                summary["env_steps"] = step * config.batch_size
                bar.update(step, summary)
                if chunk_callback is not None:
                    chunk_callback(step, summary)
        for f, m in zip(folders, managers):
            if m.latest_step() != num_updates:
                checkpoints.save(m, num_updates, units_of(runner, f.units))
    finally:
        for m in managers:
            m.close()

    return [
        RunResult(
            runner=units_of(runner, f.units),
            metrics=metric_logs.stack_rows(r, seeds),
            seeds=seeds,
            out_dir=f.path,
            compile_seconds=compile_seconds,
            train_seconds=train_seconds,
        )
        for f, r in zip(folders, rows)
    ]
