"""Stage 2: verify reward programs on batched expert, random and near-miss trajectories.

Every program is evaluated once on every VALID step of every trajectory (padding after an
episode's end is skipped: valid steps are gathered into fixed-size chunks, one compiled
`vmap` per chunk size); the per-step results are reduced to per-sub-task figures and a `Verdict`
whose reasons are plain sentences a person or a VLM can act on. Pixel specs of sprite-grid
tasks are evaluated on cell ids (lazy frames), and K specs share one compiled evaluation
(`verify_specs`, `Verifier.verify_many` / `final_many`), with the verdicts of each alone. The
criteria, their defaults and why each exists are in docs/verification.md.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

from car_jax.errors import UserError
from car_jax.jsonutil import json_safe
from car_jax.map_limit import release_if_near_limit

# One default sample size for `verify`, `generate` and `run` (expert, random and epsilon-expert
# runs each). At 256 runs a 10% rate has a 95% Wilson interval of about +-4 points (at 64 it
# is +-7); the cost per -n is measured in docs/verification.md ("Sample size").
DEFAULT_N = 256
# Too few successful demonstrations left after dropping failed ones cannot confirm a spec.
MIN_EXPERT_RUNS = 8
# Rollouts of the held-out set come from this stream of the seed, never from the feedback one.
HELD_OUT_STREAM = 1_000_003
# Valid steps are evaluated in chunks of this many (fewer for small sets): small enough that the
# padding of the last chunk costs little, large enough that dispatch does not.
CHUNK_STEPS = 1024


@dataclass(frozen=True)
class Criteria:
    """Acceptance thresholds; defaults start from the paper's released verifier and go further."""

    min_steps: int = 1  # a sub-task completes on a trajectory when true on >= min_steps valid steps
    expert_rate: float = 1.0  # must complete on at least this fraction of expert trajectories
    random_rate: float = 0.10  # may complete on at most this fraction of random trajectories
    # Random runs count within a per-sub-task window: "expert" = the median step at which the
    # expert first completes that sub-task; "full" = the whole random trajectory.
    random_window: str = "expert"
    order_rate: float = 1.0  # expert runs where it does not complete before its predecessor
    tie_rate: float = 0.5  # at most this share of expert runs may tie with the predecessor
    trivial_rate: float = 0.5  # refused when already true at the first step of more than this
    early_rate: float = 0.05  # last program: share of expert runs where it fires before success
    negative_rate: float = 0.05  # last program: share of failed runs (each kind) where it fires
    success_recall: float = 0.9  # last program: share of successful runs where it fires

    def __post_init__(self):
        if self.min_steps < 1:
            raise UserError(f"criteria: min_steps must be >= 1, got {self.min_steps}")
        if self.random_window not in ("expert", "full"):
            raise UserError(
                f"criteria: random_window must be 'expert' or 'full', got {self.random_window!r}"
            )
        for name in ("expert_rate", "random_rate", "order_rate", "tie_rate", "trivial_rate",
                     "early_rate", "negative_rate", "success_recall"):  # fmt: skip
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserError(f"criteria: {name} must be in [0, 1], got {v}")


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a rate of `k` successes in `n` trials."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Rate:
    """A measured rate: `k` of `n` runs, with its 95% Wilson interval."""

    k: int
    n: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, flags: np.ndarray) -> Rate:
        """The rate of True in a 1-D bool array."""
        k, n = int(np.sum(flags)), int(np.size(flags))
        lo, hi = wilson_interval(k, n)
        return cls(k, n, k / n if n else float("nan"), lo, hi)

    def text(self) -> str:
        """E.g. `4% [2–7%]`, or `—` when there were no runs."""
        if self.n == 0:
            return "—"
        return f"{self.rate:.0%} [{self.low:.0%}–{self.high:.0%}]"


@dataclass
class SubtaskVerdict:
    """Figures, pass/fail and reasons for one sub-task program."""

    name: str
    description: str
    expert: Rate  # expert trajectories on which it completes
    random: Rate  # random trajectories on which it completes within the window
    random_window: int  # steps of each random trajectory counted for the random rate
    start_rate: float  # fraction of all trajectories on which it is true at the first step
    order_rate: float  # expert runs where it does not complete before its predecessor
    tie_rate: float  # expert runs where it first completes on the same step as its predecessor
    first_step_mean: float  # first-completion step on expert runs (those that complete)
    first_step_std: float
    nan_runs: int = 0  # trajectories on which it returns NaN on some valid step
    passed: bool = True
    reasons: list[str] = field(default_factory=list)

    @property
    def expert_rate(self) -> float:
        """Fraction of expert trajectories on which it completes."""
        return self.expert.rate

    @property
    def random_rate(self) -> float:
        """Fraction of random trajectories on which it completes within the window."""
        return self.random.rate


@dataclass
class Negative:
    """Runs of one kind that did not succeed, and how often the whole-task program fires on them."""

    kind: str  # "random", "expert cut before success", "epsilon-expert"
    fired: Rate


@dataclass
class WholeTask:
    """The last program against the task's ground truth (per step where the data has it)."""

    name: str
    timing_runs: int  # expert runs checked for timing (0 when skipped)
    early: Rate  # expert runs where it first fires before the task is first solved
    early_steps: float  # mean steps early, over those runs
    late: Rate  # expert runs where it first fires after the task is first solved
    late_steps: float
    negatives: list[Negative]  # per kind of run that did not succeed
    recall: Rate  # successful runs (every kind) on which it fires
    skipped: list[str] = field(default_factory=list)  # checks not run, and why


