"""The CLI's persistent compilation cache: on by default in its folder, moved, turned off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from car_jax.compile_cache import compile_cache_dir

# A command that compiles: 2 CartPole random rollouts of 5 steps, written to a file.
SCRIPT = (
    "import sys; from car_jax.cli import main; "
    "sys.exit(main(['rollout', 'CartPole-v1', '--policy', 'random', '-n', '2', "
    "'--horizon', '5', '--out', sys.argv[1]]))"
)


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CAR_JAX_", "JAX_COMP"))}
    # Cache every compile, however short, so that this small command writes entries.
    full.update(JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", HOME=str(tmp_path / "home"), **env)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "out.npz")],
        env=full, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_where_the_cache_lives():
    assert compile_cache_dir({}) == Path.home() / ".cache" / "car-jax" / "xla"
    assert compile_cache_dir({"CAR_JAX_CACHE": "/c"}) == Path("/c/xla")
    assert compile_cache_dir({"CAR_JAX_COMPILE_CACHE": "/x", "CAR_JAX_CACHE": "/c"}) == Path("/x")
    for off in ("off", "0", "OFF", "no"):
        assert compile_cache_dir({"CAR_JAX_COMPILE_CACHE": off}) is None


def test_cli_writes_compiled_programs_to_its_cache_and_not_when_off(tmp_path):
    on = _run(tmp_path, CAR_JAX_CACHE=str(tmp_path / "cache"))
    assert on.returncode == 0, on.stderr
    entries = list((tmp_path / "cache" / "xla").iterdir())
    assert entries, "no compiled program was cached"
    off = _run(tmp_path, CAR_JAX_CACHE=str(tmp_path / "cache2"), CAR_JAX_COMPILE_CACHE="off")
    assert off.returncode == 0, off.stderr
    assert not (tmp_path / "cache2" / "xla").exists()
    assert not (tmp_path / "home" / ".cache" / "car-jax").exists()


def test_unusable_cache_folder_warns_and_the_command_still_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = _run(tmp_path, CAR_JAX_COMPILE_CACHE=str(blocker / "xla"))
    assert res.returncode == 0, res.stderr
    assert "compile cache" in res.stderr and "compiling without it" in res.stderr
    assert (tmp_path / "out.npz").exists()
