"""Plugins: primitives and tasks from the user's own package (car_jax/plugins.py, examples/plugin).

The example plugin `switchroom` loads through `--plugin`, `CAR_JAX_PLUGINS` and real entry-point
discovery (a dist-info folder on sys.path, which importlib.metadata reads: nothing is installed).
Its task runs every command, its primitive is used in the verified and trained spec, broken
plugins are refused with one line while the built-in tasks keep working, and programs that call a
plugin primitive are held to the same safety rules as any other.
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from car_jax.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"
REFERENCE = EXAMPLE / "switchroom" / "reference"
# What goes on sys.path: a folder holding only a link to the package, so that metadata left in
# examples/plugin by a developer's `pip install -e` (an .egg-info with entry points) is not read.
PLUGIN_PATH = Path(tempfile.mkdtemp(prefix="car_jax_plugin_path_"))
atexit.register(shutil.rmtree, PLUGIN_PATH, ignore_errors=True)
(PLUGIN_PATH / "switchroom").symlink_to(EXAMPLE / "switchroom", target_is_directory=True)
TASK_ID = "SwitchRoom-7x7"
PLUGIN_NAMES = ("colours_touch", TASK_ID)


def _snapshot():
    import envs.registry as reg
    from car_jax import plugins
    from car_jax.dsl.registry import REGISTRY

    return (
        (
            (REGISTRY, dict(REGISTRY)),
            (reg._FACTORIES, dict(reg._FACTORIES)),
            (reg._CACHE, dict(reg._CACHE)),
            (plugins._LOADED, dict(plugins._LOADED)),
            (plugins._OWNERS, dict(plugins._OWNERS)),
        ),
        list(plugins._REFERENCE_DIRS),
        dict(sys.modules),
    )


def _restore(saved) -> None:
    from car_jax import plugins

    dicts, refs, modules = saved
    for live, copy in dicts:
        live.clear()
        live.update(copy)
    plugins._REFERENCE_DIRS[:] = refs
    for name in set(sys.modules) - set(modules):
        if name.split(".")[0] in ("switchroom",) or name.startswith("plugin_"):
            del sys.modules[name]
    sys.modules.update({k: v for k, v in modules.items() if k.split(".")[0] == "switchroom"})


def _forget_switchroom() -> None:
    """Unload the example plugin entirely, so that a test can load it afresh."""
    import envs.registry as reg
    from car_jax import plugins
    from car_jax.dsl.registry import REGISTRY

    REGISTRY.pop("colours_touch", None)
    reg.unregister(TASK_ID)
    for key in [k for k, r in plugins._LOADED.items() if "switchroom" in k[1]]:
        del plugins._LOADED[key]
    for name in [m for m in sys.modules if m.split(".")[0] == "switchroom"]:
        del sys.modules[name]


@pytest.fixture
def fresh(monkeypatch):
    """Registries, loaded plugins and modules as they were before the test, the example unloaded."""
    import car_jax.dsl  # noqa: F401
    import envs  # noqa: F401

    saved = _snapshot()
    _forget_switchroom()
    monkeypatch.delenv("CAR_JAX_PLUGINS", raising=False)
    yield
    _restore(saved)


@pytest.fixture(scope="module")
def switchroom():
    """The example plugin loaded with `--plugin` for this module's tests (unloaded afterwards)."""
    import car_jax.dsl  # noqa: F401
    import envs  # noqa: F401

    saved = _snapshot()
    sys.path.insert(0, str(PLUGIN_PATH))
    try:
        from car_jax.plugins import load_plugins

        (result,) = load_plugins(["switchroom.task"], entry_points=False, environ=False)
        assert result.ok, result.message()
        yield result
    finally:
        sys.path.remove(str(PLUGIN_PATH))
        _restore(saved)


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# --- loading the example ---------------------------------------------------------------------------
def test_plugin_flag_lists_the_primitive_and_the_task(fresh, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(PLUGIN_PATH))
    code, out, err = _cli(capsys, "dsl", "--plugin", "switchroom.task")
    assert code == 0 and err == ""
    assert (
        "- `colours_touch(frame: image, colour: colour, other: colour, tol: const = 0) -> bool`"
        in out
    )
    assert out.index("## Vision on RGB frames") < out.index("colours_touch")
    code, out, err = _cli(capsys, "envs", "--plugin", "switchroom.task")
    assert code == 0 and err == ""
    row = next(line.split() for line in out.splitlines() if line.startswith(TASK_ID))
    assert row == [TASK_ID, "classic", "state,pixels", "4", "discrete", "50", "yes"]
    assert any(line.startswith("MiniGrid-DoorKey-5x5") for line in out.splitlines())


