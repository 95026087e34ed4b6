"""Suite-wide setup: the CLI's persistent compilation cache stays off in tests.

`car-jax` commands cache compiled programs in ~/.cache/car-jax/xla by default; the suite must
neither write to the home folder nor get faster (or different) because an earlier run left a
warm cache. tests/test_compile_cache.py turns it on, in a temporary folder, where it is tested.

A worker process compiles thousands of XLA programs (every reference spec's verification, every
training test), and each compiled program holds memory mappings of its own: without a release,
a `make test-all` worker passed Linux's limit of 65,530 mappings (`vm.max_map_count`) and died of
a segmentation fault inside XLA's compiler (run_breakdown's compile, twice), after which
pytest-xdist hung. After every test, `car_jax.map_limit.release_if_near_limit` drops JAX's
compiled programs once the worker holds half its limit (in one `make test-all` run: once, 42
tests into the worker that verifies the reference specs, at 32.6k mappings, 2.0k after; that
worker peaked at 32.6k, the other at 13.6k); later tests recompile what they need.

NOTE: a persistent cache per pytest session, shared by the xdist workers, was tried: it saved
about 25 s of an 8.5-minute suite. It was removed when a worker crashed with it; that crash was
the mapping limit above, not the cache, but the cache was not tried again.
"""

import os

from car_jax.map_limit import release_if_near_limit

os.environ["CAR_JAX_COMPILE_CACHE"] = "off"


def pytest_runtest_teardown(item, nextitem):
    """Keep this worker under its memory-mapping limit (see the module docstring)."""
    release_if_near_limit()
