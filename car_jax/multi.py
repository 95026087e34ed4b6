"""Several reward specs trained side by side in one compiled program.

`MultiCodeReward(task, [compiled_a, compiled_b, ...])` is one env holding every spec's programs,
padded to the largest sub-task count; its params carry a spec index (a traced int32), and each
step evaluates the programs of every spec and keeps the row of that index. `train_specs` trains
one set of network parameters per (spec, seed) "unit" in one `jit(vmap(...))` over units, the
spec index batched with the seed keys, so K specs x S seeds cost one compile and run as one batch.

Unit u trains spec `u // S` with seed `seeds[u % S]` and the key `jax.random.key(seed)`, the key a
single-spec `train_run` gives that seed: training spec k alone or with others gives the same
metrics up to floating-point reduction order (tested).

Run directory (`out_dir`): per spec `<name>/metrics.csv`, `metrics.jsonl`, `run.json`,
`checkpoints/` (its slice of the runner) and `spec.py`; `run.json` (all specs), `summary.json`
(per spec, as `car-jax train`'s), `comparison.md` (table), `comparison.png` (curves).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from car_jax.errors import UserError
from car_jax.reward import SHAPINGS, _progress_obs_shape, add_progress
from car_jax.rl import checkpoints, metric_logs
from car_jax.rl.config import PPOConfig, PPOHyper
from car_jax.rl.driver import RunResult, default_chunk
from car_jax.rl.ppo import PPOTrainer, RunnerState
from car_jax.rl.progress import ProgressBar, chunk_summary

# Metrics whose last axis is the (padded) sub-task axis; sliced to each spec's own count.
SUBTASK_METRICS = ("eval_greedy_subtask_rate", "eval_stochastic_subtask_rate", "train_subtask_rate")


class MultiRewardParams(struct.PyTreeNode):
    """The wrapped env's params, potential shaping's discount and the spec index (traced)."""

    env: Any
    gamma: jax.Array  # float32 scalar
    spec: jax.Array  # int32 scalar: which spec's programs pay the reward


class MultiRewardState(struct.PyTreeNode):
    """The wrapped env's state plus the index of the next sub-task to complete."""

    env_state: Any
    next_subtask: jax.Array  # int32 scalar in [0, K_spec]