@dataclass
class Verdict:
    """The result of verifying a spec: per sub-task figures and the whole-task agreement."""

    task: str
    passed: bool
    subtasks: list[SubtaskVerdict]
    whole_task: WholeTask
    n_expert: int  # successful expert runs used (after dropping failed demonstrations)
    n_random: int
    n_epsilon: int  # epsilon-expert runs (0 when none)
    order_fraction: float  # expert runs on which all sub-tasks complete in strict order
    criteria: Criteria
    reasons: list[str] = field(default_factory=list)  # spec-level reasons
    notes: list[str] = field(default_factory=list)  # things the user should know (not failures)
    rollout_set: str = "given"  # "feedback", "held-out", "collected" or "given" (passed in)
    seed: int | None = None
    feedback_verdict: Verdict | None = None  # on a held-out verdict: the feedback set's

    @property
    def success_recall(self) -> float:
        """Share of successful runs on which the last program fires."""
        return self.whole_task.recall.rate

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN, e.g. the first step of a never-completed sub-task, -> null)."""
        return json_safe(asdict(self))

    def to_json(self, indent: int = 2) -> str:
        """The verdict as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """Inverse of `to_dict`."""
        d = dict(d)
        d["subtasks"] = [
            SubtaskVerdict(
                **{
                    **_nan(s),
                    "expert": Rate(**_nan(s["expert"])),
                    "random": Rate(**_nan(s["random"])),
                }
            )
            for s in d["subtasks"]
        ]
        w = _nan(d["whole_task"])
        for k in ("early", "late", "recall"):
            w[k] = Rate(**_nan(w[k]))
        w["negatives"] = [Negative(n["kind"], Rate(**_nan(n["fired"]))) for n in w["negatives"]]
        d["whole_task"] = WholeTask(**w)
        d["criteria"] = Criteria(**d["criteria"])
        if d.get("feedback_verdict") is not None:
            d["feedback_verdict"] = cls.from_dict(d["feedback_verdict"])
        return cls(**d)

    def to_markdown(self) -> str:
        """Tables of the per-sub-task and whole-task figures, then notes and reasons."""
        c = self.criteria
        where = {
            "held-out": f"held-out rollouts (seed {self.seed}, another stream than the feedback "
            "rounds'; never shown to the model)",
            "feedback": f"the feedback rollouts (seed {self.seed})",
            "collected": f"rollouts collected with seed {self.seed}",
        }.get(self.rollout_set, "the given trajectories")
        eps = f", {self.n_epsilon} epsilon-expert" if self.n_epsilon else ""
        lines = [
            f"**Verdict: {'ACCEPTED' if self.passed else 'REJECTED'}** — {self.task}",
            "",
            f"On {where}: {self.n_expert} expert, {self.n_random} random{eps} trajectories; a "
            f"sub-task completes when its program is true on >= {c.min_steps} valid step(s). "
            "Random runs count "
            + (
                "within each sub-task's window (the expert's median steps to complete it)."
                if c.random_window == "expert"
                else "over their whole length."
            )
            + " Rates show their 95% Wilson interval.",
            "",
            "| # | sub-task | expert | random (window) | true at start | in order | tie with previous | first step (expert) | result |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for i, s in enumerate(self.subtasks):
            first = (
                "—"
                if np.isnan(s.first_step_mean)
                else f"{s.first_step_mean:.1f} ± {s.first_step_std:.1f}"
            )
            tie = "—" if i == 0 else f"{s.tie_rate:.0%}"
            lines.append(
                f"| {i + 1} | `{s.name}` | {s.expert.text()} | {s.random.text()} ({s.random_window}) | "
                f"{s.start_rate:.0%} | {s.order_rate:.0%} | {tie} | {first} | {'pass' if s.passed else 'FAIL'} |"
            )
        w = self.whole_task
        lines += [
            "",
            f"Limits: expert >= {c.expert_rate:.0%}, random <= {c.random_rate:.0%}, "
            f"in order >= {c.order_rate:.0%}, tie with previous <= {c.tie_rate:.0%}, "
            f"true at start <= {c.trivial_rate:.0%}, no NaN on any valid step. "
            f"All sub-tasks in strict order on {self.order_fraction:.0%} of expert runs.",
            "",
            f"Whole task (`{w.name}`) against the task's ground-truth success:",
            "",
            "| check | runs | rate [95% CI] | limit |",
            "|---|---|---|---|",
        ]
        if w.timing_runs:
            early = f" (by {w.early_steps:.1f} steps)" if w.early.k else ""
            late = f" (by {w.late_steps:.1f} steps)" if w.late.k else ""
            lines.append(
                f"| fires before the task is solved (expert){early} | {w.early.n} | "
                f"{w.early.text()} | <= {c.early_rate:.0%} |"
            )
            lines.append(
                f"| fires after the task is solved (expert){late} | {w.late.n} | "
                f"{w.late.text()} | reported |"
            )
        for neg in w.negatives:
            lines.append(
                f"| fires on {_NEGATIVE_LABEL[neg.kind]} | {neg.fired.n} | {neg.fired.text()} | "
                f"<= {c.negative_rate:.0%} |"
            )
        lines.append(
            f"| fires on runs that succeed (recall) | {w.recall.n} | {w.recall.text()} | "
            f">= {c.success_recall:.0%} |"
        )
        notes = list(self.notes) + [f"skipped: {s}" for s in w.skipped]
        if notes:
            lines += ["", "Notes:"] + [f"- {n}" for n in notes]
        if self.feedback_verdict is not None:
            fb = self.feedback_verdict
            lines += [
                "",
                f"On the feedback rollouts (seed {fb.seed}) the same spec was "
                f"{'ACCEPTED' if fb.passed else 'REJECTED'}"
                + (
                    ": " + "; ".join(fb.all_reasons())
                    if not fb.passed
                    else " (expert "
                    + ", ".join(f"{s.expert.rate:.0%}" for s in fb.subtasks)
                    + "; random "
                    + ", ".join(f"{s.random.rate:.0%}" for s in fb.subtasks)
                    + ")."
                ),
            ]
        reasons = self.all_reasons()
        if reasons:
            lines += ["", "Reasons:"] + [f"- {r}" for r in reasons]
        return "\n".join(lines) + "\n"

    def all_reasons(self) -> list[str]:
        """Every reason, sub-task ones prefixed with the program name."""
        out = [f"`{s.name}`: {r}" for s in self.subtasks for r in s.reasons]
        return out + list(self.reasons)

    def feedback(self) -> str:
        """What a VLM is told in a feedback round: failing programs and why."""
        if self.passed:
            return "All programs passed verification."
        lines = ["Verification rejected the programs for these reasons:"]
        lines += [f"- {r}" for r in self.all_reasons()]
        ok = [s.name for s in self.subtasks if s.passed]
        if ok:
            lines.append(f"These programs passed and may be kept as they are: {', '.join(ok)}.")
        return "\n".join(lines)


_NEGATIVE_LABEL = {
    "random": "random runs that did not succeed",
    "expert cut before success": "expert runs cut just before success",
    "epsilon-expert": "epsilon-expert runs that did not succeed",
}


def _nan(d: dict[str, Any]) -> dict[str, Any]:
    return {k: float("nan") if v is None else v for k, v in d.items()}


# --- evaluating programs on valid steps ---------------------------------------------------------
# NOTE: jax is imported inside functions so that `car-jax --help` (which reads DEFAULT_N) stays
# light.
@functools.cache
def _gather_rows():
    """A jitted gather of rows `idx` from every flat input array."""
    import jax
    import jax.numpy as jnp

    # NOTE: one compile per (input shapes, chunk size); the same rollouts reuse it every round.
    return jax.jit(lambda flat, idx: jax.tree.map(lambda a: jnp.take(a, idx, axis=0), flat))


def _evaluator(specs: tuple, sheets: dict[str, Any]):
    """A cached `jit(vmap(...))` of every program of `specs` over a flat batch of steps.

    Inputs given as sprite cell ids (`sheets`: the task's sprite-grid inputs) go as they are to
    the specs compiled with those sheets (lazy frames); the others get the frame drawn from the
    ids (the task's own sprite gather; under jit it is compiled away where nobody reads it).
    """
    import jax
    import jax.numpy as jnp

    key = ("evaluate_flat", specs[1:], tuple(sorted(sheets)))
    cache = specs[0]._jit_cache
    if key not in cache:
        reads = [
            {k for k in sheets if all(k in p.sprite_frames for p in c.programs)} for c in specs
        ]

        def evaluate(obs):
            drawn = {}
            for name, sheet in sheets.items():
                v = obs.get(name)
                # NOTE: shapes are static: ids or frame is decided at trace time.
                if v is not None and tuple(v.shape) == tuple(sheet.grid_shape):
                    drawn[name] = sheet.draw(v.astype(jnp.int32))
            done, nan = [], []
            for c, cells in zip(specs, reads):
                d, m = c.evaluate({**obs, **{k: v for k, v in drawn.items() if k not in cells}})
                done.append(d)
                nan.append(m)
            return jnp.concatenate(done), jnp.concatenate(nan)

        cache[key] = jax.jit(jax.vmap(evaluate))
    return cache[key]


def chunk_size(valid_steps: int) -> int:
    """Steps per evaluation chunk for a set of `valid_steps`: CHUNK_STEPS, or the next power of 2."""
    return min(CHUNK_STEPS, 1 << max(0, int(math.ceil(math.log2(max(1, valid_steps))))))


def _as_specs(compiled) -> tuple:
    """One CompiledSpec or a sequence of them, as a tuple."""
    return tuple(compiled) if isinstance(compiled, list | tuple) else (compiled,)


def evaluate_valid_steps(
    compiled, traj, chunk: int | None = None, *, task=None
) -> tuple[np.ndarray, np.ndarray]:
    """Every program on every valid step only: (done [N, T, K], nan [N, T, K]), False off `valid`.

    `compiled` is one CompiledSpec or several (their programs concatenated along K, evaluated
    in ONE compiled function). Valid steps are gathered into chunks of a fixed size
    (`chunk_size`; the last one padded by repeating a valid step, its results dropped), so
    padding after episodes end costs nothing and one compiled function serves every chunk.
    Trajectories that hold cell ids (`traj.cell_inputs`) need `task` (its sprite sheets) unless
    every spec was compiled with them.
    """
    import jax.numpy as jnp

    from car_jax.sprite_inputs import task_sprite_frames

    specs = _as_specs(compiled)
    sheets = task_sprite_frames(task, traj.mode) if task is not None else {}
    for name in traj.cell_inputs:
        if name not in sheets and not all(
            name in p.sprite_frames for c in specs for p in c.programs
        ):
            raise UserError(
                f"the trajectories hold cell ids for input {name!r} but no sprite sheet draws "
                "them: pass the task, or compile the spec with its sprite frames"
            )
    valid = np.asarray(traj.valid, bool)
    n, t = valid.shape
    k = sum(len(c.programs) for c in specs)
    done = np.zeros((n * t, k), bool)
    nan = np.zeros((n * t, k), bool)
    idx = np.flatnonzero(valid.reshape(-1))
    if idx.size == 0:
        return done.reshape(n, t, k), nan.reshape(n, t, k)
    size = chunk or chunk_size(idx.size)
    flat = {name: a.reshape(n * t, *a.shape[2:]) for name, a in traj.inputs.items()}
    evaluate = _evaluator(specs, {k_: sheets[k_] for k_ in traj.cell_inputs if k_ in sheets})
    for start in range(0, idx.size, size):
        part = idx[start : start + size]
        padded = np.concatenate([part, np.full(size - part.size, part[0], part.dtype)])
        d, m = evaluate(_gather_rows()(flat, jnp.asarray(padded, jnp.int32)))
        done[part] = np.asarray(d)[: part.size]
        nan[part] = np.asarray(m)[: part.size]
    return done.reshape(n, t, k), nan.reshape(n, t, k)


class SetFigures(NamedTuple):
    """Per-trajectory figures of every program on one trajectory set."""

    completed: np.ndarray  # [N, K] true on >= min_steps valid steps
    first: np.ndarray  # [N, K] step where it first completes (T when never)
    at_start: np.ndarray  # [N, K] true on the first step
    nan: np.ndarray  # [N, K] NaN on some valid step
    first_solved: (
        np.ndarray | None
    )  # [N] first step the task is solved (T when never); None: no data
    success: np.ndarray  # [N]


def set_figures(done: np.ndarray, nan: np.ndarray, traj, min_steps: int) -> SetFigures:
    """Reduce per-step completion `[N, T, K]` (already masked by `valid`) to per-run figures."""
    n, t, _ = done.shape
    count = np.cumsum(done, axis=1, dtype=np.int32)
    reached = count >= min_steps
    completed = reached[:, -1, :]
    first = np.where(completed, np.argmax(reached, axis=1), t)
    first_solved = None
    if traj.solved is not None:
        solved = np.asarray(traj.solved, bool) & np.asarray(traj.valid, bool)
        first_solved = np.where(solved.any(axis=1), np.argmax(solved, axis=1), t)
    return SetFigures(
        completed,
        first,
        done[:, 0, :],
        nan.any(axis=1),
        first_solved,
        np.asarray(traj.success, bool),
    )


def completion_figures(compiled):
    """The dense reference path: a jitted `(inputs, valid, min_steps) -> (completed, first, at_start)`.

    Evaluates every step, padding included, in one `vmap(vmap(...))`; `verify_spec` evaluates
    valid steps only (`evaluate_valid_steps`) with identical figures. Kept as the tests' reference.
    """
    import jax
    import jax.numpy as jnp

    def figures(inputs: dict[str, Any], valid: Any, min_steps: int):
        # NOTE: min_steps is static (it is part of the jit cache key below).
        done = jax.vmap(jax.vmap(compiled.completion))(inputs)  # [N, T, K]
        done = done & valid[..., None]
        count = jnp.cumsum(done.astype(jnp.int32), axis=1)  # [N, T, K]
        completed = count[:, -1, :] >= min_steps  # [N, K]
        reached = count >= min_steps
        t = done.shape[1]
        first = jnp.where(completed, jnp.argmax(reached, axis=1), t)  # [N, K]
        at_start = done[:, 0, :]  # [N, K]
        return completed, first, at_start

    return jax.jit(figures, static_argnums=2)


def completion_matrix(compiled, traj) -> np.ndarray:
    """Per-step completion of every program, `[K, N, T]` bool (False off `valid`)."""
    done, _ = evaluate_valid_steps(compiled, traj)
    return np.moveaxis(done, -1, 0)


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _select(fig: SetFigures, keep: np.ndarray) -> SetFigures:
    return SetFigures(
        *(None if a is None else a[keep] for a in fig)  # type: ignore[arg-type]
    )


# --- the verdict ----------------------------------------------------------------------------------
def compile_for_verification(spec, task, mode: str):
    """Compile `spec` for `task`'s inputs of `mode`, with its sprite sheets (programs then also
    read cell ids, lazily); a `CompiledSpec` is returned as is. DSLCompileError when it fails."""
    from car_jax.spec import CompiledSpec, compile_spec
    from car_jax.sprite_inputs import task_sprite_frames

    if isinstance(spec, CompiledSpec):
        return spec
    return compile_spec(spec, task.inputs(mode), task.constants(mode),
                        sprite_frames=task_sprite_frames(task, mode))  # fmt: skip


def verify_spec(
    spec_or_compiled,
    task,
    expert,
    random,
    criteria: Criteria | None = None,
    epsilon=None,
    *,
    rollout_set: str = "given",
    seed: int | None = None,
) -> Verdict:
    """Verify a spec on expert, random and (optional) epsilon-expert trajectories.

    Args:
      spec_or_compiled: a `RewardSpec` (compiled here against the trajectories' mode, with the
        task's sprite sheets; DSLCompileError when it does not compile) or a `CompiledSpec`.
      task: the Task the trajectories come from (used for its id, input spec and sprite sheets).
      expert, random: `Trajectories` of the expert and of a random policy, same mode; drawn
        frames or cell ids (`collect_rollouts(..., cells=True)`), with the same verdict.
      epsilon: `Trajectories` of the expert with a share of random actions (near misses), or None.
      rollout_set, seed: where the trajectories come from, recorded in the verdict.
    Returns:
      The `Verdict`. Expert runs that do not succeed are dropped with a note; fewer than
      `MIN_EXPERT_RUNS` left is a UserError.
    """
    compiled = compile_for_verification(spec_or_compiled, task, expert.mode)
    return verify_specs([compiled], task, expert, random, criteria, epsilon,
                        rollout_set=rollout_set, seed=seed)[0]  # fmt: skip


def verify_specs(
    specs,
    task,
    expert,
    random,
    criteria: Criteria | None = None,
    epsilon=None,
    *,
    rollout_set: str = "given",
    seed: int | None = None,
) -> list[Verdict]:
    """Verify K specs on the same trajectories in ONE compiled evaluation; a Verdict per spec.

    Every spec's programs are concatenated into one evaluator over the same chunks of valid
    steps; the completion matrix is split per spec and each is judged as `verify_spec` judges
    it alone (the same verdicts). A `RewardSpec` that does not compile gets a rejected Verdict
    saying why (`Verdict.passed` False, no sub-task figures), not an exception.
    """
    from car_jax.dsl import DSLCompileError

    criteria = criteria or Criteria()
    for other, what in ((random, "random"), (epsilon, "epsilon-expert")):
        if other is not None and other.mode != expert.mode:
            raise UserError(
                f"expert trajectories are in mode {expert.mode!r} but {what} ones in {other.mode!r}"
            )
    if expert.n == 0 or random.n == 0:
        raise UserError(
            f"verification needs expert and random trajectories; got {expert.n} and {random.n}"
        )
    release_if_near_limit()  # a search verifies round after round in one process
    compiled: list[Any] = []
    failed: dict[int, Verdict] = {}
    for i, spec in enumerate(specs):
        try:
            compiled.append(compile_for_verification(spec, task, expert.mode))
        except DSLCompileError as err:
            failed[i] = _not_compiled(spec, err, criteria, rollout_set, seed)
    ms = criteria.min_steps
    sets = {"expert": expert, "random": random}
    if epsilon is not None:
        sets["epsilon"] = epsilon
    per_set = {}  # set name -> per compiled spec SetFigures
    if compiled:
        ends = np.cumsum([len(c.programs) for c in compiled])[:-1]
        for name, traj in sets.items():
            done, nan = evaluate_valid_steps(compiled, traj, task=task)
            per_set[name] = [
                set_figures(d, m, traj, ms)
                for d, m in zip(np.split(done, ends, axis=2), np.split(nan, ends, axis=2))
            ]
    verdicts = iter(
        _verdict(
            c,
            {name: figs[i] for name, figs in per_set.items()},
            random,
            criteria,
            rollout_set,
            seed,
        )  # fmt: skip
        for i, c in enumerate(compiled)
    )
    return [failed[i] if i in failed else next(verdicts) for i in range(len(specs))]


def _not_compiled(spec, err, criteria: Criteria, rollout_set: str, seed: int | None) -> Verdict:
    """The rejected Verdict of a spec whose programs do not compile."""
    empty = Rate.of(np.zeros(0, bool))
    reason = "does not compile: " + "; ".join(str(e) for e in err.errors[:5])
    whole = WholeTask("", 0, empty, float("nan"), empty, float("nan"), [], empty,
                      ["the spec does not compile: nothing was evaluated"])  # fmt: skip
    return Verdict(task=getattr(spec, "task", ""), passed=False, subtasks=[], whole_task=whole,
                   n_expert=0, n_random=0, n_epsilon=0, order_fraction=0.0, criteria=criteria,
                   reasons=[reason], rollout_set=rollout_set, seed=seed)  # fmt: skip


def _verdict(compiled, figs: dict[str, SetFigures], random, criteria: Criteria,
             rollout_set: str, seed: int | None) -> Verdict:  # fmt: skip
    """Judge one spec from its per-set figures (see `verify_spec`)."""
    spec = compiled.spec
    notes: list[str] = []
    ef_all = figs["expert"]
    n_all = ef_all.success.size
    kept = ef_all.success
    n_kept = int(kept.sum())
    if n_kept < n_all:
        if n_kept < MIN_EXPERT_RUNS:
            raise UserError(
                f"only {n_kept} of {n_all} expert trajectories reach the goal (the task's success); "
                f"at least {MIN_EXPERT_RUNS} successful demonstrations are needed to confirm a "
                "spec: collect better demonstrations"
            )
        notes.append(
            f"dropped {n_all - n_kept} of {n_all} expert trajectories that do not reach the goal "
            "(failed demonstrations cannot confirm a spec); verified on the remaining "
            f"{n_kept}"
        )
    ef = _select(ef_all, kept)
    rf = figs["random"]
    pf = figs.get("epsilon")
    n_e, n_r = n_kept, rf.success.size
    k = ef.completed.shape[1]
    r_horizon = int(np.asarray(random.valid).shape[1])

    # Order on expert runs: where sub-tasks j-1 and j both complete, j must not complete first
    # (reversal) and should not complete on the same step (a tie: one event, not two).
    in_order = np.ones((n_e, k), bool)
    tie = np.zeros((n_e, k), bool)
    for j in range(1, k):
        both = ef.completed[:, j] & ef.completed[:, j - 1]
        in_order[:, j] = ~both | (ef.first[:, j] >= ef.first[:, j - 1])
        tie[:, j] = both & (ef.first[:, j] == ef.first[:, j - 1])
    order_fraction = float(np.mean(np.all(in_order & ~tie & ef.completed, axis=1)))

    nan_runs = sum(f.nan.sum(axis=0) for f in figs.values())
    subtasks = []
    for j, prog in enumerate(spec.programs):
        firsts = ef.first[ef.completed[:, j], j].astype(float)
        window = r_horizon
        if criteria.random_window == "expert" and firsts.size:
            window = int(np.ceil(np.median(firsts))) + 1
        starts = np.concatenate([ef.at_start[:, j], rf.at_start[:, j]])
        sv = SubtaskVerdict(
            name=prog.name,
            description=prog.description,
            expert=Rate.of(ef.completed[:, j]),
            random=Rate.of(rf.completed[:, j] & (rf.first[:, j] < window)),
            random_window=window,
            start_rate=float(starts.mean()),
            order_rate=float(in_order[:, j].mean()),
            tie_rate=float(tie[:, j].mean()),
            first_step_mean=float(firsts.mean()) if firsts.size else float("nan"),
            first_step_std=float(firsts.std()) if firsts.size else float("nan"),
            nan_runs=int(nan_runs[j]),
        )
        _judge(sv, j, spec, criteria, sum(f.success.size for f in figs.values()))
        subtasks.append(sv)

    whole = _whole_task(spec.programs[-1].name, ef, rf, pf, criteria, subtasks[-1])
    reasons: list[str] = []
    for sv in subtasks:
        sv.passed = not sv.reasons
    passed = all(s.passed for s in subtasks) and not reasons
    return Verdict(
        task=spec.task,
        passed=passed,
        subtasks=subtasks,
        whole_task=whole,
        n_expert=n_e,
        n_random=n_r,
        n_epsilon=0 if pf is None else pf.success.size,
        order_fraction=order_fraction,
        criteria=criteria,
        reasons=reasons,
        notes=notes,
        rollout_set=rollout_set,
        seed=seed,
    )


def _whole_task(name, ef, rf, pf, c: Criteria, last: SubtaskVerdict) -> WholeTask:
    """The last program vs ground truth: timing on expert runs, negatives, recall; reasons on `last`."""
    j = -1
    skipped: list[str] = []
    fires_e, first_e = ef.completed[:, j], ef.first[:, j]
    timing_runs = 0
    early = late = Rate.of(np.zeros(0, bool))
    early_steps = late_steps = float("nan")
    negatives: list[Negative] = []
    if ef.first_solved is None:
        skipped.append(
            "version-1 expert file has no per-step ground truth: whole-task timing and the "
            "expert-cut-before-success negatives are not checked"
        )
    else:
        s = ef.first_solved
        timing_runs = s.size
        is_early = fires_e & (first_e < s)
        is_late = fires_e & (first_e > s)
        early, late = Rate.of(is_early), Rate.of(is_late)
        if is_early.any():
            early_steps = float((s - first_e)[is_early].mean())
        if is_late.any():
            late_steps = float((first_e - s)[is_late].mean())
        # Cut just before success: the rows before the first solved step (runs solved at reset
        # have none and are left out). The program fires there exactly when it fires early.
        cut = s > 0
        negatives.append(Negative("expert cut before success", Rate.of(is_early[cut])))
    negatives.append(Negative("random", Rate.of(rf.completed[~rf.success, j])))
    if pf is not None:
        negatives.append(Negative("epsilon-expert", Rate.of(pf.completed[~pf.success, j])))
    hits = [ef.completed[:, j], rf.completed[rf.success, j]]
    if pf is not None:
        hits.append(pf.completed[pf.success, j])
    recall = Rate.of(np.concatenate(hits))

    if early.n and early.rate > c.early_rate:
        last.reasons.append(
            f"as the last (whole-task) program it fires {early_steps:.1f} steps before the task "
            f"is solved on {_pct(early.rate)} of expert runs (limit {_pct(c.early_rate)}); it "
            "must first be true on the step the task is done: it tests a state next to or on "
            "the way to the goal (e.g. being adjacent to it, or past an obstacle), not the goal "
            "reached itself"
        )
    for neg in negatives:
        if neg.fired.n and neg.fired.rate > c.negative_rate:
            if neg.kind == "expert cut before success" and early.rate > c.early_rate:
                continue  # the same fault, already said by the timing reason
            what = {
                "random": "random runs that did not succeed",
                "epsilon-expert": "near-miss runs (the expert with some random actions) that "
                "did not succeed",
                "expert cut before success": "expert runs cut just before the task is solved",
            }[neg.kind]
            last.reasons.append(
                f"as the last (whole-task) program it fires on {_pct(neg.fired.rate)} of {what} "
                f"(limit {_pct(c.negative_rate)}): it is true in states where the task is not "
                "done; test the goal condition itself"
            )
    if recall.n and recall.rate < c.success_recall and last.expert_rate >= c.expert_rate:
        last.reasons.append(
            f"as the last (whole-task) program it fires on only {_pct(recall.rate)} of the runs "
            f"that succeed (limit {_pct(c.success_recall)}); it should be true once the whole "
            "task is done"
        )
    return WholeTask(name, timing_runs, early, early_steps, late, late_steps, negatives, recall,
                     skipped)  # fmt: skip


def _judge(sv: SubtaskVerdict, j: int, spec, c: Criteria, n_runs: int) -> None:
    """Append the plain-sentence reasons why sub-task `j` fails the criteria."""
    if sv.nan_runs:
        sv.reasons.append(
            f"returns NaN (not a number) on some valid step of {sv.nan_runs} of {n_runs} "
            "trajectories (e.g. 0/0, or a square root or log of a negative number): a NaN is "
            "never a completed sub-task; guard the division or the function's argument"
        )
    if sv.expert_rate < c.expert_rate:
        if sv.expert_rate == 0:
            sv.reasons.append(
                "never fires on any expert trajectory, although every expert run completes the "
                "task: it does not recognise this sub-task being done (check the input names, "
                "constants and comparison used)"
            )
        else:
            sv.reasons.append(
                f"fires on only {_pct(sv.expert_rate)} of expert trajectories (needs "
                f"{_pct(c.expert_rate)}): it misses some ways this sub-task gets done"
            )
    if sv.random_rate > c.random_rate:
        why = ""
        if sv.start_rate > c.trivial_rate:
            why = ": it is already true at the start, before the agent has done anything"
        elif sv.random_rate > 0.9:
            why = ": it is true almost always, so it cannot tell progress from random behaviour"
        within = ""
        if c.random_window == "expert":
            within = f" within {_steps(sv.random_window)} (the expert's median time for it)"
        sv.reasons.append(
            f"fires on {_pct(sv.random_rate)} of random trajectories{within} (limit "
            f"{_pct(c.random_rate)}){why}; make it test the sub-task's result more strictly"
        )
    if sv.start_rate > c.trivial_rate:
        sv.reasons.append(
            f"is already true at the first step of {_pct(sv.start_rate)} of trajectories "
            f"(limit {_pct(c.trivial_rate)}): it describes the initial state, not a sub-task "
            "the agent must achieve"
        )
    if j > 0 and sv.order_rate < c.order_rate:
        prev = spec.programs[j - 1].name
        sv.reasons.append(
            f"completes before the previous sub-task `{prev}` on {_pct(1 - sv.order_rate)} of "
            f"expert runs (in the stated order on only {_pct(sv.order_rate)}, needs "
            f"{_pct(c.order_rate)}): the sub-tasks may be in the wrong order, or this program "
            "is too loose"
        )
    if j > 0 and sv.tie_rate > c.tie_rate:
        prev = spec.programs[j - 1].name
        sv.reasons.append(
            f"first fires on the same step as the previous sub-task `{prev}` on "
            f"{_pct(sv.tie_rate)} of expert runs (limit {_pct(c.tie_rate)}): `{prev}` and "
            f"`{sv.name}` describe one event, not two steps in order; merge them or make each "
            "test a different milestone"
        )


# --- rollouts for verification --------------------------------------------------------------------
class VerificationRollouts(NamedTuple):
    """Expert, random and epsilon-expert (None when the task has no scripted expert) trajectories."""

    expert: Any
    random: Any
    epsilon: Any = None


def collect_verification_rollouts(
    task,
    mode: str,
    n: int = DEFAULT_N,
    seed: int = 0,
    horizon: int | None = None,
    random_horizon: int | None = None,
    expert=None,
    random=None,
    *,
    near_miss: bool = True,
    held_out: bool = False,
    cells: bool | None = None,
) -> VerificationRollouts:
    """`n` expert, `n` random and `n` epsilon-expert Trajectories for verifying programs on `task`.

    A given `expert` or `random` (e.g. loaded from a file) is used as is; only the others are
    collected. Expert runs last `horizon` steps (default: whole episodes, collected in chunks of
    `car_jax.rollout.ROLLOUT_CHUNK` steps until every one has ended). Random runs last
    `random_horizon` steps; by default as long as the longest expert episode, so "fires for a
    random agent" means "given the time the expert needed" (with the full 640-step limit of
    DoorKey-8x8 a random agent picks up the key in ~96% of runs). Epsilon-expert runs (the
    scripted expert with a share `car_jax.rollout.EPSILON` of random actions; near misses) last
    as long as random runs, so that many end close to success without reaching it; they are
    collected when `near_miss` and the task has a scripted expert. `held_out` draws every
    rollout from another random stream of `seed`.
    `cells` (default: wherever the task declares sprite-grid inputs for `mode`) records those
    inputs as cell ids instead of drawn frames (`collect_rollouts(..., cells=True)`): the same
    verdicts, a fraction of the memory, and programs read them without drawing.
    """
    import jax

    from car_jax.rollout import collect_rollouts
    from car_jax.sprite_inputs import task_sprite_frames

    if cells is None:
        cells = bool(task_sprite_frames(task, mode))
    if n < 1:
        raise UserError(f"the number of trajectories must be at least 1, got {n}")
    release_if_near_limit()  # rollout programs are the largest compiles of a verification
    base = jax.random.key(seed)
    if held_out:
        base = jax.random.fold_in(base, HELD_OUT_STREAM)
    k_e, k_r = jax.random.split(base)
    k_p = jax.random.fold_in(base, 2)
    if expert is None:
        if task.expert is None:
            raise UserError(
                f"task {task.id!r} has no scripted expert: pass expert trajectories from a file"
            )
        # NOTE: by default (no horizon) collected in chunks until every episode has ended, not
        # to the time limit: the rows are those of a whole-limit rollout up to the last chunk.
        expert = collect_rollouts(
            task, "expert", k_e, n, horizon, mode=mode, cells=cells, until_done=horizon is None
        )
    longest = max(1, int(np.asarray(expert.valid).sum(axis=1).max()))
    if random is None:
        # NOTE: collected in whole chunks (one compiled program for every length), then cut:
        # the rows are those of a rollout of exactly that length.
        h = random_horizon or longest
        random = _cut(_chunked(task, "random", k_r, n, h, mode, cells), h)
    epsilon = None
    if near_miss and task.expert is not None:
        # NOTE: the expert's compiled chunk (epsilon is traced), cut to the random runs' length:
        # rows identical to a shorter rollout; fewer when every episode ended before it.
        epsilon = _cut(_chunked(task, "epsilon-expert", k_p, n, random.horizon, mode, cells),
                       random.horizon)  # fmt: skip
    return VerificationRollouts(expert, random, epsilon)


def _chunked(task, policy: str, key, n: int, horizon: int, mode: str, cells: bool):
    """`collect_rollouts(..., until_done=True)` to `horizon` rounded up to whole chunks."""
    from car_jax.rollout import ROLLOUT_CHUNK, collect_rollouts

    whole = -(-horizon // ROLLOUT_CHUNK) * ROLLOUT_CHUNK
    return collect_rollouts(task, policy, key, n, whole, mode=mode, cells=cells, until_done=True)


def _cut(traj, horizon: int):
    """The first `horizon` rows of every run (success recomputed on them)."""
    import jax

    if horizon >= traj.horizon:
        return traj
    short = jax.tree.map(lambda a: a[:, :horizon] if a.ndim > 1 else a, traj)
    return short.replace(success=short.solved.any(axis=1))


class Verifier:
    """Stage 2 for the generate loop and the search: `verifier(spec)` judges on the FEEDBACK
    rollouts (what the model's rounds see); `verifier.final(spec)` judges on HELD-OUT rollouts
    from another random stream, and that verdict (which records the feedback one) is the one that
    accepts a spec. `verify_many(specs)` / `final_many(specs)` judge K specs in one batched
    evaluation (the same verdicts as one by one). Rollouts are collected once, on first use, with
    sprite-grid inputs as cell ids where the task declares them (`cells`).

    `Verifier(task, mode, n=..., horizon=..., random_horizon=..., seed=..., criteria=...)`: `n`
    expert, random and epsilon-expert rollouts per set.
    """

    def __init__(
        self,
        task,
        mode: str,
        *,
        n: int = DEFAULT_N,
        horizon: int | None = None,
        random_horizon: int | None = None,
        seed: int = 0,
        criteria: Criteria | None = None,
        cells: bool | None = None,
    ):
        self.task, self.mode, self.n, self.seed = task, mode, n, seed
        self.horizon, self.random_horizon = horizon, random_horizon
        self.criteria = criteria
        self.cells = cells
        self._sets: dict[bool, VerificationRollouts] = {}

    def _rollouts(self, held_out: bool) -> VerificationRollouts:
        if held_out not in self._sets:
            self._sets[held_out] = collect_verification_rollouts(
                self.task, self.mode, self.n, self.seed, self.horizon, self.random_horizon,
                held_out=held_out, cells=self.cells,
            )  # fmt: skip
        return self._sets[held_out]

    def rollouts(self) -> VerificationRollouts:
        """The feedback rollout set."""
        return self._rollouts(False)

    def held_out_rollouts(self) -> VerificationRollouts:
        """The held-out rollout set (other random stream of the same seed)."""
        return self._rollouts(True)

    def compile(self, spec):
        """`spec` compiled for this task and mode, with its sprite sheets (DSLCompileError)."""
        return compile_for_verification(spec, self.task, self.mode)

    def _verify(self, specs, held_out: bool) -> list[Verdict]:
        expert, random, epsilon = self._rollouts(held_out)
        return verify_specs(
            specs, self.task, expert, random, self.criteria, epsilon,
            rollout_set="held-out" if held_out else "feedback", seed=self.seed,
        )  # fmt: skip

    def verify_many(self, specs) -> list[Verdict]:
        """One verdict per spec on the feedback rollouts, all K evaluated in one batched call; a
        spec that does not compile gets a rejected verdict saying so."""
        return self._verify(list(specs), held_out=False)

    def final_many(self, specs) -> list[Verdict]:
        """The accepting verdicts of K specs (held-out, each recording its feedback verdict),
        evaluated in one batched call per rollout set."""
        from car_jax.dsl import DSLCompileError

        if not specs:
            return []
        ready = []
        for spec in specs:  # compile once for both sets
            try:
                ready.append(self.compile(spec))
            except DSLCompileError:
                ready.append(spec)  # judged (rejected with its errors) by verify_specs
        verdicts = self._verify(ready, held_out=True)
        feedback = self._verify(ready, held_out=False)
        for verdict, fb in zip(verdicts, feedback):
            if verdict.subtasks:  # a spec that compiled
                verdict.feedback_verdict = fb
        return verdicts

    def __call__(self, spec) -> Verdict:
        """The verdict on the feedback rollouts (DSLCompileError when the spec does not compile)."""
        return self.verify_many([self.compile(spec)])[0]

    def final(self, spec) -> Verdict:
        """The accepting verdict: on the held-out rollouts, with the feedback verdict recorded
        (DSLCompileError when the spec does not compile)."""
        return self.final_many([self.compile(spec)])[0]
