"""Stage 2: verification on real expert, random and near-miss rollouts of two tasks.

Every class of wrong program is rejected for the right reason on a MiniGrid task (DoorKey-5x5)
and on a classic-control task (MountainCar-v0). Rollouts are collected once per task (module
fixtures) and shared by every test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest

import envs
from car_jax.errors import UserError
from car_jax.rollout import collect_rollouts, draw_frames, load_trajectories, save_trajectories
from car_jax.spec import RewardSpec, compile_spec
from car_jax.verify import (
    Criteria,
    Verdict,
    VerificationRollouts,
    Verifier,
    collect_verification_rollouts,
    compile_for_verification,
    completion_figures,
    completion_matrix,
    verify_spec,
    verify_specs,
    wilson_interval,
)

N = 32


@dataclass(frozen=True)
class Case:
    """A task and the programs that exercise every criterion on it."""

    task_id: str
    good: tuple[tuple[str, str], ...]  # (name, return expression), in order
    early_last: str  # a whole-task program that fires before the task is solved
    never_last: str  # a whole-task program that never fires
    nan_program: str  # NaN on some valid step
    loose_last: str  # fires on failed runs (random or near misses), and early


MINIGRID = Case(
    "MiniGrid-DoorKey-5x5",
    (
        ("picked_up_key", "obs.carried_tile == KEY"),
        ("opened_door", "contains(obs.tiles, DOOR_OPEN)"),
        ("reached_goal", "cell(obs.tiles, obs.agent_pos) == GOAL"),
    ),
    early_last="adjacent(obs.agent_pos, position_of(obs.tiles, GOAL))",
    never_last="obs.carried_tile == BALL",
    nan_program="(obs.agent_pos[0] - obs.agent_pos[0]) / (obs.agent_pos[0] - obs.agent_pos[0])",
    loose_last="obs.carried_tile == KEY",
)
CLASSIC = Case(
    "MountainCar-v0",
    (
        ("swung_up_left_slope", "obs.position < -0.9"),
        ("gained_speed", "obs.velocity > 0.04"),
        ("reached_flag", "obs.position >= GOAL_POSITION"),
    ),
    early_last="obs.position >= GOAL_POSITION - 0.15",
    never_last="obs.position > 5.0",
    nan_program="obs.velocity / obs.velocity",  # velocity 0 at reset: 0 / 0
    loose_last="obs.position > 0.0",
)
CASES = [pytest.param(MINIGRID, id="minigrid"), pytest.param(CLASSIC, id="classic")]


def _spec(*bodies: tuple[str, str]) -> RewardSpec:
    """A spec from (name, return-expression) pairs."""
    src = '"""A test spec."""\n'
    for name, expr in bodies:
        src += f'\n\ndef {name}(obs):\n    """{name}."""\n    return {expr}\n'
    return RewardSpec.from_source(src)


_ROLLOUTS: dict[str, tuple] = {}


@pytest.fixture(scope="module", params=CASES)
def case(request):
    """(Case, task, VerificationRollouts), collected once per task for the whole module."""
    c = request.param
    if c.task_id not in _ROLLOUTS:
        task = envs.make(c.task_id)
        _ROLLOUTS[c.task_id] = (task, collect_verification_rollouts(task, "state", n=N, seed=0))
    return (c, *_ROLLOUTS[c.task_id])


def _verify(case, spec, **criteria):
    _, task, sets = case
    return verify_spec(spec, task, sets.expert, sets.random, Criteria(**criteria), sets.epsilon)


def _reasons(v: Verdict, j: int = -1) -> str:
    return " | ".join(v.subtasks[j].reasons)


def test_correct_spec_is_accepted_with_figures(case):
    c, _, _ = case
    v = _verify(case, _spec(*c.good))
    assert v.passed, v.to_markdown()
    for s in v.subtasks:
        assert s.expert.rate == 1.0 and s.random.rate <= 0.10 and not s.reasons
        assert 0.0 <= s.expert.low <= s.expert.rate <= s.expert.high <= 1.0
    firsts = [s.first_step_mean for s in v.subtasks]
    assert firsts == sorted(firsts)
    w = v.whole_task
    assert w.timing_runs == N and w.early.k == 0 and w.late.k == 0 and not w.skipped
    kinds = [n.kind for n in w.negatives]
    assert kinds == ["expert cut before success", "random", "epsilon-expert"]
    assert all(n.fired.k == 0 for n in w.negatives) and w.recall.rate == 1.0
    assert v.n_epsilon == N and v.order_fraction == 1.0


def test_whole_task_program_that_fires_early_is_rejected(case):
    c, _, _ = case
    v = _verify(case, _spec(*c.good[:-1], ("solved", c.early_last)))
    w = v.whole_task
    assert not v.passed and w.early.rate > 0.05 and w.early_steps >= 1.0
    text = _reasons(v)
    assert "steps before the task is solved" in text and "of expert runs" in text
    # the same runs cut just before success are near misses it fires on
    assert w.negatives[0].kind == "expert cut before success" and w.negatives[0].fired.k > 0


def test_near_miss_negatives_reject_a_loose_whole_task_program(case):
    c, _, _ = case
    # Timing lifted: the near-miss negatives alone must catch it.
    v = _verify(case, _spec(*c.good[:-1], ("solved", c.early_last)), early_rate=1.0)
    assert not v.passed
    text = _reasons(v)
    assert "steps before" not in text
    assert "expert runs cut just before the task is solved" in text


def test_undiluted_whole_task_precision(case):
    c, _, _ = case
    # A loose last program: on expert runs (all true positives) it always fires, so a precision
    # pooled with them looks fine; on runs that did not succeed it fires too.
    v = _verify(case, _spec(("solved", c.loose_last)), random_rate=1.0, early_rate=1.0)
    fired = {n.kind: n.fired for n in v.whole_task.negatives}
    assert not v.passed and max(f.rate for f in fired.values()) > 0.05
    assert "that did not succeed" in _reasons(v) or "cut just before" in _reasons(v)


def test_duplicate_sub_tasks_are_one_event(case):
    c, _, _ = case
    last_name, last_expr = c.good[-1]
    v = _verify(case, _spec(c.good[0], ("at_goal", last_expr), (last_name, last_expr)))
    s = v.subtasks[-1]
    assert not v.passed and s.tie_rate == 1.0 and s.order_rate == 1.0
    assert "same step as the previous sub-task `at_goal`" in _reasons(v)
    assert f"`at_goal` and `{last_name}` describe one event" in _reasons(v)
    assert v.order_fraction == 0.0  # a tie is not an order


def test_last_program_that_never_fires_says_so(case):
    c, _, _ = case
    v = _verify(case, _spec(*c.good[:-1], ("solved", c.never_last)))
    text = _reasons(v)
    assert not v.passed and "never fires on any expert trajectory" in text
    assert "fires on failed runs" not in text and "that did not succeed" not in text


def test_nan_program_is_rejected(case):
    c, _, _ = case
    v = _verify(case, _spec(("ratio", c.nan_program), c.good[-1]))
    s = v.subtasks[0]
    assert not s.passed and s.nan_runs > 0
    assert "returns NaN" in s.reasons[0]
    # NaN never counts as complete: where the value is NaN on every step it never fires.
    if c.task_id == MINIGRID.task_id:
        assert s.expert.rate == 0.0 and s.nan_runs == v.n_expert + v.n_random + v.n_epsilon


def test_wrong_order_and_trivial_programs_are_rejected(case):
    c, _, _ = case
    v = _verify(case, _spec(c.good[1], c.good[0], c.good[2]))
    assert not v.passed and v.subtasks[1].order_rate < 1.0
    assert f"before the previous sub-task `{c.good[1][0]}`" in _reasons(v, 1)
    v = _verify(case, _spec(("always", "True"), c.good[-1]))
    s = v.subtasks[0]
    assert s.random.rate == 1.0 and s.start_rate == 1.0
    assert "random trajectories within 1 step (" in s.reasons[0]
    assert "describes the initial state" in s.reasons[1]


def test_failed_demonstrations_are_dropped_with_a_note():
    task, sets = _doorkey()
    e, r = sets.expert, sets.random
    # Expert file with 4 failed runs mixed in (random runs padded to the expert horizon).
    pad = e.horizon - r.horizon
    r_pad = jax.tree.map(
        lambda a: np.concatenate([a, np.repeat(a[:, -1:], pad, 1)], 1) if a.ndim > 1 else a, r
    )
    r_pad = r_pad.replace(valid=np.concatenate([r.valid, np.zeros((r.n, pad), bool)], 1))
    failed = np.flatnonzero(~np.asarray(r.success))[:4]
    mixed = jax.tree.map(lambda a, b: np.concatenate([a, b[failed]]), e, r_pad)
    v = verify_spec(_spec(*MINIGRID.good), task, mixed, r)
    assert v.passed and v.n_expert == N
    assert v.notes and v.notes[0].startswith(f"dropped 4 of {N + 4} expert trajectories")
    few = jax.tree.map(lambda a, b: np.concatenate([a[:3], b[failed]]), e, r_pad)
    with pytest.raises(UserError, match="only 3 of 7 expert trajectories reach the goal"):
        verify_spec(_spec(*MINIGRID.good), task, few, r)


def _doorkey():
    if MINIGRID.task_id not in _ROLLOUTS:
        task = envs.make(MINIGRID.task_id)
        _ROLLOUTS[MINIGRID.task_id] = (task, collect_verification_rollouts(task, "state", n=N))
    return _ROLLOUTS[MINIGRID.task_id]


def test_version_1_trajectories_verify_with_per_step_checks_skipped():
    task, sets = _doorkey()
    v1 = sets.expert.replace(solved=None)
    v = verify_spec(_spec(*MINIGRID.good), task, v1, sets.random)
    assert v.passed and v.whole_task.timing_runs == 0
    assert v.whole_task.skipped and "version-1" in v.whole_task.skipped[0]
    assert [n.kind for n in v.whole_task.negatives] == ["random"]
    assert "skipped: version-1 expert file has no per-step ground truth" in v.to_markdown()


def test_batched_figures_equal_a_python_loop():
    task, sets = _doorkey()
    spec = _spec(
        MINIGRID.good[0], ("at_goal", MINIGRID.good[2][1]), ("solved", MINIGRID.early_last)
    )
    compiled = compile_spec(spec, task.inputs("state"), task.constants("state"))
    small = jax.tree.map(lambda a: a[:5], sets.expert)
    keep = np.asarray(small.success)
    one = jax.jit(compiled.completion)
    n, t = small.valid.shape
    done = np.zeros((3, n, t), bool)
    for i in range(n):
        for j in range(t):
            if small.valid[i, j]:
                done[:, i, j] = np.asarray(one({k: v[i, j] for k, v in small.inputs.items()}))
    np.testing.assert_array_equal(completion_matrix(compiled, small), done)
    # The dense reference path (every step, padding included) gives the same figures.
    dense = completion_figures(compiled)(small.inputs, small.valid, 1)
    firsts = np.where(done.any(2), done.argmax(2), t)  # [K, N]
    np.testing.assert_array_equal(np.asarray(dense[1]).T, firsts)

    v = verify_spec(compiled, task, small, sets.random)
    solved = np.asarray(small.solved)[keep]
    first_solved = np.where(solved.any(1), solved.argmax(1), t)
    f = firsts[:, keep]
    fired = done.any(2)[:, keep]
    early = [bool(fired[2, i] and f[2, i] < first_solved[i]) for i in range(keep.sum())]
    ties = [bool(fired[1, i] and fired[0, i] and f[1, i] == f[0, i]) for i in range(keep.sum())]
    late = [bool(fired[2, i] and f[2, i] > first_solved[i]) for i in range(keep.sum())]
    assert v.n_expert == keep.sum() and v.whole_task.early.k == sum(early)
    assert v.whole_task.late.k == sum(late)
    assert v.subtasks[1].tie_rate == pytest.approx(np.mean(ties))
    assert [s.expert.k for s in v.subtasks] == [int(x) for x in fired.sum(1)]
    steps_early = [first_solved[i] - f[2, i] for i in range(keep.sum()) if early[i]]
    if steps_early:
        assert v.whole_task.early_steps == pytest.approx(np.mean(steps_early))
    means = [np.mean([f[k, i] for i in range(keep.sum()) if fired[k, i]]) for k in range(3)]
    np.testing.assert_allclose([s.first_step_mean for s in v.subtasks], means)


def test_wilson_interval():
    lo, hi = wilson_interval(0, 32)
    assert lo == 0.0 and hi == pytest.approx(0.1072, abs=1e-3)
    lo, hi = wilson_interval(26, 256)  # about 10%
    assert lo == pytest.approx(0.0702, abs=1e-3) and hi == pytest.approx(0.1449, abs=1e-3)
    assert np.isnan(wilson_interval(0, 0)[0])


def test_verdict_round_trip_and_markdown():
    task, sets = _doorkey()
    v = verify_spec(_spec(*MINIGRID.good), task, sets.expert, sets.random, Criteria(min_steps=1000))
    assert not v.passed and all(s.expert.rate == 0.0 for s in v.subtasks)
    again = Verdict.from_dict(json.loads(v.to_json()))
    assert again.to_markdown() == v.to_markdown()
    md = v.to_markdown()
    assert "| 1 | `picked_up_key` | 0% [0%–11%] |" in md
    assert "picked_up_key" in v.feedback()


@pytest.fixture(scope="module")
def verifier():
    """A DoorKey-5x5 state-mode Verifier (feedback and held-out sets collected once)."""
    return Verifier(envs.make(MINIGRID.task_id), "state", n=N, seed=0)


def test_held_out_verdict_records_the_feedback_one(verifier):
    fb, held = verifier.rollouts(), verifier.held_out_rollouts()
    assert not np.array_equal(
        np.asarray(fb.expert.actions[:, :5]), np.asarray(held.expert.actions[:, :5])
    )
    assert verifier.rollouts() is fb  # collected once
    v = verifier.final(_spec(*MINIGRID.good))
    assert v.passed and v.rollout_set == "held-out" and v.seed == 0
    assert v.feedback_verdict is not None and v.feedback_verdict.rollout_set == "feedback"
    assert "On the feedback rollouts (seed 0) the same spec was ACCEPTED" in v.to_markdown()
    again = Verdict.from_dict(json.loads(v.to_json()))
    assert again.feedback_verdict.to_markdown() == v.feedback_verdict.to_markdown()
    assert verifier(_spec(*MINIGRID.good)).rollout_set == "feedback"


def test_bad_criteria_and_mismatched_modes_are_refused():
    with pytest.raises(UserError, match="random_rate must be in"):
        Criteria(random_rate=1.5)
    with pytest.raises(UserError, match="tie_rate must be in"):
        Criteria(tie_rate=-0.1)
    task, sets = _doorkey()
    other = sets.random.replace(mode="pixels")
    with pytest.raises(UserError, match="random ones in 'pixels'"):
        verify_spec(_spec(*MINIGRID.good), task, sets.expert, other)


# --- pixel specs on cell ids, and K specs in one batched call -------------------------------------
PIXEL_REFERENCE = Path(__file__).resolve().parents[1] / "prompts" / "reference"
PIXEL_VARIANTS = {
    # reads raw pixels (the centre of the inventory cell is yellow): its frame is drawn from ids
    0: "obs.frame[INVENTORY_ROW * TILE_PX + 4, 4, 0] > 200 and obs.frame[INVENTORY_ROW * TILE_PX + 4, 4, 2] < 60",
    # fires early (the agent next to the goal hides a few of its green pixels): rejected
    2: "pixel_count(obs.frame, GREEN_RGB) < TILE_PX * TILE_PX - 2",
}


@pytest.fixture(scope="module")
def pixel_sets():
    """DoorKey-5x5 pixel rollouts recorded as cell ids, and the same drawn.

    One compiled rollout serves every set (kept cheap): expert runs, and epsilon-expert runs as
    both the random and the near-miss set (verification does not care which policy made them).
    """
    task = envs.make(MINIGRID.task_id)
    k_e, k_p = jax.random.split(jax.random.key(0))
    expert = collect_rollouts(task, "expert", k_e, N, 32, mode="pixels", cells=True)
    noisy = collect_rollouts(task, "epsilon-expert", k_p, N, 32, mode="pixels", cells=True)
    cells = VerificationRollouts(expert, noisy, noisy)
    assert all(t.cell_inputs == ("frame",) for t in cells)
    assert expert.inputs["frame"].shape[2:] == (6, 5)  # cell ids, not 48x40x3 frames
    drawn = VerificationRollouts(*(draw_frames(t, task) for t in cells))
    assert drawn.expert.inputs["frame"].shape[2:] == (48, 40, 3) and not drawn.expert.cell_inputs
    return task, cells, drawn


def _pixel_specs(task):
    """The reference pixel spec, a variant per PIXEL_VARIANTS, and the reference compiled
    without the sprite sheets (the evaluator then draws its frames from the ids)."""
    ref = RewardSpec.load(PIXEL_REFERENCE / f"{task.id}.pixels.py")
    out = [ref]
    for j, body in PIXEL_VARIANTS.items():
        src = '"""A variant."""\n'
        for i, p in enumerate(ref.programs):
            if i == j:
                src += f'\n\ndef {p.name}(obs):\n    """{p.name}."""\n    return {body}\n'
            else:
                src += "\n\n" + p.source + "\n"
        out.append(RewardSpec.from_source(src))
    out.append(compile_spec(ref, task.inputs("pixels"), task.constants("pixels")))
    return out


# the random set is noisy expert runs: sub-tasks fire more often than for a random agent
PIXEL_CRITERIA = Criteria(random_rate=0.5)


@pytest.fixture(scope="module")
def pixel_specs(pixel_sets):
    """`_pixel_specs` compiled once (the evaluators compiled for them serve every test)."""
    task = pixel_sets[0]
    return [compile_for_verification(s, task, "pixels") for s in _pixel_specs(task)]


def test_pixel_verdicts_on_cell_ids_equal_drawn_frames(pixel_sets, pixel_specs):
    task, cells, drawn = pixel_sets
    assert all(p.sprite_frames for p in pixel_specs[0].programs)
    assert not pixel_specs[-1].programs[0].sprite_frames  # compiled without the sheets
    crit = PIXEL_CRITERIA
    on_cells = verify_specs(pixel_specs, task, cells.expert, cells.random, crit, cells.epsilon)
    on_frames = verify_specs(pixel_specs, task, drawn.expert, drawn.random, crit, drawn.epsilon)
    assert [v.to_dict() for v in on_cells] == [v.to_dict() for v in on_frames]
    assert [v.passed for v in on_cells] == [True, True, False, True]
    assert "steps before the task is solved" in " ".join(on_cells[2].all_reasons())
    assert on_cells[1].subtasks[0].first_step_mean == on_cells[0].subtasks[0].first_step_mean


def test_cell_id_trajectories_are_drawn_before_saving(pixel_sets, pixel_specs, tmp_path):
    task, cells, drawn = pixel_sets
    assert cells.expert.inputs["frame"].dtype == np.uint16  # 780 sprites
    with pytest.raises(UserError, match="hold cell ids for frame, not drawn frames"):
        save_trajectories(tmp_path / "cells.npz", cells.expert, task.id)
    save_trajectories(tmp_path / "drawn.npz", drawn.expert, task.id)
    loaded = load_trajectories(tmp_path / "drawn.npz", task, "pixels")
    np.testing.assert_array_equal(loaded.inputs["frame"], drawn.expert.inputs["frame"])
    # a file of drawn frames verifies with the collected cell-id sets: the same verdicts
    crit = PIXEL_CRITERIA
    mixed = verify_specs(pixel_specs, task, loaded, cells.random, crit, cells.epsilon)
    same = verify_specs(pixel_specs, task, cells.expert, cells.random, crit, cells.epsilon)
    assert mixed[0].passed and [v.to_dict() for v in mixed] == [v.to_dict() for v in same]


def test_k_specs_in_one_call_equal_each_alone():
    task, sets = _doorkey()
    good = _spec(*MINIGRID.good)
    early = _spec(*MINIGRID.good[:-1], ("solved", MINIGRID.early_last))
    broken = _spec(("broken", "obs.no_such_input == 1"), MINIGRID.good[-1])
    e, r, p = sets
    together = verify_specs([good, broken, early], task, e, r, epsilon=p)
    alone = [verify_spec(s, task, e, r, epsilon=p) for s in (good, early)]
    assert [v.to_dict() for v in (together[0], together[2])] == [v.to_dict() for v in alone]
    assert together[0].passed and not together[2].passed
    v = together[1]
    assert not v.passed and not v.subtasks and "does not compile" in v.reasons[0]
    assert "no_such_input" in v.feedback() and "does not compile" in v.to_markdown()


def test_verifier_final_many_equals_final(verifier):
    good = _spec(*MINIGRID.good)
    early = _spec(*MINIGRID.good[:-1], ("solved", MINIGRID.early_last))
    broken = _spec(("broken", "no_such_primitive(obs.agent_pos)"), MINIGRID.good[-1])
    many = verifier.final_many([early, broken, good])
    for spec, v in ((early, many[0]), (good, many[2])):
        assert v.to_dict() == verifier.final(spec).to_dict()
        assert v.feedback_verdict.rollout_set == "feedback"
    assert not many[1].passed and "does not compile" in many[1].reasons[0]
    assert [v.passed for v in verifier.verify_many([good, early])] == [True, False]


def test_search_judges_its_candidates_in_one_batched_call(verifier, monkeypatch):
    from car_jax.search import Candidate, judge

    calls = []
    real = verifier.final_many
    monkeypatch.setattr(
        verifier, "final_many", lambda specs: calls.append(len(specs)) or real(specs)
    )
    good = _spec(*MINIGRID.good)
    early = _spec(*MINIGRID.good[:-1], ("solved", MINIGRID.early_last))
    broken = _spec(("broken", "no_such_primitive(obs.agent_pos)"), MINIGRID.good[-1])
    cands = [Candidate(name=f"c{i}", iteration=1) for i in range(3)]
    out = judge(cands, [good, broken, early], verifier.task, "state", verifier)
    assert calls == [2]  # the two that compile, in one call
    assert out[0] is not None and out[1] is None and out[2] is None
    assert cands[0].verdict.passed and cands[1].reason.startswith("does not compile")
    assert cands[2].reason.startswith("verification: ") and "steps before" in cands[2].reason