class MultiCodeReward:
    """`CodeReward` over several specs at once; `params.spec` picks the one that pays.

    Args:
      task: the Task to wrap.
      specs: the `CompiledSpec`s (any sub-task counts; padded to the largest with never-done
        sub-tasks, which the index never passes).
      mode: which program inputs the programs read.
      bonus: reward per sub-task (every spec).
      code_weights: per spec, the weight of its code reward (0: a sparse baseline that still
        logs the spec's sub-tasks); default 1 for every spec.
      env_weight, shaping, gamma, progress_obs: as `CodeReward` (progress is one-hot over the
        padded count, so every spec's policy sees the same observation shape).
    """

    def __init__(
        self,
        task,
        specs: Sequence[Any],
        mode: str = "state",
        bonus: float = 0.5,
        code_weights: Sequence[float] | None = None,
        env_weight: float = 1.0,
        shaping: str = "bonus",
        gamma: float = 0.99,
        progress_obs: bool = False,
    ):
        if shaping not in SHAPINGS:
            raise UserError(f"unknown shaping {shaping!r}; expected one of {', '.join(SHAPINGS)}")
        if mode not in task.modes:
            raise UserError(f"task {task.id!r} has no input mode {mode!r}; it has {task.modes}")
        specs = tuple(specs)
        if not specs:
            raise UserError("MultiCodeReward needs at least one compiled spec")
        counts = [len(c.programs) for c in specs]
        if min(counts) == 0:
            raise UserError(
                f"spec {counts.index(0)} has no programs; every spec needs at least one"
            )
        weights = [1.0] * len(specs) if code_weights is None else [float(w) for w in code_weights]
        if len(weights) != len(specs):
            raise UserError(f"got {len(weights)} code weights for {len(specs)} specs")
        k = max(counts)
        self.task = task
        self.specs = specs
        self.mode = mode
        self.num_specs = len(specs)
        self.subtask_counts = tuple(counts)
        self.num_subtasks = k
        # Phi before sub-task j of spec s ([S, K + 1]); padded sub-tasks add nothing.
        bonus_rows = np.zeros((len(specs), k), np.float32)
        for s, n in enumerate(counts):
            bonus_rows[s, :n] = float(bonus)
        self.potential = jnp.concatenate(
            [jnp.zeros((len(specs), 1), jnp.float32), jnp.cumsum(jnp.asarray(bonus_rows), axis=1)],
            axis=1,
        )
        self.code_weights = jnp.asarray(weights, jnp.float32)
        self.env_weight = float(env_weight)
        self.shaping = shaping
        self.progress_obs = bool(progress_obs)
        self.id = task.id
        self.family = getattr(task, "family", "")
        self.params = MultiRewardParams(
            task.params, jnp.asarray(gamma, jnp.float32), jnp.zeros((), jnp.int32)
        )
        self.action = task.action
        self.max_steps = task.max_steps
        self.obs_shape, self.obs_dtype = _progress_obs_shape(
            tuple(task.obs_shape), task.obs_dtype, k, self.progress_obs
        )

    def with_discount(self, params: MultiRewardParams, gamma: jax.Array) -> MultiRewardParams:
        """`params` with potential shaping's discount replaced (PPO passes its traced gamma)."""
        return params.replace(gamma=jnp.asarray(gamma, jnp.float32))

    def with_spec(self, params: MultiRewardParams, spec: jax.Array) -> MultiRewardParams:
        """`params` with the paying spec's index replaced."""
        return params.replace(spec=jnp.asarray(spec, jnp.int32))

    def success(self, state: MultiRewardState) -> jax.Array:
        """The wrapped task's ground-truth success."""
        return self.task.success(state.env_state)

    def reset(self, key: jax.Array, params: MultiRewardParams):
        """Reset the env; the sub-task index starts at 0 (the same for every spec)."""
        obs, env_state = self.task.reset(key, params.env)
        idx = jnp.zeros((), jnp.int32)
        return self._observation(obs, idx), MultiRewardState(env_state, idx)

    def completion(self, obs: Any) -> jax.Array:
        """bool[S, K]: every spec's sub-task completion on one observation (padding False)."""
        rows = []
        for c in self.specs:
            done = c.completion(obs)
            rows.append(jnp.pad(done, (0, self.num_subtasks - done.shape[0])))
        return jnp.stack(rows)

    def step(self, key: jax.Array, state: MultiRewardState, action: jax.Array, params: Any):
        """Step the env and add the code reward of spec `params.spec`."""
        obs, env_state, env_reward, terminated, truncated, info = self.task.step(
            key, state.env_state, action, params.env
        )
        idx = state.next_subtask
        # NOTE: every spec's programs run on every step and the spec's row is gathered: under
        # vmap over units the index is batched, so a lax.switch would run every branch anyway.
        done_now = self.completion(self.task.observe(env_state, self.mode))[params.spec]
        done_or_past = done_now | (jnp.arange(self.num_subtasks) < idx)
        new_idx = jnp.cumprod(done_or_past.astype(jnp.int32)).sum().astype(jnp.int32)
        potential = self.potential[params.spec]
        if self.shaping == "bonus":
            code = potential[new_idx] - potential[idx]
        else:
            phi_next = jnp.where(terminated, 0.0, potential[new_idx])
            code = params.gamma * phi_next - potential[idx]
        code = self.code_weights[params.spec] * code.astype(jnp.float32)
        env_reward = jnp.asarray(env_reward, jnp.float32)
        info = dict(info)
        info.update(
            env_reward=env_reward,
            code_reward=code,
            subtask_done=jnp.arange(self.num_subtasks) < new_idx,
            success=self.task.success(env_state),
        )
        reward = self.env_weight * env_reward + code
        new_state = MultiRewardState(env_state, new_idx)
        return self._observation(obs, new_idx), new_state, reward, terminated, truncated, info

    def _observation(self, obs: jax.Array, idx: jax.Array) -> jax.Array:
        if not self.progress_obs:
            return obs
        return add_progress(obs, idx, self.num_subtasks)


