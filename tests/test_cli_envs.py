"""The env, render, rollout and verify commands, chained as a user would on CartPole."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from car_jax.cli import main

SPEC = "prompts/reference/CartPole-v1.state.py"


def test_envs_lists_every_task_with_modes_and_expert(capsys):
    import envs

    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    for task_id in envs.registered():
        assert task_id in out
    assert "pixels" in out


def test_render_writes_two_images(tmp_path):
    assert main(["render", "CartPole-v1", "--out", str(tmp_path)]) == 0
    for name in ("initial.png", "goal.png"):
        img = np.asarray(Image.open(tmp_path / name))
        assert img.ndim == 3 and img.shape[2] == 3 and img.std() > 0


@pytest.fixture(scope="module")
def trajectory_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("traj")
    files = {}
    for policy in ("expert", "random"):
        files[policy] = root / f"{policy}.npz"
        argv = [
            "rollout",
            "CartPole-v1",
            "--policy",
            policy,
            "-n",
            "16",
            "--out",
            str(files[policy]),
        ]
        assert main(argv) == 0
    return files


def test_verify_accepts_the_reference_spec_on_files(trajectory_files, tmp_path):
    out = tmp_path / "verdict.json"
    code = main(["verify", SPEC, "--env", "CartPole-v1",
                 "--expert-trajectories", str(trajectory_files["expert"]),
                 "--random-trajectories", str(trajectory_files["random"]), "--json", str(out)])  # fmt: skip
    verdict = json.loads(out.read_text())
    assert code == 0 and verdict["passed"] and verdict["n_expert"] == 16


def test_verify_rejects_a_wrong_spec_with_exit_1(trajectory_files, tmp_path, capsys):
    bad = tmp_path / "bad.py"
    # "Upright" alone is true from the first step: trivially true, so rejected.
    bad.write_text(
        '"""Balance."""\n\n\ndef upright(obs):\n    """Up."""\n    return abs(obs.pole_angle) < 1\n'
    )
    code = main(["verify", str(bad), "--env", "CartPole-v1",
                 "--expert-trajectories", str(trajectory_files["expert"]),
                 "--random-trajectories", str(trajectory_files["random"])])  # fmt: skip
    assert code == 1
    assert "REJECTED" in capsys.readouterr().out


def test_verify_refuses_bad_input_with_exit_2(trajectory_files, tmp_path, capsys):
    # Trajectories of another task, a file that is not an npz, a spec that does not parse.
    mountain_car = "prompts/reference/MountainCar-v0.state.py"
    assert main(["verify", mountain_car, "--env", "MountainCar-v0",
                 "--expert-trajectories", str(trajectory_files["expert"])]) == 2  # fmt: skip
    assert "car-jax verify: error:" in capsys.readouterr().err
    # A spec written for another task's inputs is refused program by program (exit 1, as check).
    assert main(["verify", SPEC, "--env", "MountainCar-v0"]) == 1
    assert "E-INPUT" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    assert main(["verify", SPEC, "--env", "CartPole-v1", "--expert-trajectories", str(junk)]) == 2
    assert "junk.npz" in capsys.readouterr().err
    broken = tmp_path / "broken.py"
    broken.write_text("def oops(obs:\n")
    assert main(["verify", str(broken), "--env", "CartPole-v1"]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert main(["rollout", "CartPole-v1", "--out", str(tmp_path / "x.txt")]) == 2
