"""Several reward specs in one compiled program: each spec's metrics equal training it alone with
the same keys; specs with different sub-task counts train together; run folder per spec."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from car_jax.errors import UserError
from car_jax.multi import train_specs, write_comparison
from car_jax.reward import CodeReward
from car_jax.rl.config import PPOConfig
from car_jax.rl.driver import train_run
from car_jax.spec import RewardSpec, compile_spec
from envs.base import ActionSpace, InputField, Task


class Walk(Task):
    """Walk `length` cells: action 1 moves on (the last cell succeeds, env reward 1), action 0 ends
    the episode as a failure."""

    id = "Walk"
    family = "test"
    length = 5
    max_steps = 5
    modes = ("state",)
    action = ActionSpace("discrete", n=2)
    obs_shape = (5,)
    obs_dtype = "float32"
    params = None

    def _obs(self, t):
        return jax.nn.one_hot(jnp.minimum(t, self.length - 1), self.length)

    def reset(self, key, params):
        return self._obs(0), jnp.zeros((), jnp.int32)

    def step(self, key, t, action, params):
        moved = action == 1
        t = jnp.where(moved, t + 1, t)
        done = ~moved | (t >= self.length)
        success = t >= self.length
        return self._obs(t), t, success.astype(jnp.float32), done, jnp.zeros((), bool), {}

    def inputs(self, mode):
        return {"t": InputField((), "int32", "cells walked")}

    def constants(self, mode):
        return {}

    def observe(self, t, mode):
        return {"t": t}

    def success(self, t):
        return t >= self.length


def _spec(thresholds):
    src = '"""Walk to the end."""' + "".join(
        f'\n\n\ndef at_{th}(obs):\n    """Walked {th} cells."""\n    return obs.t >= {th}\n'
        for th in thresholds
    )
    return compile_spec(RewardSpec.from_source(src), Walk().inputs("state"), {})


# Sub-task counts 1, 3 and 2: padded to 3 inside the program.
THRESHOLDS = {"one": (5,), "three": (2, 4, 5), "two": (3, 5)}
CONFIG = PPOConfig(num_envs=8, num_steps=8, total_timesteps=8 * 8 * 6, num_minibatches=2,
                   update_epochs=2, eval_episodes=8, eval_every=3, lr=3e-3)  # fmt: skip
SEEDS = (0, 3)


@pytest.fixture(scope="module")
def together(tmp_path_factory):
    task = Walk()
    compiled = [_spec(t) for t in THRESHOLDS.values()]
    env = CodeReward(task, compiled)
    out = tmp_path_factory.mktemp("multi")
    result = train_specs(CONFIG, env, list(THRESHOLDS), SEEDS, out, progress=False,
                         chunk_updates=3)  # fmt: skip
    return env, result


def test_each_spec_trained_together_matches_training_it_alone(together, tmp_path):
    env, result = together
    assert env.subtask_counts == (1, 3, 2) and env.num_subtasks == 3
    # "two" is spec index 2 (a wrong index would train spec 0's reward) with 2 sub-tasks,
    # padded to 3 inside the shared program.
    for name in ("two",):
        alone_env = CodeReward(Walk(), _spec(THRESHOLDS[name]))
        alone = train_run(CONFIG, alone_env, SEEDS, tmp_path / name, progress=False,
                          chunk_updates=3)  # fmt: skip
        mine = result.results[name].metrics
        assert set(mine) == set(alone.metrics)
        for metric, ref in alone.metrics.items():
            if metric == "time":  # wall clock
                continue
            assert mine[metric].shape == ref.shape, metric
            np.testing.assert_allclose(mine[metric], ref, rtol=2e-4, atol=2e-5, err_msg=metric)
        # The code reward really differs by spec (so the match above is not vacuous).
    one, three = (result.results[n].metrics["mean_code_reward"] for n in ("one", "three"))
    assert not np.allclose(one, three)


def test_padded_subtasks_never_count(together):
    _, result = together
    rates = result.results["one"].metrics["eval_greedy_subtask_rate"]
    assert rates.shape[-1] == 1  # cut to the spec's own count
    rates3 = result.results["three"].metrics["train_subtask_rate"]
    assert rates3.shape[-1] == 3
    finite = rates3[np.isfinite(rates3)]
    assert finite.size and (finite >= 0).all() and (finite <= 1).all()


def test_run_folder_per_spec_with_comparison(together):
    _, result = together
    summary = write_comparison(result, "Walk: three specs")
    out = result.out_dir
    for name, th in THRESHOLDS.items():
        assert (out / name / "metrics.csv").is_file()
        meta = json.loads((out / name / "run.json").read_text())
        assert meta["subtasks"] == [f"at_{t}" for t in th]
        assert (out / name / "checkpoints").is_dir()
        assert RewardSpec.load(out / name / "spec.py").names == [f"at_{t}" for t in th]
        assert set(summary[name]["final_subtask_rates"]) == {f"at_{t}" for t in th}
    table = (out / "comparison.md").read_text()
    assert all(f"| {n} |" in table for n in THRESHOLDS)
    assert (out / "comparison.png").stat().st_size > 1000
    assert summary["all specs"]["env_steps"] == 3 * len(SEEDS) * CONFIG.num_updates * 64


@pytest.mark.slow
def test_resume_is_refused_without_flag_and_continues_with_it(together, tmp_path):
    env, result = together
    with pytest.raises(UserError, match="already holds a training run"):
        train_specs(CONFIG, env, list(THRESHOLDS), SEEDS, result.out_dir, progress=False)
    again = train_specs(CONFIG, env, list(THRESHOLDS), SEEDS, result.out_dir, progress=False,
                        resume=True, chunk_updates=3)  # fmt: skip
    swapped = CodeReward(Walk(), [env.specs[1], env.specs[0], env.specs[2]])
    with pytest.raises(UserError, match="spec.py differs from the spec 'one'"):
        train_specs(CONFIG, swapped, list(THRESHOLDS), SEEDS, result.out_dir, progress=False,
                    resume=True)  # fmt: skip
    for name in THRESHOLDS:
        np.testing.assert_array_equal(
            again.results[name].metrics["eval_greedy_success"],
            result.results[name].metrics["eval_greedy_success"],
        )
    # A copy with one spec folder's checkpoints gone: refused, the other folders' logs untouched.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(result.out_dir, copy)
    shutil.rmtree(copy / "one" / "checkpoints")
    logs = {n: (copy / n / "metrics.jsonl").read_text() for n in THRESHOLDS}
    with pytest.raises(UserError, match=r"copy/one hold\(s\) no checkpoint while .*update 6"):
        train_specs(CONFIG, env, list(THRESHOLDS), SEEDS, copy, progress=False, resume=True)
    assert logs == {n: (copy / n / "metrics.jsonl").read_text() for n in THRESHOLDS}


def test_bad_names_and_weights_are_refused():
    env = CodeReward(Walk(), [_spec((5,)), _spec((2, 5))])
    with pytest.raises(UserError, match="two specs are named"):
        train_specs(CONFIG, env, ["a", "a"], SEEDS, "/nonexistent", progress=False)
    with pytest.raises(UserError, match="got 1 names for 2 specs"):
        train_specs(CONFIG, env, ["a"], SEEDS, "/nonexistent", progress=False)
    with pytest.raises(UserError, match="got 2 code weights for 1 specs"):
        CodeReward(Walk(), [_spec((5,))], code_weight=[1.0, 0.0])


REF = "prompts/reference/MiniGrid-DoorKey-5x5.state.py"


def test_train_cli_names_specs_by_file_and_refuses_sparse_only(tmp_path, capsys):
    from car_jax.cli import main
    from car_jax.commands.train import spec_names

    assert spec_names(["a/ref.py", "b/ref.py", "c/other.py"]) == ["ref-0", "ref-1", "other"]
    code = main(["train", "MiniGrid-DoorKey-5x5", "--spec", REF, "--spec", REF,
                 "--reward", "sparse", "--out", str(tmp_path / "x")])  # fmt: skip
    assert code == 2
    assert "--reward sparse trains no spec" in capsys.readouterr().err


@pytest.mark.slow
def test_train_cli_two_specs_and_the_sparse_baseline_in_one_run(tmp_path):
    from car_jax.cli import main

    no_key = tmp_path / "no_key.py"
    src = RewardSpec.load(REF)
    RewardSpec(src.task, src.programs[1:]).save(no_key)
    out = tmp_path / "run"
    code = main(["train", "MiniGrid-DoorKey-5x5", "--spec", REF, "--spec", str(no_key),
                 "--steps", "4096", "--num-envs", "16", "--seeds", "2", "--eval-episodes", "4",
                 "--no-progress", "--out", str(out)])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    names = ["MiniGrid-DoorKey-5x5.state", "no_key", "sparse"]
    assert [n for n in summary if n != "all specs"] == names
    assert len(summary["no_key"]["final_subtask_rates"]) == 2
    assert len(summary["sparse"]["final_subtask_rates"]) == 3
    assert json.loads((out / "sparse" / "run.json").read_text())["code_weight"] == 0.0
    assert (out / "comparison.png").is_file()


def _subparser(command: str):
    from car_jax.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[command]


@pytest.mark.parametrize(
    "command, readers",
    [
        ("train", ["commands/train.py", "commands/_common.py"]),
        ("search", ["commands/search.py", "commands/train.py", "commands/_common.py",
                    "vlm/select.py"]),
    ],
)  # fmt: skip
def test_every_option_in_help_is_read_by_the_command(command, readers):
    import re
    from pathlib import Path

    import car_jax

    root = Path(car_jax.__file__).parent
    source = "\n".join((root / r).read_text() for r in readers)
    read = set(re.findall(r"args\.(\w+)", source))
    read |= set(re.findall(r"""(?:get|getattr\(args,) ?\(?["'](\w+)["']""", source))
    options = {a.dest for a in _subparser(command)._actions if a.dest != "help"}
    assert options - read == set(), f"`car-jax {command}` options nothing reads"


def test_search_help_shows_search_defaults_only():
    search = _subparser("search")
    args = search.parse_args(["MiniGrid-DoorKey-8x8"])
    assert args.reward == "car" and not hasattr(args, "rounds")
    reward = next(a for a in search._actions if a.dest == "reward")
    assert reward.choices == ("car", "both")
    assert reward.help.startswith("car: train the candidates (env reward + code reward) (default)")
    assert "(default prompts/replay/search)" in " ".join(search.format_help().split())
    with pytest.raises(SystemExit):
        search.parse_args(["MiniGrid-DoorKey-8x8", "--reward", "sparse"])
    train = _subparser("train").parse_args(["MiniGrid-DoorKey-8x8", "--spec", REF])
    assert train.reward == "both"