class _SpecTrainer(PPOTrainer):
    """A PPOTrainer whose env params carry the spec index bound by `spec_bound`."""

    _spec: jax.Array | None = None

    def env_params(self, hyper: PPOHyper) -> Any:
        """The env params with the learner's gamma and, while tracing a unit, its spec index."""
        params = super().env_params(hyper)
        return params if self._spec is None else self.env.with_spec(params, self._spec)

    @contextmanager
    def spec_bound(self, spec: jax.Array):
        """Bind the (traced) spec index for the code traced inside the block."""
        # NOTE: trace-time state: only `env_params`, called while tracing `run`, reads it.
        # Resets do not need it (a reset is the same for every spec).
        self._spec = spec
        try:
            yield
        finally:
            self._spec = None


class MultiSpecTrainer:
    """PPO over (spec, seed) units in one program: `init(keys)`, `run(n)(runner, specs, start)`."""

    def __init__(self, config: PPOConfig, env: MultiCodeReward, network: Any = None):
        self.config = config
        self.env = env
        self.trainer = _SpecTrainer(config, env, network)
        self._compiled: dict[str, Any] = {}

    def init(self) -> Any:
        """`jit(vmap(init))` over unit keys (hyper shared)."""
        if "init" not in self._compiled:
            self._compiled["init"] = jax.jit(jax.vmap(self.trainer.init, in_axes=(0, None)))
        return self._compiled["init"]

    def run(self, num_updates: int) -> Any:
        """`jit(vmap(run num_updates))` over units: `(runner, spec_index[U], start) -> ...`."""
        name = f"run{num_updates}"
        if name not in self._compiled:

            def unit(runner: RunnerState, spec: jax.Array, start: jax.Array):
                with self.trainer.spec_bound(spec):
                    return self.trainer.run(runner, num_updates, start)

            self._compiled[name] = jax.jit(jax.vmap(unit, in_axes=(0, 0, None)))
        return self._compiled[name]


@dataclass
class MultiResult:
    """What `train_specs` returns: per spec a `RunResult` (metrics [seeds, U, ...]), and timings."""

    results: dict[str, RunResult]
    subtask_names: dict[str, list[str]]
    out_dir: Path
    compile_seconds: float
    train_seconds: float
    env_steps: int  # env steps of all units together


def _slice_units(tree: Any, lo: int, hi: int) -> Any:
    return jax.tree.map(lambda x: x[lo:hi], tree)


def _spec_metrics(metrics: dict, lo: int, hi: int, k: int) -> dict:
    """Units lo:hi of chunk metrics [U, n, ...], sub-task vectors cut to the spec's own k."""
    out = {}
    for name, v in metrics.items():
        v = np.asarray(v)[lo:hi]
        out[name] = v[..., :k] if name in SUBTASK_METRICS else v
    return out


def check_names(names: Sequence[str]) -> None:
    """Refuse spec names that are empty, repeated or not usable as a folder name."""
    seen = set()
    for n in names:
        if not n or n in (".", "..") or "/" in n or os.sep in n or n == "checkpoints":
            raise UserError(f"spec name {n!r} cannot name a run folder; use letters, digits, -_.")
        if n in seen:
            raise UserError(f"two specs are named {n!r}; give every spec its own name")
        seen.add(n)


