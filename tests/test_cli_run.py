"""The main job end to end on DoorKey-5x5: spec -> verification -> PPO with the code reward.

This is also the stage-3 learning test: with the code reward, the greedy policy of every seed
reaches >= 90% success on fresh evaluation episodes within a small budget.
"""

from __future__ import annotations

import json

import pytest

from car_jax.cli import main
from car_jax.errors import UserError

SPEC = '''"""Pick up the key, open the door, then reach the goal square."""


def picked_up_key(obs):
    """The agent carries the key."""
    return obs.carried_tile == KEY


def opened_door(obs):
    """The door is open."""
    return contains(obs.tiles, DOOR_OPEN)


def reached_goal(obs):
    """The agent stands on the goal square."""
    return cell(obs.tiles, obs.agent_pos) == GOAL
'''

TRAIN = [
    "--reward",
    "car",
    "--seeds",
    "2",
    "--num-envs",
    "128",
    "--steps",
    "196608",
    "--eval-every",
    "8",
    "--no-progress",
]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    spec = root / "doorkey.py"
    spec.write_text(SPEC)
    out = root / "out"
    argv = [
        "run",
        "MiniGrid-DoorKey-5x5",
        "--spec",
        str(spec),
        "--out",
        str(out),
        "--verify-n",
        "32",
    ]
    code = main(argv + TRAIN)
    return code, out


def test_run_writes_every_artifact(finished_run):
    code, out = finished_run
    assert code == 0
    for name in ("initial.png", "goal.png", "spec.py", "verdict.json", "verdict.md",
                 "summary.json", "learning_curve.png", "report.md"):  # fmt: skip
        assert (out / name).is_file(), name
    assert (out / "train" / "car" / "metrics.csv").is_file()
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["passed"] and [s["name"] for s in verdict["subtasks"]] == [
        "picked_up_key", "opened_door", "reached_goal"]  # fmt: skip
    report = (out / "report.md").read_text()
    assert "picked_up_key" in report and "code reward (CaR)" in report
    assert "fresh episodes of the greedy policy" in report and "95% CI" in report
    # The metrics log the training episodes (labelled) and evaluations at every 8th update.
    header = (out / "train" / "car" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_success_rate", "eval_greedy_success", "eval_stochastic_success"} <= set(header)
    rows = [
        json.loads(x) for x in (out / "train" / "car" / "metrics.jsonl").read_text().splitlines()
    ]
    evaluated = sorted({r["update"] for r in rows if r["eval_greedy_success"] is not None})
    assert evaluated == [8, 16, 24]


def test_code_reward_solves_doorkey_5x5(finished_run):
    _, out = finished_run
    summary = json.loads((out / "summary.json").read_text())["car"]
    assert min(summary["final_success_per_seed"]) >= 0.9, summary
    assert summary["seeds_reaching_90pct"] == 2
    rates = summary["final_subtask_rates"]
    assert min(rates.values()) >= 0.9 and list(rates) == [
        "picked_up_key",
        "opened_door",
        "reached_goal",
    ]


def test_rejected_spec_stops_before_training(tmp_path):
    spec = tmp_path / "bad.py"
    spec.write_text(SPEC.replace("obs.carried_tile == KEY", "True"))
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "MiniGrid-DoorKey-5x5",
            "--spec",
            str(spec),
            "--out",
            str(out),
            "--verify-n",
            "32",
            *TRAIN,
        ]
    )  # fmt: skip  (same rollouts as the fixture: cached)
    assert code == 1
    assert not json.loads((out / "verdict.json").read_text())["passed"]
    assert not (out / "train").exists()
    assert "Not run: the programs were rejected." in (out / "report.md").read_text()


