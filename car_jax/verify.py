"""Stage 2: verify reward programs on batched expert and random trajectories.

Every program is evaluated on every step of every trajectory in one jitted `vmap(vmap(...))` call;
the result is reduced to per-sub-task figures and a `Verdict` whose reasons are plain sentences a
person or a VLM can act on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from car_jax.errors import UserError


@dataclass(frozen=True)
class Criteria:
    """Acceptance thresholds; defaults follow the paper's released verifier (plus our extras)."""

    min_steps: int = 1  # a sub-task completes on a trajectory when true on >= min_steps valid steps
    expert_rate: float = 1.0  # must complete on at least this fraction of expert trajectories
    random_rate: float = 0.10  # may complete on at most this fraction of random trajectories
    # Random runs count within a per-sub-task window: "expert" = the median step at which the
    # expert first completes that sub-task; "full" = the whole random trajectory.
    random_window: str = "expert"
    order_rate: float = 1.0  # expert runs where it first completes no earlier than its predecessor
    trivial_rate: float = 0.5  # refused when already true at the first step of more than this
    success_precision: float = 0.9  # the last program vs the task's ground-truth success
    success_recall: float = 0.9

    def __post_init__(self):
        if self.min_steps < 1:
            raise UserError(f"criteria: min_steps must be >= 1, got {self.min_steps}")
        if self.random_window not in ("expert", "full"):
            raise UserError(
                f"criteria: random_window must be 'expert' or 'full', got {self.random_window!r}"
            )
        for name in ("expert_rate", "random_rate", "order_rate", "trivial_rate",
                     "success_precision", "success_recall"):  # fmt: skip
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UserError(f"criteria: {name} must be in [0, 1], got {v}")


@dataclass
class SubtaskVerdict:
    """Figures, pass/fail and reasons for one sub-task program."""

    name: str
    description: str
    expert_rate: float  # fraction of expert trajectories on which it completes
    random_rate: float  # fraction of random trajectories on which it completes within the window
    random_window: int  # steps of each random trajectory counted for random_rate
    start_rate: float  # fraction of all trajectories on which it is true at the first step
    order_rate: float  # fraction of expert runs where it completes in the stated order
    first_step_mean: float  # first-completion step on expert runs (those that complete)
    first_step_std: float
    passed: bool = True
    reasons: list[str] = field(default_factory=list)


