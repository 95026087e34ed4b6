"""Make the probe envs importable as `probe_envs` (tests/rl is not a package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def bandit_run():
    """Three bandit runs in one jit(vmap(train)) (lrs 1e-2, 1e-2, 0), with progress calls recorded."""
    from jobs import run_bandit

    calls = []
    trainer, keys, hypers, out = run_bandit(progress_fn=lambda u, m: calls.append((u, m)))
    return trainer, keys, out, calls