def test_environment_variable_loads_the_plugin(fresh, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(PLUGIN_PATH))
    code, out, _ = _cli(capsys, "envs")
    assert TASK_ID not in out
    monkeypatch.setenv("CAR_JAX_PLUGINS", "switchroom.primitives, switchroom.task")
    code, out, err = _cli(capsys, "envs")
    assert code == 0 and err == ""
    assert TASK_ID in out
    code, out, err = _cli(capsys, "plugins", "--plugin", "no_such_plugin_module")
    assert code == 0 and err.count("no module named 'no_such_plugin_module'") == 1
    assert out.splitlines() == [
        "plugin 'switchroom.primitives' (CAR_JAX_PLUGINS=switchroom.primitives) loaded: "
        "primitive colours_touch",
        "plugin 'switchroom.task' (CAR_JAX_PLUGINS=switchroom.task) loaded: task SwitchRoom-7x7",
        "plugin 'no_such_plugin_module' (--plugin no_such_plugin_module) skipped: cannot import "
        "'no_such_plugin_module': no module named 'no_such_plugin_module' on sys.path",
    ]


def test_entry_points_are_discovered_from_installed_metadata(fresh, monkeypatch, tmp_path, capsys):
    from car_jax.plugins import load_plugins

    # What `pip install` leaves behind: a dist-info folder with entry_points.txt on sys.path.
    dist = tmp_path / "car_jax_switchroom-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: car-jax-switchroom\nVersion: 0.1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[car_jax.primitives]\nswitchroom = switchroom.primitives\n\n"
        "[car_jax.tasks]\nswitchroom = switchroom.task\n"
    )
    monkeypatch.syspath_prepend(str(PLUGIN_PATH))
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, err = _cli(capsys, "dsl")
    assert code == 0 and err == ""
    assert "colours_touch(" in out
    results = load_plugins()  # already loaded by the command: not imported twice
    by_entry = {r.source.entry: r for r in results if r.source.plugin == "car-jax-switchroom"}
    assert set(by_entry) == {
        "entry point car_jax.primitives:switchroom = switchroom.primitives",
        "entry point car_jax.tasks:switchroom = switchroom.task",
    }
    prims = by_entry["entry point car_jax.primitives:switchroom = switchroom.primitives"]
    tasks = by_entry["entry point car_jax.tasks:switchroom = switchroom.task"]
    assert prims.primitives == ("colours_touch",) and tasks.tasks == (TASK_ID,)
    assert [d.resolve() for d in tasks.reference_dirs] == [REFERENCE]


def test_python_api_loads_once(fresh, monkeypatch):
    from car_jax.plugins import load_plugins

    monkeypatch.syspath_prepend(str(PLUGIN_PATH))
    first = load_plugins(["switchroom.task"], entry_points=False)
    again = load_plugins(["switchroom.task"], entry_points=False)
    assert first == again and first[0].ok
    assert first[0].primitives == ("colours_touch",) and first[0].tasks == (TASK_ID,)


# --- the example task through every command --------------------------------------------------------
def test_the_plugin_primitive_reads_frames(switchroom):
    import jax

    import envs
    from car_jax.dsl import compile_program

    task = envs.make(TASK_ID)
    src = 'def on_goal(obs):\n    """Agent in the ring."""\n    return colours_touch(obs.frame, "agent", GOAL_RGB)\n'
    prog = compile_program(src, task.inputs("pixels"), task.constants("pixels"))
    key = jax.random.key(3)
    goal, start = task.goal_state(key), task.initial_state(key)
    fn = jax.jit(prog.fn)
    assert bool(fn(task.observe(goal, "pixels"))) and bool(task.success(goal))
    assert not bool(fn(task.observe(start, "pixels")))


def test_the_plugin_task_keeps_the_task_contract(switchroom):
    import importlib.util

    import envs

    path = Path(__file__).parent / "envs" / "_task_checks.py"
    spec = importlib.util.spec_from_file_location("_plugin_task_checks", path)
    checks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checks)
    task = envs.make(TASK_ID)
    checks.check_vmapped_api(task)
    checks.check_spec_exact(task)
    assert checks.check_render(task).dtype == np.uint8