def train_specs(
    config: PPOConfig,
    env: MultiCodeReward,
    names: Sequence[str],
    seeds: Sequence[int] | int,
    out_dir: str | os.PathLike,
    resume: bool = False,
    chunk_updates: int | None = None,
    checkpoint_every: int | None = None,
    progress: bool = True,
    label: str | None = None,
    subtask_names: Sequence[Sequence[str]] | None = None,
) -> MultiResult:
    """Train every spec of `env` on every seed in one compiled program, logs per spec.

    Args:
      names: one folder name per spec of `env` (in order).
      seeds: seed list, or n for 0..n-1; unit (spec k, seed s) uses `jax.random.key(s)`.
      resume, chunk_updates, checkpoint_every, progress, label: as `car_jax.rl.train_run`.
      subtask_names: per spec, its sub-task names (for run.json; default the programs' names).
    """
    names = list(names)
    check_names(names)
    if len(names) != env.num_specs:
        raise UserError(f"got {len(names)} names for {env.num_specs} specs")
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"train_specs needs at least one seed, all distinct; got {list(seeds)}")
    if subtask_names is None:
        subtask_names = [[p.name for p in c.programs] for c in env.specs]
    n_seeds, num_updates = len(seeds), config.num_updates
    chunk = default_chunk(num_updates) if chunk_updates is None else int(chunk_updates)
    if not 1 <= chunk <= num_updates:
        raise UserError(f"chunk_updates must lie in [1, num_updates={num_updates}], got {chunk}")
    ckpt_every = 5 * chunk if checkpoint_every is None else int(checkpoint_every)
    if ckpt_every < 1:
        raise UserError(f"checkpoint_every must be >= 1 update, got {ckpt_every}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    multi = MultiSpecTrainer(config, env)
    hyper = config.hyper()
    unit_seeds = [s for _ in names for s in seeds]
    keys = jax.vmap(jax.random.key)(jnp.asarray(unit_seeds, jnp.uint32))
    spec_index = jnp.repeat(jnp.arange(len(names), dtype=jnp.int32), n_seeds)
    base_meta = {
        "env": env.id,
        "seeds": list(seeds),
        "config": config.to_dict(),
        "hyper": {k: float(v) for k, v in vars(hyper).items()},
        "chunk_updates": chunk,
        "checkpoint_every": ckpt_every,
        "devices": [str(d) for d in jax.devices()],
        "specs": names,
    }
    dirs = [out / n for n in names]
    metas = []
    for i, d in enumerate(dirs):
        d.mkdir(parents=True, exist_ok=True)
        source, old = env.specs[i].spec.to_source(), d / "spec.py"
        if resume and old.is_file() and old.read_text() != source:
            raise UserError(
                f"cannot resume {d}: its spec.py differs from the spec {names[i]!r} given now"
            )
        old.write_text(source)
        metas.append({**base_meta, "spec": names[i], "subtasks": list(subtask_names[i]),
                      "code_weight": float(env.code_weights[i])})  # fmt: skip
    managers = [checkpoints.open_manager((d / "checkpoints").absolute()) for d in dirs]
    init_fn = multi.init()
    try:
        latest = [m.latest_step() for m in managers]
        if resume and all(s is not None for s in latest):
            for d, meta in zip(dirs, metas):
                checkpoints.check_resumable(d / "run.json", meta)
            step = min(latest)
            template = init_fn(keys, hyper)
            parts = [
                checkpoints.restore(m, step, _slice_units(template, i * n_seeds, (i + 1) * n_seeds))
                for i, m in enumerate(managers)
            ]
            runner = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
            rows = [metric_logs.read_rows(d / "metrics.jsonl", max_update=step) for d in dirs]
        else:
            held = [str(d) for d, s in zip(dirs, latest) if s is not None or (d / "metrics.jsonl").exists()]  # fmt: skip
            if not resume and held:
                raise UserError(
                    f"{held[0]} already holds a training run; pass resume=True (--resume) to "
                    "continue it, or choose another output directory"
                )
            runner = init_fn(keys, hyper)
            step, rows = 0, [[] for _ in dirs]
        columns = [
            metric_logs.rewrite_logs(d / "metrics.jsonl", d / "metrics.csv", r)
            for d, r in zip(dirs, rows)
        ]

        t0 = time.perf_counter()
        executables: dict[int, Any] = {}

        def compiled(n: int):
            if n not in executables:
                executables[n] = multi.run(n).lower(runner, spec_index, jnp.int32(step)).compile()
            return executables[n]

        if step < num_updates:
            compiled(min(chunk, num_updates - step))
        compile_seconds = time.perf_counter() - t0
        for d, meta in zip(dirs, metas):
            (d / "run.json").write_text(json.dumps({**meta, "compile_seconds": compile_seconds}, indent=2))  # fmt: skip
        (out / "run.json").write_text(json.dumps({**base_meta, "compile_seconds": compile_seconds,
                                                  "subtasks": dict(zip(names, map(list, subtask_names)))},
                                                 indent=2))  # fmt: skip

        train_seconds = 0.0
        units = len(unit_seeds)
        bar = ProgressBar(label or f"{env.id} x{len(names)} specs", num_updates, step, progress)
        with bar:
            while step < num_updates:
                n = min(chunk, num_updates - step)
                t_start = time.perf_counter()
                fn = compiled(n)
                runner, metrics = fn(runner, spec_index, jnp.int32(step))
                metrics = jax.device_get(metrics)
                dt = time.perf_counter() - t_start
                train_seconds += dt
                step += n
                save = step // ckpt_every > (step - n) // ckpt_every or step == num_updates
                for i, d in enumerate(dirs):
                    lo, hi = i * n_seeds, (i + 1) * n_seeds
                    part = _spec_metrics(metrics, lo, hi, env.subtask_counts[i])
                    new_rows = metric_logs.metric_rows(seeds, part, config.batch_size, wall=train_seconds)  # fmt: skip
                    columns[i] = metric_logs.append_rows(
                        d / "metrics.jsonl", d / "metrics.csv", new_rows, columns[i]
                    )
                    rows[i].extend(new_rows)
                    if save:
                        checkpoints.save(managers[i], step, _slice_units(runner, lo, hi))
                summary = chunk_summary(metrics, n * config.batch_size * units / dt, step)
                bar.update(step, summary)
        for i, m in enumerate(managers):
            if m.latest_step() != num_updates:
                lo, hi = i * n_seeds, (i + 1) * n_seeds
                checkpoints.save(m, num_updates, _slice_units(runner, lo, hi))
    finally:
        for m in managers:
            m.close()

    results = {
        name: RunResult(
            runner=_slice_units(runner, i * n_seeds, (i + 1) * n_seeds),
            metrics=metric_logs.stack_rows(rows[i], seeds),
            seeds=seeds,
            out_dir=dirs[i],
            compile_seconds=compile_seconds,
            train_seconds=train_seconds,
        )
        for i, name in enumerate(names)
    }
    return MultiResult(
        results=results,
        subtask_names={n: list(s) for n, s in zip(names, subtask_names)},
        out_dir=out,
        compile_seconds=compile_seconds,
        train_seconds=train_seconds,
        env_steps=num_updates * config.batch_size * len(unit_seeds),
    )


# --- reports ------------------------------------------------------------------------------------
def summarize_specs(result: MultiResult, threshold: float = 0.9) -> dict:
    """Per spec `car-jax train`'s summary (eval success IQM, CI, steps to threshold, ...).

    Compile and train seconds are the whole program's (all specs together); `env_steps_per_second`
    per spec is its own share, and `"all specs"` gives the program's total throughput.
    """
    from car_jax.experiment import summarize

    out = {}
    for name, res in result.results.items():
        entry = summarize({name: res}, result.subtask_names[name], threshold)[name]
        entry["subtasks"] = result.subtask_names[name]
        out[name] = entry
    out["all specs"] = {
        "compile_seconds": result.compile_seconds,
        "train_seconds": result.train_seconds,
        "env_steps": result.env_steps,
        "env_steps_per_second": result.env_steps / result.train_seconds
        if result.train_seconds
        else None,
        "note": "all specs x seeds trained in one compiled program; per-spec seconds are shared",
    }
    return out


def comparison_table(summary: dict, threshold: float = 0.9) -> str:
    """Markdown: per spec, final greedy eval success IQM [95% CI], per seed, steps to threshold."""
    pct = int(round(threshold * 100))
    rows = [
        f"| spec | sub-tasks | final greedy eval success: IQM [95% CI] | per seed "
        f"| env steps to sustained {pct}%: median (seeds there) | final sub-task rates |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        if name == "all specs":
            continue
        low, high = s["final_success_ci95"]
        steps = s[f"steps_to_{pct}pct"]
        steps_txt = "not reached" if steps is None or steps != steps else f"{steps:,.0f}"
        per_seed = " ".join(f"{x:.0%}" for x in s["final_success_per_seed"])
        rates = ", ".join(f"{k} {v:.0%}" for k, v in s["final_subtask_rates"].items())
        rows.append(
            f"| {name} | {len(s['subtasks'])} | {s['final_success']:.0%} [{low:.0%}, {high:.0%}] "
            f"| {per_seed} | {steps_txt} ({s[f'seeds_reaching_{pct}pct']}/{len(s['seeds'])}) "
            f"| {rates} |"
        )
    return "\n".join(rows) + "\n"


def write_comparison(result: MultiResult, title: str, threshold: float = 0.9) -> dict:
    """Write summary.json, comparison.md and comparison.png into the run directory."""
    from car_jax.experiment import curves, write_summary
    from car_jax.report import plot_curves

    summary = summarize_specs(result, threshold)
    write_summary(result.out_dir / "summary.json", summary)
    table = comparison_table(summary, threshold)
    (result.out_dir / "comparison.md").write_text(f"# {title}\n\n{table}\n![curves](comparison.png)\n")  # fmt: skip
    plot_curves(curves(result.results), result.out_dir / "comparison.png", title)
    return summary
