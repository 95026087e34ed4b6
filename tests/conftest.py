"""Suite-wide setup: the CLI's persistent compilation cache stays off in tests; one of the suite's
own, empty at the start of every session, is shared by its workers.

`car-jax` commands cache compiled programs in ~/.cache/car-jax/xla by default; the suite must
neither write to the home folder nor get faster (or different) because an earlier run left a
warm cache. tests/test_compile_cache.py turns it on, in a temporary folder, where it is tested.

Within one session, many tests compile the same program (the same rollouts, verification and PPO
chunks for the same task and shapes, from different files and workers). JAX's persistent cache,
in a folder under this session's pytest temporary root (so it starts empty every run), lets the
second compile of a program load the first one's result: the programs are the same, so are the
results. It holds only what this session compiled; subprocesses a test starts do not use it.
"""

import os

import pytest

os.environ["CAR_JAX_COMPILE_CACHE"] = "off"


@pytest.fixture(scope="session", autouse=True)
def session_compile_cache(tmp_path_factory):
    """Point JAX's persistent compilation cache at a folder of this session (shared by workers)."""
    import jax

    root = tmp_path_factory.getbasetemp()
    # NOTE: under pytest-xdist each worker's basetemp is <session root>/popen-gwN.
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    path = shared / "xla-cache"
    path.mkdir(exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    # A size cap makes JAX lock the folder, so two workers never read a half-written entry.
    jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    return path