def test_the_fused_reward_runs_the_plugin_primitive_under_jit(switchroom):
    import jax
    import jax.numpy as jnp

    import envs
    from car_jax.reward import CodeReward
    from car_jax.spec import RewardSpec, compile_spec

    task = envs.make(TASK_ID)
    spec = RewardSpec.load(REFERENCE / f"{TASK_ID}.pixels.py")
    env = CodeReward(
        task, compile_spec(spec, task.inputs("pixels"), task.constants("pixels")), "pixels"
    )

    @jax.jit
    def expert_episode(key):
        _, state = env.reset(key, env.params)

        def step(state, k):
            action = task.expert(k, state.env_state, env.params)
            _, state, _, term, _, info = env.step(k, state, action, env.params)
            return state, (info["code_reward"], info["subtask_done"], term)

        return jax.lax.scan(step, state, jax.random.split(key, task.max_steps))[1]

    code, done, term = jax.vmap(expert_episode)(jax.random.split(jax.random.key(1), 8))
    ends = jnp.argmax(term, axis=1)  # the expert always finishes inside the time limit
    assert bool(term.any(axis=1).all())
    # Each episode: 0.5 for the switch, then 0.5 on the step the agent enters the goal ring.
    np.testing.assert_allclose(code[np.arange(8), ends], 0.5)
    assert bool(done[np.arange(8), ends].all()) and not bool(done[np.arange(8), ends - 1, 1].any())
    np.testing.assert_allclose(code.sum(axis=1), 1.0)  # each bonus once


def test_render_and_rollout_commands(switchroom, tmp_path, capsys):
    from PIL import Image

    code, out, _ = _cli(capsys, "render", TASK_ID, "--out", str(tmp_path))
    assert code == 0
    assert Image.open(tmp_path / "goal.png").size == (224, 224)
    npz = tmp_path / "expert.npz"
    code, out, _ = _cli(
        capsys, "rollout", TASK_ID, "-n", "8", "--mode", "pixels", "--out", str(npz)
    )
    assert code == 0 and "success 100.0%" in out
    with np.load(npz) as data:
        assert any(k.endswith("frame") and data[k].shape[-3:] == (28, 28, 3) for k in data.files)


def test_verify_accepts_the_reference_spec_with_the_plugin_primitive(switchroom, tmp_path, capsys):
    spec = REFERENCE / f"{TASK_ID}.pixels.py"
    assert "colours_touch(" in spec.read_text()
    out_json = tmp_path / "verdict.json"
    code, out, _ = _cli(
        capsys, "verify", str(spec), "--env", TASK_ID, "--mode", "pixels", "-n", "32",
        "--json", str(out_json),
    )  # fmt: skip
    assert code == 0, out
    assert json.loads(out_json.read_text())["passed"] is True


def test_run_generates_verifies_and_trains_with_the_plugin_primitive(
    switchroom, tmp_path, capsys, monkeypatch
):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    out_dir = tmp_path / "run"
    code, out, err = _cli(
        capsys, "run", TASK_ID, "--mode", "pixels", "--out", str(out_dir), "--verify-n", "32",
        "--reward", "car", "--seeds", "1", "--num-envs", "16", "--steps", "4096",
        "--no-progress", "--no-cache",
    )  # fmt: skip
    assert code == 0, out + err
    assert "colours_touch(obs.frame, AGENT_RGB, GOAL_RGB)" in (out_dir / "spec.py").read_text()
    prompt = next((out_dir / "stage1").rglob("prompt.md")).read_text()
    assert "colours_touch(frame: image" in prompt
    summary = json.loads((out_dir / "summary.json").read_text())
    assert set(summary) == {"car"} and summary["car"]["env_steps_per_second"] > 0
    assert (out_dir / "report.md").is_file()


# --- broken plugins are refused with one line; everything else keeps working ----------------------
HEAD = "from car_jax.dsl import primitive\nimport envs\n\n"
GOOD_PRIM = '@primitive("math", "int")\ndef {name}(x):\n    """Twice x."""\n    return x * 2\n\n'

