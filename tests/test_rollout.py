"""Batched rollouts and the trajectory file format: round trip and every kind of bad file refused."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import envs
from car_jax.errors import UserError
from car_jax.rollout import (
    SCHEMA_VERSION,
    Trajectories,
    collect_rollouts,
    draw_frames,
    load_trajectories,
    save_trajectories,
)

TASK_ID = "MiniGrid-DoorKey-5x5" if "MiniGrid-DoorKey-5x5" in envs.registered() else "CartPole-v1"


@pytest.fixture(scope="module")
def task():
    return envs.make(TASK_ID)


@pytest.fixture(scope="module")
def random_traj(task):
    return collect_rollouts(task, "random", jax.random.key(0), n=6, horizon=40)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, task, random_traj):
    path = tmp_path_factory.mktemp("traj") / "random.npz"
    save_trajectories(path, random_traj, task.id)
    return path


def _rewrite(src, dst, drop=(), **replace):
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files if k not in drop}
    arrays.update(replace)
    with open(dst, "wb") as out:
        np.savez(out, **arrays)
    return dst


def test_shapes_and_episode_semantics(task, random_traj):
    tr = random_traj
    assert isinstance(tr, Trajectories) and tr.mode == "state"
    assert tr.valid.shape == (6, 40) and tr.success.shape == (6,) and tr.reward.shape == (6, 40)
    for name, field in task.inputs("state").items():
        assert tr.inputs[name].shape == (6, 40, *field.shape)
    valid = np.asarray(tr.valid)
    assert valid[:, 0].all()
    # valid is a prefix: once False it stays False.
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()
    # After the episode ended the state is frozen: inputs repeat the last valid row.
    for i in range(6):
        k = int(valid[i].sum())
        if k < 40:
            for name in tr.inputs:
                x = np.asarray(tr.inputs[name][i])
                assert (x[k:] == x[k - 1]).all(), name
            assert (np.asarray(tr.reward[i, k - 1 :]) == 0).all()


def test_same_key_same_trajectories_and_expert_differs(task, random_traj):
    again = collect_rollouts(task, "random", jax.random.key(0), n=6, horizon=40)
    for name in random_traj.inputs:
        np.testing.assert_array_equal(random_traj.inputs[name], again.inputs[name])
    expert = collect_rollouts(task, "expert", jax.random.key(0), n=6, horizon=40)
    assert not np.array_equal(np.asarray(expert.actions), np.asarray(random_traj.actions))
    assert float(expert.success.mean()) >= float(random_traj.success.mean())


def test_callable_policy_and_bad_arguments(task):
    always_zero = lambda key, state, params: 0  # noqa: E731
    tr = collect_rollouts(task, always_zero, jax.random.key(1), n=2, horizon=5)
    assert (np.asarray(tr.actions) == 0).all()
    with pytest.raises(UserError, match="unknown policy"):
        collect_rollouts(task, "greedy", jax.random.key(1), n=2, horizon=5)
    with pytest.raises(UserError, match="no input mode"):
        collect_rollouts(task, "random", jax.random.key(1), n=2, horizon=5, mode="sound")
    with pytest.raises(UserError, match=">= 1"):
        collect_rollouts(task, "random", jax.random.key(1), n=0, horizon=5)


def test_round_trip(task, random_traj, saved):
    loaded = load_trajectories(saved, task, "state")
    for name in random_traj.inputs:
        np.testing.assert_array_equal(loaded.inputs[name], random_traj.inputs[name])
        assert loaded.inputs[name].dtype == random_traj.inputs[name].dtype
    for field in ("actions", "reward", "valid", "success", "solved"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(random_traj, field))
    with np.load(saved) as f:
        assert int(f["schema_version"]) == SCHEMA_VERSION and str(f["task_id"]) == task.id


def test_missing_array_refused(task, saved, tmp_path):
    name = next(iter(task.inputs("state")))
    bad = _rewrite(saved, tmp_path / "m.npz", drop=(f"inputs/{name}",))
    with pytest.raises(UserError, match=f"missing array 'inputs/{name}'"):
        load_trajectories(bad, task, "state")
    bad = _rewrite(saved, tmp_path / "v.npz", drop=("valid",))
    with pytest.raises(UserError, match="missing array 'valid'"):
        load_trajectories(bad, task, "state")


def test_wrong_shape_refused(task, saved, tmp_path):
    name = next(iter(task.inputs("state")))
    with np.load(saved) as f:
        x = f[f"inputs/{name}"]
    bad = _rewrite(saved, tmp_path / "s.npz", **{f"inputs/{name}": x[:, :-1]})
    with pytest.raises(UserError, match=rf"array 'inputs/{name}' has shape .* expected"):
        load_trajectories(bad, task, "state")
    with np.load(saved) as f:
        s = f["success"]
    bad = _rewrite(saved, tmp_path / "s2.npz", success=s[:-1])
    with pytest.raises(UserError, match="array 'success' has shape"):
        load_trajectories(bad, task, "state")


def test_wrong_dtype_refused(task, saved, tmp_path):
    name, field = next(iter(task.inputs("state").items()))
    other = "float64" if field.dtype != "float64" else "float32"
    with np.load(saved) as f:
        x = f[f"inputs/{name}"].astype(other)
    bad = _rewrite(saved, tmp_path / "d.npz", **{f"inputs/{name}": x})
    with pytest.raises(
        UserError, match=rf"array 'inputs/{name}' has dtype {other}, expected {field.dtype}"
    ):
        load_trajectories(bad, task, "state")


def test_out_of_range_refused(task, saved, tmp_path):
    with np.load(saved) as f:
        a = f["actions"].copy()
    a[0, 0] = 99 if task.action.kind == "discrete" else 99.0
    bad = _rewrite(saved, tmp_path / "r.npz", actions=a)
    with pytest.raises(UserError, match="array 'actions' has value .* outside the known range"):
        load_trajectories(bad, task, "state")


def test_wrong_version_refused(task, saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "ver.npz", schema_version=np.asarray(SCHEMA_VERSION + 1))
    with pytest.raises(UserError, match="schema_version"):
        load_trajectories(bad, task, "state")


def test_wrong_task_refused(task, saved, tmp_path):
    bad = _rewrite(saved, tmp_path / "t.npz", task_id=np.asarray("Other-v0"))
    with pytest.raises(UserError, match=f"'task_id' is 'Other-v0', expected '{task.id}'"):
        load_trajectories(bad, task, "state")


def test_not_an_npz_refused(task, tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are not arrays")
    with pytest.raises(UserError, match="is not an .npz archive"):
        load_trajectories(path, task, "state")
    with pytest.raises(UserError, match="does not exist"):
        load_trajectories(tmp_path / "absent.npz", task, "state")


def test_solved_is_per_step_ground_truth(task):
    # (n and horizon as in the test above: the compiled rollout is reused)
    expert = collect_rollouts(task, "expert", jax.random.key(3), n=6, horizon=40)
    solved, valid = np.asarray(expert.solved), np.asarray(expert.valid)
    assert solved.shape == valid.shape and not (solved & ~valid).any()
    np.testing.assert_array_equal(solved.any(axis=1), np.asarray(expert.success))
    assert expert.success.all()
    # A MiniGrid episode ends on the step its goal is reached: solved is the last valid row.
    last = valid.sum(axis=1) - 1
    assert valid[:, -1].sum() == 0, "every expert episode ends within 40 steps"
    assert solved[np.arange(6), last].all() and solved.sum() == 6


def test_until_done_collects_the_same_rows_and_stops_when_every_episode_ended(task, random_traj):
    key = jax.random.key(3)  # the expert of test_solved_is_per_step_ground_truth: all end by 40
    full = collect_rollouts(task, "expert", key, n=6, horizon=40)
    rows = int(np.asarray(full.valid).sum(axis=1).max())  # the longest episode's valid rows
    # One step at a time it stops right after the last valid row: nothing valid is lost, and no
    # row where no episode is valid is kept.
    exact = collect_rollouts(task, "expert", key, n=6, horizon=40, until_done=True, chunk=1)
    assert exact.horizon == rows < 40
    # In chunks: whole chunks up to the one holding that row, no further.
    short = collect_rollouts(task, "expert", key, n=6, horizon=40, until_done=True, chunk=8)
    assert short.horizon == -(-rows // 8) * 8
    assert not np.asarray(full.valid)[:, rows:].any()
    for part in (exact, short):
        for name in full.inputs:
            np.testing.assert_array_equal(
                part.inputs[name], np.asarray(full.inputs[name])[:, : part.horizon]
            )
        for field in ("actions", "reward", "valid", "solved"):
            np.testing.assert_array_equal(
                getattr(part, field), np.asarray(getattr(full, field))[:, : part.horizon]
            )
        np.testing.assert_array_equal(part.success, full.success)
    # Some random run lasts past 40 steps: every row is collected (3 chunks of 16, cut to 40).
    assert np.asarray(random_traj.valid)[:, -1].any()
    rand = collect_rollouts(
        task, "random", jax.random.key(0), n=6, horizon=40, until_done=True, chunk=16
    )
    assert rand.horizon == 40
    np.testing.assert_array_equal(rand.valid, random_traj.valid)
    for name in rand.inputs:
        np.testing.assert_array_equal(rand.inputs[name], random_traj.inputs[name])
    with pytest.raises(UserError, match="chunk must be >= 1"):
        collect_rollouts(
            task, "random", jax.random.key(0), n=6, horizon=40, until_done=True, chunk=0
        )


def test_epsilon_expert_mixes_random_actions(task):
    key = jax.random.key(5)
    expert = collect_rollouts(task, "expert", key, n=6, horizon=40)
    eps = collect_rollouts(task, "epsilon-expert", key, n=6, horizon=40)
    a_e, a_p = np.asarray(expert.actions), np.asarray(eps.actions)
    both = np.asarray(expert.valid)[:, :1]
    assert both.all() and not np.array_equal(a_e, a_p)


def test_version_1_file_loads_without_per_step_truth(task, saved, tmp_path):
    v1 = _rewrite(saved, tmp_path / "v1.npz", drop=("solved",), schema_version=np.int64(1))
    loaded = load_trajectories(v1, task, "state")
    assert loaded.solved is None
    np.testing.assert_array_equal(
        loaded.success, np.asarray(load_trajectories(saved, task).success)
    )
    # Saving trajectories without per-step truth writes a version-1 file again.
    save_trajectories(tmp_path / "again.npz", loaded, task.id)
    with np.load(tmp_path / "again.npz") as f:
        assert int(f["schema_version"]) == 1 and "solved" not in f.files


def test_bad_solved_refused(task, saved, tmp_path):
    no_solved = _rewrite(saved, tmp_path / "ns.npz", drop=("solved",))
    with pytest.raises(UserError, match="missing array 'solved'"):
        load_trajectories(no_solved, task, "state")
    with np.load(saved) as f:
        solved, success = f["solved"], f["success"]
    flipped = solved.copy()
    flipped[:, 0] = ~success  # claims a solved step on runs that did not succeed (and vice versa)
    bad = _rewrite(saved, tmp_path / "bs.npz", solved=flipped, success=success)
    with pytest.raises(UserError, match="row 0: 'success' is"):
        load_trajectories(bad, task, "state")


def _pixel_rollouts(cells: bool, n: int = 4, horizon: int = 24):
    """Epsilon-expert DoorKey-5x5 pixel rollouts, frames recorded as cell ids or drawn."""
    task = envs.make("MiniGrid-DoorKey-5x5")
    return task, collect_rollouts(
        task, "epsilon-expert", jax.random.key(5), n, horizon, mode="pixels", cells=cells
    )


@pytest.mark.slow
def test_cell_ids_draw_the_frames_a_frame_rollout_records():
    # (saving cell ids is refused, drawing them for a file: tests/test_verify.py, cheaply)
    task, cells = _pixel_rollouts(cells=True)
    _, frames = _pixel_rollouts(cells=False)
    np.testing.assert_array_equal(draw_frames(cells, task).inputs["frame"], frames.inputs["frame"])
    for name in ("actions", "valid", "solved", "success"):
        np.testing.assert_array_equal(getattr(cells, name), getattr(frames, name))
