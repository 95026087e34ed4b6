"""`car-jax dsl` and `car-jax check`: output, error listing and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from car_jax.cli import main
from car_jax.dsl import reference_markdown

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "doorkey.spec"
EXAMPLE_INPUTS = ROOT / "examples" / "doorkey_state.inputs.json"


def test_dsl_prints_the_reference(capsys):
    assert main(["dsl"]) == 0
    out = capsys.readouterr().out
    assert out == reference_markdown()
    for name in ("euclidean_distance", "colour_mask", "position_of", "clip", "bounding_box"):
        assert f"`{name}(" in out
    assert main(["dsl", "--errors"]) == 0
    assert "E-DUNDER" in capsys.readouterr().out


def test_check_example_compiles(capsys):
    assert main(["check", str(EXAMPLE), "--inputs", str(EXAMPLE_INPUTS)]) == 0
    out = capsys.readouterr().out
    assert "all programs compile" in out and "carrying_key" in out


def test_check_lists_every_error(tmp_path, capsys):
    spec = tmp_path / "bad.spec"
    spec.write_text(
        '"""Task."""\n\n\ndef a(obs):\n    """A."""\n    return obs.secret\n\n\n'
        'def b(obs):\n    """B."""\n    import os\n    return eval("1")\n'
    )
    assert main(["check", str(spec), "--inputs", str(EXAMPLE_INPUTS)]) == 1
    out = capsys.readouterr().out
    assert "REFUSED a" in out and "REFUSED b" in out
    for code in ("E-INPUT", "E-IMPORT", "E-CALL"):
        assert code in out
    assert "a:3:11: E-INPUT" in out


def test_check_malformed_spec_is_refused(tmp_path, capsys):
    spec = tmp_path / "syntax.spec"
    spec.write_text('"""T."""\ndef f(obs)\n    return 1\n')
    assert main(["check", str(spec), "--inputs", str(EXAMPLE_INPUTS)]) == 1
    assert "E-SYNTAX" in capsys.readouterr().out


def test_check_unreadable_inputs_exit_2(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing.spec"), "--inputs", str(EXAMPLE_INPUTS)]) == 2
    assert "cannot read reward spec" in capsys.readouterr().err
    bad_json = tmp_path / "in.json"
    bad_json.write_text("{not json")
    assert main(["check", str(EXAMPLE), "--inputs", str(bad_json)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    bad_json.write_text(json.dumps({"inputs": {"x": {"shape": [2], "dtype": "int128"}}}))
    assert main(["check", str(EXAMPLE), "--inputs", str(bad_json)]) == 2
    assert "dtype must be one of" in capsys.readouterr().err
    bad_json.write_text(json.dumps({"inputs": {}, "constants": {"K": "text"}}))
    assert main(["check", str(EXAMPLE), "--inputs", str(bad_json)]) == 2
    assert "constant 'K'" in capsys.readouterr().err


def test_check_unknown_env_exit_2(capsys):
    assert main(["check", str(EXAMPLE), "--env", "No-Such-Task-v0"]) == 2
    assert "No-Such-Task-v0" in capsys.readouterr().err


def test_console_entry_point_runs():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "car_jax.cli",
            "check",
            str(EXAMPLE),
            "--inputs",
            str(EXAMPLE_INPUTS),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 program(s)" in proc.stdout


def test_every_error_code_is_documented():
    from car_jax.dsl import CODES

    doc = (ROOT / "docs" / "dsl.md").read_text()
    missing = [code for code in CODES if f"`{code}`" not in doc]
    assert not missing, f"undocumented error codes: {missing}"


def _doorkey_or_skip():
    import envs

    if "MiniGrid-DoorKey-8x8" not in envs.registered():
        import pytest

        pytest.skip("MiniGrid-DoorKey-8x8 is not registered")
    return envs.make("MiniGrid-DoorKey-8x8")


def test_check_against_registered_task(capsys):
    _doorkey_or_skip()
    assert main(["check", str(EXAMPLE), "--env", "MiniGrid-DoorKey-8x8"]) == 0
    pixels = str(ROOT / "examples" / "doorkey_pixels.spec")
    assert main(["check", pixels, "--env", "MiniGrid-DoorKey-8x8", "--mode", "pixels"]) == 0
    # the state-mode spec reads inputs the pixels mode does not declare
    assert main(["check", str(EXAMPLE), "--env", "MiniGrid-DoorKey-8x8", "--mode", "pixels"]) == 1
    assert "E-INPUT" in capsys.readouterr().out


def test_example_specs_are_right_on_real_states():
    import jax

    from car_jax.spec import RewardSpec, compile_spec

    task = _doorkey_or_skip()
    key = jax.random.key(0)
    start, goal = task.initial_state(key), task.goal_state(key)
    for mode, path in [("state", EXAMPLE), ("pixels", ROOT / "examples" / "doorkey_pixels.spec")]:
        compiled = compile_spec(RewardSpec.load(path), task.inputs(mode), task.constants(mode))
        assert not compiled.completion(task.observe(start, mode)).any(), mode
        assert compiled.completion(task.observe(goal, mode)).all(), mode