BROKEN = {
    "import_error": (
        GOOD_PRIM.format(name="half_loaded") + "raise RuntimeError('the GPU driver is missing')\n",
        "RuntimeError: the GPU driver is missing (at {file}:9)",
    ),
    "missing_dependency": (
        GOOD_PRIM.format(name="half_loaded") + "import not_installed_dependency_xyz\n",
        "cannot import 'plugin_missing_dependency': it imports 'not_installed_dependency_xyz', "
        "which is not installed (at {file}:9)",
    ),
    "syntax_error": (
        GOOD_PRIM.format(name="half_loaded") + "def broken(:\n    pass\n",
        "SyntaxError: invalid syntax (at {file}:9)",
    ),
    "duplicate_primitive": (
        GOOD_PRIM.format(name="half_loaded") + GOOD_PRIM.format(name="present"),
        "primitive 'present' is already registered by car-jax (built in) (at {file}:9)",
    ),
    "duplicate_task": (
        GOOD_PRIM.format(name="half_loaded")
        + "envs.register('MiniGrid-DoorKey-5x5', lambda: None)\n",
        "task id 'MiniGrid-DoorKey-5x5' is already registered by car-jax (built in) (at {file}:9)",
    ),
    "no_docstring": (
        GOOD_PRIM.format(name="half_loaded")
        + '@primitive("math", "int")\ndef nodoc(x):\n    return x\n',
        "primitive 'nodoc' needs a one-line docstring saying what it returns (at {file}:9)",
    ),
    "no_return_type": (
        GOOD_PRIM.format(name="half_loaded")
        + '@primitive("math", "")\ndef noret(x):\n    """X."""\n    return x\n',
        "primitive 'noret' needs `returns`, the result type the reference shows",
    ),
    "keyword_only": (
        GOOD_PRIM.format(name="half_loaded")
        + '@primitive("math", "int")\ndef kwonly(x, *, y=1):\n    """X."""\n    return x\n',
        "primitive 'kwonly': parameter 'y' is keyword-only; DSL calls fill plain parameters",
    ),
    "reserved_name": (
        GOOD_PRIM.format(name="half_loaded") + GOOD_PRIM.format(name="open"),
        "primitive name 'open' is reserved: reward programs may never call open()",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_is_skipped_whole_and_builtins_still_work(
    case, fresh, tmp_path, monkeypatch, capsys
):
    from car_jax.dsl.registry import REGISTRY

    source, expected = BROKEN[case]
    module = f"plugin_{case}"
    (tmp_path / f"{module}.py").write_text(HEAD + source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(capsys, "dsl", "--plugin", module)
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"car-jax: plugin '{module}' (--plugin {module}) skipped: "), err
    assert expected.format(file=f"{module}.py") in lines[0]
    # Nothing of the plugin is left behind, and the built-in primitives are all there.
    assert "half_loaded" not in REGISTRY and "half_loaded" not in out
    assert "- `present(frame: image" in out
    code, out, err = _cli(capsys, "check", str(EXAMPLE.parent / "doorkey.spec"),
                          "--env", "MiniGrid-DoorKey-5x5", "--plugin", module)  # fmt: skip
    assert code == 0 and f"plugin '{module}'" in err


def test_a_failed_plugin_leaves_no_module_behind(fresh, tmp_path, monkeypatch, capsys):
    from car_jax.dsl.registry import REGISTRY

    pkg = tmp_path / "plugin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "prims.py").write_text(HEAD + GOOD_PRIM.format(name="pkg_double"))
    (pkg / "tasks.py").write_text("import plugin_pkg.prims\nraise ImportError('no task today')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # tasks.py imports prims.py (which registers pkg_double) and then fails: both are undone, so
    # loading prims.py on its own afterwards registers pkg_double again.
    code, out, err = _cli(
        capsys, "dsl", "--plugin", "plugin_pkg.tasks", "--plugin", "plugin_pkg.prims"
    )
    assert code == 0 and "- `pkg_double(x) -> int`: Twice x." in out
    assert err.count("skipped") == 1 and "ImportError: no task today" in err
    assert "pkg_double" in REGISTRY


def test_a_missing_plugin_module_is_named(fresh, capsys):
    code, out, err = _cli(capsys, "dsl", "--plugin", "no_such_plugin_module")
    assert code == 0 and "- `present(" in out
    assert err.strip() == (
        "car-jax: plugin 'no_such_plugin_module' (--plugin no_such_plugin_module) skipped: cannot "
        "import 'no_such_plugin_module': no module named 'no_such_plugin_module' on sys.path"
    )


def test_a_plugin_task_that_fails_to_build_is_named(fresh, tmp_path, monkeypatch, capsys):
    (tmp_path / "plugin_badtask.py").write_text(
        "import envs\n\ndef build():\n    raise OSError('data file sprites.png not found')\n\n"
        "envs.register('BadTask-v0', build)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(capsys, "envs", "--plugin", "plugin_badtask")
    assert code == 0 and "MiniGrid-DoorKey-5x5" in out and "BadTask-v0" not in out
    assert err.strip() == (
        "car-jax envs: skipped BadTask-v0: task 'BadTask-v0' from plugin 'plugin_badtask' failed "
        "to build: OSError: data file sprites.png not found (at plugin_badtask.py:4)"
    )
    code, out, err = _cli(
        capsys, "render", "BadTask-v0", "--out", str(tmp_path), "--plugin", "plugin_badtask"
    )
    assert code == 2 and "failed to build: OSError" in err


# --- safety: a plugin primitive opens no door out of the DSL ---------------------------------------
ESCAPES = {
    "dunder attribute": ("colours_touch.__globals__", "E-DUNDER"),
    "attribute of a result": ("colours_touch(obs.frame, AGENT_RGB, GOAL_RGB).sum()", "E-ATTR"),
    "builtin as an argument": ("colours_touch(open('/etc/passwd'), AGENT_RGB, GOAL_RGB)", "E-CALL"),
    "import inside an argument": (
        "colours_touch(__import__('os'), AGENT_RGB, GOAL_RGB)",
        "E-DUNDER",
    ),
    "a path as a colour": ("colours_touch(obs.frame, '/etc/passwd', GOAL_RGB)", "E-ARGS"),
    "the primitive as a value": ("(colours_touch)", "E-NAME"),
    "an input as a constant": (
        "colours_touch(obs.frame, AGENT_RGB, GOAL_RGB, obs.frame[0, 0, 0])",
        "E-ARGS",
    ),
    "a string where a frame goes": ("colours_touch('frame', AGENT_RGB, GOAL_RGB)", "E-STRING"),
}


@pytest.mark.parametrize("what", sorted(ESCAPES))
def test_programs_calling_a_plugin_primitive_cannot_escape(what, switchroom):
    import envs
    from car_jax.dsl import DSLCompileError, compile_program

    expr, code = ESCAPES[what]
    task = envs.make(TASK_ID)
    src = f'def escape(obs):\n    """Try to get out."""\n    return {expr}\n'
    with pytest.raises(DSLCompileError) as err:
        compile_program(src, task.inputs("pixels"), task.constants("pixels"))
    assert code in {e.code for e in err.value.errors}, [str(e) for e in err.value.errors]


def test_a_plugin_cannot_register_a_builtin_python_name(fresh):
    from car_jax.dsl import primitive
    from car_jax.dsl.registry import REGISTRY, RegistrationError

    for name in ("eval", "getattr", "__import__", "obs", "Open", "class"):
        with pytest.raises(RegistrationError, match=f"primitive name '{name}'"):
            primitive("math", "int", name=name)(lambda x: x)
        assert name not in REGISTRY


def test_check_compiles_the_plugin_spec_against_the_plugin_task(switchroom, capsys):
    spec = str(REFERENCE / f"{TASK_ID}.pixels.py")
    code, out, err = _cli(capsys, "check", spec, "--env", TASK_ID, "--mode", "pixels")
    assert code == 0 and err == ""
    assert "all programs compile" in out and "on_goal: The switch is green" in out


@pytest.mark.slow
def test_train_command_with_the_plugin_primitive(switchroom, tmp_path, capsys):
    spec = str(REFERENCE / f"{TASK_ID}.pixels.py")
    code, out, err = _cli(
        capsys, "train", TASK_ID, "--spec", spec, "--mode", "pixels", "--out", str(tmp_path),
        "--reward", "car", "--seeds", "1", "--num-envs", "16", "--steps", "4096", "--no-progress",
    )  # fmt: skip
    assert code == 0, out + err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["car"]["env_steps_per_second"] > 0
