"""The headline run: `car-jax run <task>` with its defaults, recorded as a results JSON.

Runs the command a new user would (`car-jax run MiniGrid-DoorKey-16x16`, offline replay, the
task's run defaults), then stores its summary (greedy eval success per seed, IQM and interval,
steps to sustained 90%), its evaluation curves, the wall clock split the run prints (stage 1 +
verification, training compile, training) and the machine's load, so the README's headline
numbers come from a file, not from a terminal. The run starts with an empty compile cache (in a
temporary folder: a new user's first run); `--warm` then runs it again on that cache (what a
rerun, a sweep's next job or `--resume` costs) and records that wall clock beside it.

    python benchmarks/headline.py                                   # DoorKey-16x16
    python benchmarks/headline.py --task MiniGrid-DoorKey-8x8 --name make_run_doorkey8x8
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import RESULTS, command, machine, write_json  # noqa: E402

# "wall clock 167.8 s: verification 27.3 s, training compile 44.2 s, training 79.7 s"
WALL = re.compile(
    r"wall clock (?P<total>[\d.]+) s: (?P<stage12_label>[a-z0-9 +]+?) (?P<stage12>[\d.]+) s, "
    r"training compile (?P<compile>[\d.]+) s, training (?P<train>[\d.]+) s"
)


def parse_wall_clock(stdout: str) -> dict[str, float | str]:
    """The wall-clock split `car-jax run` prints last; raises if the run printed none."""
    found = WALL.findall(stdout)
    if not found:
        raise SystemExit("car-jax run printed no wall-clock line; see its output above")
    total, label, stage12, compile_s, train = found[-1]
    return {"total_seconds": float(total), "stage1_and_verification_label": label,
            "stage1_and_verification_seconds": float(stage12),
            "training_compile_seconds": float(compile_s), "training_seconds": float(train)}  # fmt: skip


def _run(argv: list[str], cache: Path) -> tuple[str, float]:
    """`car-jax <argv>` with its compile cache in `cache`: (stdout, seconds); exits on failure."""
    exe = Path(sys.executable).with_name("car-jax")
    env = {**os.environ, "CAR_JAX_COMPILE_CACHE": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([str(exe), *argv], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    print(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"car-jax run exited {proc.returncode}; nothing written")
    return proc.stdout, wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="MiniGrid-DoorKey-16x16")
    p.add_argument("--name", default=None, help="results file stem (default headline_<task>)")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    p.add_argument(
        "--record", nargs=2, metavar=("RUN_DIR", "LOG"),
        help="record a finished run (its folder and its saved stdout, e.g. of `make run`) "
        "instead of starting one",
    )  # fmt: skip
    p.add_argument(
        "--warm", action="store_true",
        help="run a second time on the first run's compile cache and record that wall clock too",
    )  # fmt: skip
    p.add_argument("run_args", nargs="*", help="extra `car-jax run` flags (after --)")
    args = p.parse_args()
    name = args.name or "headline_" + args.task.lower().replace("minigrid-", "")
    load = machine()
    if args.record:
        run_dir, stdout = Path(args.record[0]), Path(args.record[1]).read_text()
        argv, wall = ["run", args.task, "--out", str(run_dir)], None
    else:
        scratch = Path(tempfile.mkdtemp(prefix="car-jax-headline-"))
        run_dir = scratch / "run"
        argv = ["run", args.task, "--out", str(run_dir), "--no-progress", *args.run_args]
        stdout, wall = _run(argv, scratch / "xla")
    warm = None
    if args.warm and not args.record:
        warm_dir = scratch / "warm"
        warm_out, warm_wall = _run([*argv[:2], "--out", str(warm_dir), *argv[4:]], scratch / "xla")
        warm_summary = json.loads((warm_dir / "summary.json").read_text())
        warm = {
            "wall_clock": parse_wall_clock(warm_out),
            "process_seconds": warm_wall,
            "final_success_per_seed": {
                r: v["final_success_per_seed"] for r, v in warm_summary.items()
            },
        }
    summary = json.loads((run_dir / "summary.json").read_text())
    png = RESULTS / f"{name}.png"
    shutil.copyfile(run_dir / "learning_curve.png", png)
    payload = {
        "benchmark": f"car-jax run {args.task} with its defaults",
        "command": f".venv/bin/car-jax {' '.join(argv[:2] + argv[4:])}",
        "recorded_by": command(__file__),
        "wall_clock": parse_wall_clock(stdout),
        "process_seconds": wall,
        "compile_cache": "empty at start (a first run)" if not args.record else "as recorded",
        "warm_cache_rerun": warm,
        "run_output_tail": stdout.strip().splitlines()[-12:],
        "summary": summary,
        "plot": png.name,
        "machine": load,  # when --record: the machine at recording time, not at the run's
        "note": args.note or "2-core CPU; load average at start in machine",
    }
    out = write_json(RESULTS / f"{name}.json", payload)
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