@dataclass
class Verdict:
    """The result of verifying a spec: per sub-task figures and the whole-task agreement."""

    task: str
    passed: bool
    subtasks: list[SubtaskVerdict]
    n_expert: int
    n_random: int
    order_fraction: float  # expert runs on which all sub-tasks complete in the stated order
    success_precision: float  # last program vs ground-truth success, expert + random runs
    success_recall: float
    criteria: Criteria
    reasons: list[str] = field(default_factory=list)  # spec-level reasons

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN, e.g. the first step of a never-completed sub-task, -> null)."""
        from car_jax.report import json_safe

        return json_safe(asdict(self))

    def to_json(self, indent: int = 2) -> str:
        """The verdict as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """Inverse of `to_dict`."""
        d = dict(d)
        nan = float("nan")
        d["subtasks"] = [
            SubtaskVerdict(**{k: nan if v is None else v for k, v in s.items()})
            for s in d["subtasks"]
        ]
        d["criteria"] = Criteria(**d["criteria"])
        return cls(**d)

    def to_markdown(self) -> str:
        """A markdown table of the per-sub-task figures, then the reasons."""
        c = self.criteria
        lines = [
            f"**Verdict: {'ACCEPTED' if self.passed else 'REJECTED'}** — {self.task}",
            "",
            f"{self.n_expert} expert and {self.n_random} random trajectories; a sub-task completes "
            f"when its program is true on >= {c.min_steps} valid step(s). Random runs count "
            + (
                "within each sub-task's window (the expert's median steps to complete it)."
                if c.random_window == "expert"
                else "over their whole length."
            ),
            "",
            "| # | sub-task | expert | random (window) | true at start | in order | first step (expert) | result |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, s in enumerate(self.subtasks):
            first = (
                "—"
                if np.isnan(s.first_step_mean)
                else f"{s.first_step_mean:.1f} ± {s.first_step_std:.1f}"
            )
            lines.append(
                f"| {i + 1} | `{s.name}` | {s.expert_rate:.0%} | {s.random_rate:.0%} ({s.random_window}) | "
                f"{s.start_rate:.0%} | {s.order_rate:.0%} | {first} | {'pass' if s.passed else 'FAIL'} |"
            )
        lines += [
            "",
            f"Limits: expert >= {c.expert_rate:.0%}, random <= {c.random_rate:.0%}, "
            f"in order >= {c.order_rate:.0%}, true at start <= {c.trivial_rate:.0%}.",
            f"All sub-tasks in order on {self.order_fraction:.0%} of expert runs. "
            f"Last program vs ground-truth success: precision {self.success_precision:.0%}, "
            f"recall {self.success_recall:.0%}.",
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


def completion_figures(compiled):
    """A jitted `(inputs, valid, min_steps) -> (completed [N,K], first step [N,K], at start [N,K])`.

    All programs on all steps of all trajectories in one `vmap(vmap(...))` call, reduced on
    device (the per-step matrix never leaves it). `min_steps` is static.
    """

    def figures(inputs: dict[str, jax.Array], valid: jax.Array, min_steps: int):
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
    """Per-step completion of every program, `[K, N, T]` bool (masked by `valid`)."""
    done = jax.jit(jax.vmap(jax.vmap(compiled.completion)))(traj.inputs)
    return np.moveaxis(np.asarray(done & traj.valid[..., None]), -1, 0)


def _pct(x: float) -> str:
    return f"{x:.0%}"


def verify_spec(
    spec_or_compiled, task, expert, random, criteria: Criteria | None = None
) -> Verdict:
    """Verify a spec on expert and random trajectories; one compiled call per trajectory batch.

    Args:
      spec_or_compiled: a `RewardSpec` (compiled here against the trajectories' mode) or a
        `CompiledSpec`.
      task: the Task the trajectories come from (used for its id and input spec).
      expert, random: `Trajectories` of the expert and of a random policy, same mode.
    Returns:
      The `Verdict`.
    """
    from car_jax.spec import CompiledSpec, compile_spec

    criteria = criteria or Criteria()
    if expert.mode != random.mode:
        raise UserError(
            f"expert trajectories are in mode {expert.mode!r} but random ones in {random.mode!r}"
        )
    if isinstance(spec_or_compiled, CompiledSpec):
        compiled = spec_or_compiled
    else:
        compiled = compile_spec(
            spec_or_compiled, task.inputs(expert.mode), task.constants(expert.mode)
        )
    spec = compiled.spec
    figures = completion_figures(compiled)
    e_done, e_first, e_start = (
        np.asarray(a) for a in figures(expert.inputs, expert.valid, criteria.min_steps)
    )
    r_done, r_first, r_start = (
        np.asarray(a) for a in figures(random.inputs, random.valid, criteria.min_steps)
    )
    n_e, n_r = e_done.shape[0], r_done.shape[0]
    if n_e == 0 or n_r == 0:
        raise UserError(f"verification needs expert and random trajectories; got {n_e} and {n_r}")
    k = e_done.shape[1]
    r_horizon = int(random.valid.shape[1])
    e_success = np.asarray(expert.success, bool)

    # Order on expert runs: where sub-tasks j-1 and j both complete, j does not complete first
    # (a sub-task that never completes is judged by its own expert rate, not by order).
    in_order = np.ones((n_e, k), bool)
    for j in range(1, k):
        both = e_done[:, j] & e_done[:, j - 1]
        in_order[:, j] = ~both | (e_first[:, j] >= e_first[:, j - 1])
    order_fraction = float(np.mean(np.all(in_order & e_done, axis=1)))

    # Last program vs ground truth, over expert + random runs.
    last = np.concatenate([e_done[:, -1], r_done[:, -1]])
    truth = np.concatenate([e_success, np.asarray(random.success, bool)])
    tp = float(np.sum(last & truth))
    precision = tp / max(float(np.sum(last)), 1.0) if last.any() else 0.0
    recall = tp / max(float(np.sum(truth)), 1.0) if truth.any() else float("nan")

    subtasks = []
    for j, prog in enumerate(spec.programs):
        e_rate = float(e_done[:, j].mean())
        firsts = e_first[e_done[:, j], j].astype(float)
        window = r_horizon
        if criteria.random_window == "expert" and firsts.size:
            window = int(np.ceil(np.median(firsts))) + 1
        r_rate = float(np.mean(r_done[:, j] & (r_first[:, j] < window)))
        start = float(np.concatenate([e_start[:, j], r_start[:, j]]).mean())
        order = float(in_order[:, j].mean())
        sv = SubtaskVerdict(
            name=prog.name,
            description=prog.description,
            expert_rate=e_rate,
            random_rate=r_rate,
            random_window=window,
            start_rate=start,
            order_rate=order,
            first_step_mean=float(firsts.mean()) if firsts.size else float("nan"),
            first_step_std=float(firsts.std()) if firsts.size else float("nan"),
        )
        _judge(sv, j, spec, criteria)
        subtasks.append(sv)

    reasons = []
    if not e_success.all():
        reasons.append(
            f"only {_pct(e_success.mean())} of the expert trajectories reach the goal, so the "
            "expert data cannot confirm the programs; collect better demonstrations"
        )
    last_sv = subtasks[-1]
    if last.any() or truth.any():
        if precision < criteria.success_precision:
            last_sv.reasons.append(
                f"as the last (whole-task) program it disagrees with the task's real success: only "
                f"{_pct(precision)} of the trajectories where it fires actually succeed "
                f"(limit {_pct(criteria.success_precision)}); it fires on failed runs too"
            )
        if truth.any() and recall < criteria.success_recall:
            last_sv.reasons.append(
                f"as the last (whole-task) program it misses real successes: it fires on only "
                f"{_pct(recall)} of the trajectories that succeed (limit "
                f"{_pct(criteria.success_recall)}); it should be true once the whole task is done"
            )
    for sv in subtasks:
        sv.passed = not sv.reasons
    passed = all(s.passed for s in subtasks) and not reasons
    return Verdict(
        task=spec.task,
        passed=passed,
        subtasks=subtasks,
        n_expert=n_e,
        n_random=n_r,
        order_fraction=order_fraction,
        success_precision=precision,
        success_recall=recall,
        criteria=criteria,
        reasons=reasons,
    )


def _judge(sv, j, spec, c: Criteria) -> None:
    """Append the plain-sentence reasons why sub-task `j` fails the criteria."""
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
            steps = "step" if sv.random_window == 1 else "steps"
            within = f" within {sv.random_window} {steps} (the expert's median time for it)"
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


def collect_verification_rollouts(
    task,
    mode: str,
    n: int = 256,
    seed: int = 0,
    horizon: int | None = None,
    random_horizon: int | None = None,
    expert=None,
    random=None,
):
    """`n` expert and `n` random Trajectories for verifying programs on `task`.

    A given `expert` or `random` (e.g. loaded from a file) is used as is; only the other is
    collected.

    Expert runs last `horizon` steps (default: a whole episode). Random runs last
    `random_horizon` steps; by default as long as the longest expert episode, so "fires for a
    random agent" means "given the time the expert needed" (with the full 640-step limit of
    DoorKey-8x8 a random agent picks up the key in ~96% of runs).
    """
    from car_jax.rollout import collect_rollouts

    if n < 1:
        raise UserError(f"the number of trajectories must be at least 1, got {n}")
    k_e, k_r = jax.random.split(jax.random.key(seed))
    if expert is None:
        if task.expert is None:
            raise UserError(
                f"task {task.id!r} has no scripted expert: pass expert trajectories from a file"
            )
        if horizon is None and mode != "state" and "state" in task.modes:
            # NOTE: rollouts depend only on the key, not on the mode recorded: a cheap pass in
            # state mode finds the longest expert episode, so large pixel frames are recorded
            # for that many steps only, not for the whole time limit.
            probe = collect_rollouts(task, "expert", k_e, n, None, mode="state")
            horizon = min(task.max_steps + 1, int(np.asarray(probe.valid).sum(axis=1).max()) + 1)
        expert = collect_rollouts(task, "expert", k_e, n, horizon, mode=mode)
    if random is None:
        if random_horizon is None:
            random_horizon = max(1, int(np.asarray(expert.valid).sum(axis=1).max()))
        random = collect_rollouts(task, "random", k_r, n, random_horizon, mode=mode)
    return expert, random
