"""Keep a long-lived process under the kernel's limit on memory mappings (`vm.max_map_count`).

Every program XLA compiles for the CPU maps its code and buffers in regions of its own, and JAX
keeps a compiled program for as long as the function it belongs to lives (cached rollout
programs, jitted methods of a task still in use, session fixtures). A process that compiles
thousands of programs, such as a test-suite worker that verifies every reference spec or a sweep
over many tasks in one process, reaches Linux's default limit of 65,530 mappings (one
verification of a MiniGrid spec, with its rollouts, adds about 1,700-2,400). The next mapping
then fails inside XLA's compiler and the process dies of a segmentation fault, with no Python
error and nothing written.

`release_if_near_limit()` counts the process's mappings and, past a share of the limit, drops
JAX's compiled programs (`jax.clear_caches()`): functions still in use compile again on their
next call, which costs seconds, not the run. The training driver and the verification call it
before they compile; the test suite calls it after every test. Where `/proc` does not exist
(macOS, Windows) it does nothing.
"""

from __future__ import annotations

import sys

DEFAULT_SHARE = 0.5
"""Release once the mappings pass this share of `vm.max_map_count`."""

_MAPS = "/proc/self/maps"
_LIMIT = "/proc/sys/vm/max_map_count"


def mapping_count() -> int | None:
    """Memory mappings this process holds now, or None where /proc/self/maps cannot be read."""
    try:
        with open(_MAPS, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return None


def mapping_limit() -> int | None:
    """The kernel's limit on mappings per process (`vm.max_map_count`), or None if unknown."""
    try:
        with open(_LIMIT) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def release_if_near_limit(share: float = DEFAULT_SHARE, *, quiet: bool = False) -> bool:
    """Drop JAX's compiled programs if this process holds over `share` of its mapping limit.

    Returns whether it did. Says so on stderr (what it counted, why) unless `quiet`.
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must lie in (0, 1], got {share!r}")
    limit = mapping_limit()
    count = mapping_count() if limit else None
    if not limit or count is None or count <= share * limit:
        return False
    import jax

    jax.clear_caches()
    if not quiet:
        after = mapping_count()
        print(
            f"car-jax: this process held {count:,} memory mappings of the kernel's limit of "
            f"{limit:,} (vm.max_map_count), mostly compiled XLA programs; dropped JAX's compiled "
            f"programs ({after:,} mappings now): functions in use compile again on their next "
            "call",
            file=sys.stderr,
        )
    return True
