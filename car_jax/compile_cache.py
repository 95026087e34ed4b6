"""JAX's persistent compilation cache for the command line: a repeated run skips XLA compiles.

`car-jax` commands store every compiled XLA program that took over a second to build in
`$CAR_JAX_CACHE/xla` (default `~/.cache/car-jax/xla`), keyed by JAX on the program, the JAX
version and the device, so a second run of the same task and settings (a sweep's next seed set,
`--resume`, a rerun) loads them instead of compiling. `CAR_JAX_COMPILE_CACHE=DIR` puts it
elsewhere and `CAR_JAX_COMPILE_CACHE=off` turns it off; JAX's own `JAX_COMPILATION_CACHE_DIR`,
when set, is left in charge. The folder is capped at `MAX_BYTES` (least recently used entries go
first). The library itself (`import car_jax`) never turns it on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

ENV_VAR = "CAR_JAX_COMPILE_CACHE"
OFF = ("0", "off", "false", "no", "none")
MAX_BYTES = 2 << 30  # 2 GiB


def compile_cache_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Where `car-jax` keeps compiled programs, or None when `$CAR_JAX_COMPILE_CACHE` is off."""
    from car_jax.vlm.cache import default_cache_dir

    value = environ.get(ENV_VAR, "").strip()
    if value.lower() in OFF:
        return None
    return Path(value).expanduser() if value else default_cache_dir(environ) / "xla"


def enable_compile_cache(environ: Mapping[str, str] = os.environ) -> Path | None:
    """Turn JAX's persistent compilation cache on for this process; returns its folder (or None).

    Must run before the first compile. A folder that cannot be created costs a warning, never the
    run: the programs are then compiled as without a cache.
    """
    import jax

    if environ.get("JAX_COMPILATION_CACHE_DIR"):  # JAX reads it itself
        return Path(environ["JAX_COMPILATION_CACHE_DIR"])
    path = compile_cache_dir(environ)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        print(
            f"car-jax: compile cache {str(path)!r} unavailable ({err.strerror or err}); compiling "
            f"without it (set {ENV_VAR}=DIR or {ENV_VAR}=off)",
            file=sys.stderr,
        )
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
