"""train_run: logs, checkpoints, and resume after a hard kill equal to an uninterrupted run."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jobs import CHECKPOINT_EVERY, CHUNK, KILL_AFTER, RESUME_SEEDS, resume_config, run_resumable

from car_jax.errors import UserError

JOBS = str(Path(__file__).parent / "jobs.py")
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def trainer():
    from probe_envs import Bandit

    from car_jax.rl.ppo import PPOTrainer

    return PPOTrainer(resume_config(), Bandit())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, trainer):
    out = tmp_path_factory.mktemp("full")
    return run_resumable(out, trainer=trainer)


def test_logs_hold_one_row_per_seed_and_update(uninterrupted):
    out = uninterrupted.out_dir
    n = resume_config().num_updates
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["seed"], r["update"]) for r in rows) == [
        (s, u) for s in RESUME_SEEDS for u in range(1, n + 1)
    ]
    assert rows[-1]["env_steps"] == n * resume_config().batch_size
    with open(out / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert {
        "train_success_rate",
        "train_subtask_rate_0",
        "eval_greedy_success",
        "eval_greedy_subtask_rate_1",
    } <= set(table[0])
    meta = json.loads((out / "run.json").read_text())
    assert meta["seeds"] == list(RESUME_SEEDS) and meta["config"]["num_envs"] == 8
    assert uninterrupted.metrics["train_success_rate"].shape == (2, n)
    assert np.all(uninterrupted.metrics["train_success_rate"][:, -1] > 0.8)
    assert np.all(uninterrupted.metrics["eval_greedy_success"][:, -1] == 1.0)


def test_resume_after_kill_equals_uninterrupted(tmp_path, uninterrupted, trainer):
    out = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, JOBS, "killed", str(out)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 17, proc.stderr[-2000:]
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == KILL_AFTER * len(RESUME_SEEDS)  # flushed before the kill
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())[-1] == (
        CHECKPOINT_EVERY
    )

    resumed = run_resumable(out, resume=True, trainer=trainer)
    for name, full in uninterrupted.metrics.items():
        if name != "time":
            np.testing.assert_allclose(resumed.metrics[name], full, rtol=0, atol=0, err_msg=name)
    for a, b in zip(
        jax.tree.leaves(resumed.params), jax.tree.leaves(uninterrupted.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Rows logged after the last checkpoint were dropped and redone, not duplicated.
    keys = [
        (json.loads(r)["seed"], json.loads(r)["update"])
        for r in (out / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(keys) == len(set(keys)) == resume_config().num_updates * len(RESUME_SEEDS)
    # The clock goes on from the last row kept: the time column never steps back, and the
    # result's training time is the whole run's.
    times = [json.loads(r)["time"] for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert times == sorted(times) and resumed.train_seconds == pytest.approx(times[-1], abs=1e-3)
    assert times[-1] > times[CHECKPOINT_EVERY * len(RESUME_SEEDS) - 1] > 0
    # Read back once finished: nothing to train or compile; both times are those recorded.
    again = run_resumable(out, resume=True, trainer=trainer)
    assert again.train_seconds == pytest.approx(times[-1], abs=1e-3)
    recorded = json.loads((out / "run.json").read_text())["compile_seconds"]
    assert again.compile_seconds == recorded == resumed.compile_seconds > 0
    np.testing.assert_array_equal(
        again.metrics["eval_greedy_success"], resumed.metrics["eval_greedy_success"]
    )


def test_evaluation_between_chunks_equals_the_one_inside_them(tmp_path, uninterrupted, trainer):
    # The driver evaluates between compiled chunks when they end at every evaluation point
    # (chunks of 3, evaluations every 3) and inside the chunk's scan otherwise (chunks of 2).
    # Same episodes, same keys: the logs must agree, and only the evaluation points are scored.
    from probe_envs import Bandit

    from car_jax.rl.driver import evaluates_between_chunks, schedule, train_run

    config = resume_config()
    assert evaluates_between_chunks(config, CHUNK) and not evaluates_between_chunks(config, 2)
    inside = train_run(config, Bandit(), RESUME_SEEDS, tmp_path / "inside", chunk_updates=2,
                       progress=False, trainer=trainer)  # fmt: skip
    for name, between in uninterrupted.metrics.items():
        if name != "time":
            np.testing.assert_allclose(inside.metrics[name], between, rtol=1e-6, err_msg=name)
    scored = np.isfinite(uninterrupted.metrics["eval_greedy_success"])
    assert scored.all(axis=0).tolist() == [u % 3 == 0 for u in range(1, config.num_updates + 1)]
    # The default chunk is the plain default when it ends at every evaluation point anyway, a
    # shorter aligned one when that is at least half as long, else the plain one (evaluated in
    # the chunk): 366 updates every 36 -> 6; 976 every 97 -> 16, evaluated inside.
    doorkey = config.replace(eval_every=0, num_steps=8, total_timesteps=64 * 366)
    assert schedule(doorkey, None, None)[0] == 6 and evaluates_between_chunks(doorkey, 6)
    cartpole = config.replace(eval_every=0, total_timesteps=32 * 976)
    assert cartpole.eval_interval == 97
    assert schedule(cartpole, None, None)[0] == 16 and not evaluates_between_chunks(cartpole, 16)
    aligned = config.replace(eval_every=10, total_timesteps=32 * 400)  # plain 20, aligned 10
    assert schedule(aligned, None, None)[0] == 10
    assert schedule(aligned.replace(eval_every=8), None, None)[0] == 20  # aligned 8: too short
    assert schedule(aligned.replace(eval_episodes=0), None, None)[0] == 20


def test_existing_run_needs_resume_and_matching_settings(uninterrupted, trainer):
    from probe_envs import Bandit

    from car_jax.rl.driver import train_run

    with pytest.raises(UserError, match="already holds a training run; pass resume=True"):
        train_run(resume_config(), Bandit(), RESUME_SEEDS, uninterrupted.out_dir, progress=False)
    with pytest.raises(UserError, match="its seeds differs"):
        train_run(
            resume_config(), Bandit(), (1, 2), uninterrupted.out_dir, resume=True, progress=False
        )

    class ShowsMore(Bandit):
        id = "Bandit"

        def observation_meta(self):
            return {"carried": True}  # same obs shape, different content: must not resume

    with pytest.raises(UserError, match="its observation differs .*carried"):
        train_run(resume_config(), ShowsMore(), RESUME_SEEDS, uninterrupted.out_dir, resume=True,
                  chunk_updates=CHUNK, progress=False)  # fmt: skip


def test_run_from_before_a_new_config_field_still_resumes(tmp_path):
    # run.json written before PPOConfig.conv_impl existed: the field takes its default, and any
    # real difference in the config is still refused.
    from car_jax.rl.checkpoints import check_resumable

    config = resume_config().to_dict()
    meta = {"env": "Bandit", "seeds": [0], "config": config}
    old_config = {k: v for k, v in config.items() if k != "conv_impl"}
    path = tmp_path / "run.json"
    path.write_text(json.dumps({**meta, "config": old_config}))
    check_resumable(path, meta)
    path.write_text(json.dumps({**meta, "config": {**old_config, "lr": config["lr"] * 2}}))
    with pytest.raises(UserError, match="its config differs"):
        check_resumable(path, meta)
    path.write_text(json.dumps({**meta, "config": {**config, "conv_impl": "lax"}}))
    with pytest.raises(UserError, match="its config differs"):
        check_resumable(path, meta)


def test_checkpoint_of_another_network_is_refused_by_name(uninterrupted):
    # A checkpoint whose params have other shapes than this run's network (e.g. a progress-plane
    # run saved before the plane was embedded once) is refused with the way out, not loaded.
    from probe_envs import Bandit

    from car_jax.rl import checkpoints
    from car_jax.rl.ppo import PPOTrainer

    other = PPOTrainer(resume_config().replace(hidden=(32, 32)), Bandit())
    template = other.batched_init()(jax.random.split(jax.random.key(0), 2), other.config.hyper())
    manager = checkpoints.open_manager((uninterrupted.out_dir / "checkpoints").absolute())
    try:
        want = r"leaf 0 has shape \(2, 64\) where this run's state has \(2, 32\).*embed_constant"
        with pytest.raises(UserError, match=want):
            checkpoints.restore(manager, manager.latest_step(), template)
    finally:
        manager.close()
