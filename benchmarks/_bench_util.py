"""Shared helpers for the benchmark scripts: machine description, timing, JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, load, JAX version, backend and devices."""
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "load_average_at_start": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }


def command(script: str, argv: list[str] | None = None) -> str:
    """The exact command line that produced the run (`argv` defaults to the process's arguments)."""
    args = sys.argv[1:] if argv is None else list(argv)
    with contextlib.suppress(ValueError):
        script = str(Path(script).resolve().relative_to(Path.cwd()))
    return shlex.join([f".venv/bin/{Path(sys.executable).name}", script, *args])


def block(tree: Any) -> Any:
    """block_until_ready on every array leaf of a pytree."""
    return jax.block_until_ready(tree)


def compile_jit(fn: Callable, *args: Any) -> tuple[Callable, float]:
    """AOT-compile `jax.jit(fn)` for `args`; returns (compiled, seconds spent tracing+compiling)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_repeats(run: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `repeats` calls of `run()` (each blocked until ready), after `warmup` calls."""
    for _ in range(warmup):
        block(run())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        block(run())
        times.append(time.perf_counter() - t0)
    return times


def rate_stats(work: float, times: list[float]) -> dict[str, float]:
    """Rate (work / second) summary over repeats: median, min, max and relative spread."""
    rates = sorted(work / t for t in times)
    med = statistics.median(rates)
    return {
        "median": med,
        "min": rates[0],
        "max": rates[-1],
        "spread": (rates[-1] - rates[0]) / med if med else 0.0,
        "repeats": len(rates),
        "seconds_median": statistics.median(times),
    }


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` as indented JSON (creating the folder); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def fmt_rate(x: float | None) -> str:
    """A steps/s figure in short form (1.2M, 35.0k, 17.3)."""
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.1f}"
