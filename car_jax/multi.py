"""Several reward specs trained side by side in one compiled program.

`CodeReward(task, [compiled_a, compiled_b, ...])` is one env holding every spec's programs,
padded to the largest sub-task count; its params carry a spec index (a traced int32), and each
step evaluates the programs of every spec and keeps the row of that index. `train_specs` trains
one set of network parameters per (spec, seed) "unit" in one `jit(vmap(...))` over units, the
spec index batched with the seed keys, so K specs x S seeds cost one compile and run as one batch.

Unit u trains spec `u // S` with seed `seeds[u % S]` and the key `jax.random.key(seed)`, the key a
single-spec `train_run` gives that seed: training spec k alone or with others gives the same
metrics up to floating-point reduction order (tested). The host loop (logs, checkpoints, resume)
is the driver's `car_jax.rl.driver.train_folders`, with one run folder per spec.

Run directory (`out_dir`): per spec `<name>/metrics.csv`, `metrics.jsonl`, `run.json`,
`checkpoints/` (its slice of the runner) and `spec.py`; `run.json` (all specs), `summary.json`
(per spec, as `car-jax train`'s), `comparison.md` (table), `comparison.png` (curves).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from car_jax.errors import UserError
from car_jax.reward import CodeReward
from car_jax.rl.config import PPOConfig, PPOHyper
from car_jax.rl.driver import (
    RunFolder,
    RunResult,
    base_meta,
    evaluates_between_chunks,
    schedule,
    seed_tuple,
    train_folders,
)
from car_jax.rl.ppo import PPOTrainer, RunnerState

# Metrics whose last axis is the (padded) sub-task axis; sliced to each spec's own count.
SUBTASK_METRICS = ("eval_greedy_subtask_rate", "eval_stochastic_subtask_rate", "train_subtask_rate")


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

    def __init__(self, config: PPOConfig, env: CodeReward, network: Any = None):
        self.config = config
        self.env = env
        self.trainer = _SpecTrainer(config, env, network)
        self._compiled: dict[str, Any] = {}

    def init(self) -> Any:
        """`jit(vmap(init))` over unit keys (hyper shared): a reset is the same for every spec."""
        return self.trainer.batched_init()

    def run(self, num_updates: int, evaluate: bool = True) -> Any:
        """`jit(vmap(run num_updates))` over units: `(runner, spec_index[U], start) -> ...`."""
        name = f"run{num_updates}" + ("" if evaluate else "-noeval")
        if name not in self._compiled:

            def unit(runner: RunnerState, spec: jax.Array, start: jax.Array):
                with self.trainer.spec_bound(spec):
                    return self.trainer.run(runner, num_updates, start, evaluate)

            self._compiled[name] = jax.jit(jax.vmap(unit, in_axes=(0, 0, None)))
        return self._compiled[name]

    def evaluate(self) -> Any:
        """`jit(vmap(evaluate_runner))` over units: `(runner, spec_index[U]) -> eval metrics`."""
        if "evaluate" not in self._compiled:

            def unit(runner: RunnerState, spec: jax.Array):
                with self.trainer.spec_bound(spec):
                    return self.trainer.evaluate_runner(runner)

            self._compiled["evaluate"] = jax.jit(jax.vmap(unit))
        return self._compiled["evaluate"]


@dataclass
class MultiResult:
    """What `train_specs` returns: per spec a `RunResult` (metrics [seeds, U, ...]), and timings."""

    results: dict[str, RunResult]
    subtask_names: dict[str, list[str]]
    out_dir: Path
    compile_seconds: float
    train_seconds: float
    env_steps: int  # env steps of all units together


def _cut_subtasks(k: int):
    """Chunk metrics with sub-task vectors cut from the padded count to a spec's own `k`."""

    def cut(metrics: dict) -> dict:
        return {n: v[..., :k] if n in SUBTASK_METRICS else v for n, v in metrics.items()}

    return cut


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
    env: CodeReward,
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
      env: a `CodeReward` over the specs (`CodeReward(task, [compiled, ...])`).
      names: one folder name per spec of `env` (in order).
      seeds: seed list, or n for 0..n-1; unit (spec k, seed s) uses `jax.random.key(s)`.
      resume, chunk_updates, checkpoint_every, progress, label: as `car_jax.rl.train_run`.
      subtask_names: per spec, its sub-task names (for run.json; default the programs' names).
    """
    names = list(names)
    check_names(names)
    if len(names) != env.num_specs:
        raise UserError(f"got {len(names)} names for {env.num_specs} specs")
    seeds = seed_tuple(seeds, "train_specs")
    if subtask_names is None:
        subtask_names = [[p.name for p in c.programs] for c in env.specs]
    chunk, ckpt_every = schedule(config, chunk_updates, checkpoint_every)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    multi = MultiSpecTrainer(config, env)
    hyper = config.hyper()
    meta = {**base_meta(config, env, seeds, hyper, chunk, ckpt_every), "specs": names}
    folders = []
    for i, name in enumerate(names):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        source, old = env.specs[i].spec.to_source(), d / "spec.py"
        if resume and old.is_file() and old.read_text() != source:
            raise UserError(
                f"cannot resume {d}: its spec.py differs from the spec {name!r} given now"
            )
        old.write_text(source)
        spec_meta = {**meta, "spec": name, "subtasks": list(subtask_names[i]),
                     "code_weight": float(env.code_weights[i])}  # fmt: skip
        units = slice(i * len(seeds), (i + 1) * len(seeds))
        folders.append(RunFolder(d, spec_meta, units, _cut_subtasks(env.subtask_counts[i])))
    spec_index = jnp.repeat(jnp.arange(len(names), dtype=jnp.int32), len(seeds))
    program_meta = {**meta, "subtasks": dict(zip(names, map(list, subtask_names)))}
    run_fn, eval_fn = multi.run, None
    if multi.trainer.evaluator is not None and evaluates_between_chunks(config, chunk):
        run_fn, eval_fn = partial(multi.run, evaluate=False), multi.evaluate()
    results = train_folders(
        config, multi.init(), run_fn, seeds, folders, hyper=hyper, chunk=chunk,
        checkpoint_every=ckpt_every, resume=resume, progress=progress,
        label=label or f"{env.id} x{len(names)} specs", run_args=(spec_index,),
        program_meta=(out / "run.json", program_meta), eval_fn=eval_fn,
    )  # fmt: skip
    first = results[0]
    return MultiResult(
        results=dict(zip(names, results)),
        subtask_names={n: list(s) for n, s in zip(names, subtask_names)},
        out_dir=out,
        compile_seconds=first.compile_seconds,
        train_seconds=first.train_seconds,
        env_steps=config.num_updates * config.batch_size * len(names) * len(seeds),
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