def test_bad_inputs_get_one_clear_line(tmp_path, capsys):
    assert main(["run", "MiniGrid-Nope", "--spec", "x.py"]) == 2
    assert "unknown task 'MiniGrid-Nope'" in capsys.readouterr().err
    assert main(["train", "MiniGrid-DoorKey-5x5", "--spec", str(tmp_path / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "MiniGrid-DoorKey-5x5", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    # Training flags are checked before stage 1, so nothing is generated or written first.
    out = tmp_path / "never"
    assert main(["run", "MiniGrid-DoorKey-5x5", "--out", str(out), "--ent-coef", "-1"]) == 2
    assert "--ent-coef must be >= 0, got -1.0" in capsys.readouterr().err
    assert main(["run", "MiniGrid-DoorKey-5x5", "--out", str(out), "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err
    assert main(["run", "MiniGrid-DoorKey-5x5", "--out", str(out), "--ppo", "gamma=2"]) == 2
    assert "PPOConfig.gamma must lie in [0, 1], got 2.0" in capsys.readouterr().err
    assert main(["train", "MiniGrid-DoorKey-5x5", "--spec", "x.py", "--out", str(out),
                 "--ppo", "lr"]) == 2  # fmt: skip
    assert "--ppo 'lr': expected KEY=VALUE" in capsys.readouterr().err
    assert main(["search", "MiniGrid-DoorKey-5x5", "--out", str(out), "--ppo", "gama=0.9"]) == 2
    assert "PPOConfig has no field 'gama'" in capsys.readouterr().err
    assert not out.exists()


def test_per_task_ppo_overrides_yield_to_flags():
    import envs
    from car_jax.experiment import make_config
    from car_jax.rl.config import PPOConfig

    family = PPOConfig.for_family("minatar").ent_coef
    breakout, freeway = envs.make("Breakout-MinAtar"), envs.make("Freeway-MinAtar")
    assert make_config(breakout).ent_coef == 0.1 != family
    assert make_config(breakout, ent_coef=0.02).ent_coef == 0.02
    assert make_config(breakout, ent_coef=None).ent_coef == 0.1  # an unset flag keeps the default
    assert make_config(freeway).ent_coef == family
    # --ppo sets any field over the task's defaults; a field also set by its own flag is refused.
    cfg = make_config(breakout, ppo=dict(gamma=0.995, clip_eps=0.1))
    assert (cfg.gamma, cfg.clip_eps, cfg.ent_coef, cfg.anneal_lr) == (0.995, 0.1, 0.1, False)
    with pytest.raises(UserError, match="ent_coef set both by --ppo and by its own flag"):
        make_config(breakout, ppo=dict(ent_coef=0.2), ent_coef=0.3)
    with pytest.raises(UserError, match="total_timesteps set both"):
        make_config(breakout, 1000, ppo=dict(total_timesteps=2000))


def test_long_defaults_are_announced_with_a_smaller_budget(capsys):
    import envs
    from car_jax.commands.train import LONG_RUN_SECONDS, warn_if_long
    from car_jax.experiment import make_config

    task = envs.make("MiniGrid-DoorKey-16x16")
    seconds = warn_if_long(task, make_config(task), seeds=2, variants=2)
    out = capsys.readouterr().out
    assert seconds > LONG_RUN_SECONDS and "estimated" in out and "--steps" in out
    small = envs.make("MiniGrid-DoorKey-5x5")
    assert warn_if_long(small, make_config(small), seeds=1, variants=1) < LONG_RUN_SECONDS
    assert capsys.readouterr().out == ""
    # MountainCar's 64 epochs per update: its estimate is its own, not the classic family's.
    mountain, cartpole = envs.make("MountainCar-v0"), envs.make("CartPole-v1")
    per_step = [warn_if_long(t, make_config(t, 1_000_000), 1, 1) for t in (mountain, cartpole)]
    assert per_step[0] > 3 * per_step[1]


def test_progress_and_carried_observations_are_the_minigrid_defaults():
    import envs
    from car_jax.experiment import default_carried_obs, default_progress_obs, make_env
    from car_jax.spec import RewardSpec, compile_spec

    task = envs.make("MiniGrid-DoorKey-5x5")
    compiled = compile_spec(RewardSpec.from_source(SPEC), task.inputs("state"),
                            task.constants("state"))  # fmt: skip
    view = tuple(task.obs_shape)
    assert make_env(task, compiled, "state", "car").obs_shape == (*view[:2], view[2] + 1)
    assert make_env(task, compiled, "state", "sparse").obs_shape == view  # the baseline: own obs
    off = make_env(task, compiled, "state", "car", progress_obs=False)
    assert off.obs_shape == view
    assert default_progress_obs(envs.make("CartPole-v1")) is False
    assert default_progress_obs(envs.make("CartPole-v1"), True) is True
    # The carried object is part of both rewards' observation on MiniGrid, off elsewhere.
    for reward in ("car", "sparse"):
        assert make_env(task, compiled, "state", reward).observation_meta()["carried"] is True
    assert make_env(task, compiled, "state", "sparse", carried_obs=False).carried_obs is False
    assert default_carried_obs(envs.make("CartPole-v1")) is False
    with pytest.raises(
        UserError, match="--carried-obs: task 'CartPole-v1' \\(classic\\) has no carried object"
    ):
        default_carried_obs(envs.make("CartPole-v1"), True)
