"""Verification speed: K pixel-mode programs x N expert + N random trajectories x T steps.

The issue's setting is 8 programs x 1024 expert + 1024 random trajectories x 256 steps on
DoorKey-8x8 in pixels mode (target: under 10 s in all on a 2-core CPU). 2048 x 256 frames of
72x64x3 bytes are 7 GB, so trajectories are collected and verified in chunks of `--chunk`
trajectories: one compiled verification function serves every chunk (same shapes), and its
compile time is reported apart from the steady-state time summed over all chunks.

    python benchmarks/verify_speed.py            # the issue's setting
    python benchmarks/verify_speed.py --quick    # a small run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import RESULTS, block, command, machine, write_json  # noqa: E402

import envs  # noqa: E402
from car_jax.rollout import collect_rollouts  # noqa: E402
from car_jax.spec import RewardSpec, compile_spec  # noqa: E402
from car_jax.verify import completion_figures  # noqa: E402

# Eight pixel-mode programs of the kind a VLM writes for DoorKey (the reference three plus
# variants), so the cost is that of realistic programs, not of trivial ones.
PROGRAMS = '''"""DoorKey in pixels: eight programs for the verification benchmark."""


def carrying_key(obs):
    """The inventory cell shows the yellow key."""
    inventory = obs.frame[INVENTORY_ROW * TILE_PX :, 0:TILE_PX, :]
    return present(inventory, YELLOW_RGB, 10, 4)


def key_gone_from_grid(obs):
    """No yellow key pixels remain in the grid."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :, :]
    return pixel_count(grid, YELLOW_RGB, 10) < 4


def door_open(obs):
    """No cell shows the dark yellow of a locked or closed door."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :, :]
    return pixel_count(grid, (115, 115, 0), 20) < 8


def agent_near_door(obs):
    """The agent is within two cells of the door."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :, :]
    agent = colour_centroid(grid, AGENT_RGB, 10)
    door = colour_centroid(grid, YELLOW_RGB, 60)
    return agent[0] >= 0 and euclidean_distance(agent, door) < 2 * TILE_PX


def agent_right_half(obs):
    """The agent is in the right half of the grid."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :, :]
    agent = colour_centroid(grid, AGENT_RGB, 10)
    return agent[1] > GRID_WIDTH * TILE_PX / 2


def goal_box(obs):
    """The goal square's bounding box is intact (a full cell)."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :, :]
    box = bounding_box(colour_mask(grid, GREEN_RGB, 10))
    return box[2] - box[0] < TILE_PX - 2


def agent_on_goal_row(obs):
    """The agent is on the goal's row."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :, :]
    agent = colour_centroid(grid, AGENT_RGB, 10)
    goal = colour_centroid(grid, GREEN_RGB, 10)
    return abs(agent[0] - goal[0]) < TILE_PX / 2


def reached_goal(obs):
    """The red agent overlaps the green goal square."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :, :]
    agent = colour_centroid(grid, AGENT_RGB, 10)
    goal = colour_centroid(grid, GREEN_RGB, 10)
    return goal[0] < 0 or euclidean_distance(agent, goal) < TILE_PX / 2
'''


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="MiniGrid-DoorKey-8x8")
    p.add_argument("-n", type=int, default=1024, help="expert and random trajectories each")
    p.add_argument("--steps", type=int, default=256, help="steps per trajectory")
    p.add_argument("--chunk", type=int, default=128, help="trajectories per verification call")
    p.add_argument("--quick", action="store_true", help="n=128, steps=64, chunk=64")
    p.add_argument("--out", default=str(RESULTS / "verify_speed.json"))
    args = p.parse_args()
    if args.quick:
        args.n, args.steps, args.chunk = 128, 64, 64
    if args.n % args.chunk:
        p.error(f"-n ({args.n}) must be a multiple of --chunk ({args.chunk})")

    task = envs.make(args.task)
    spec = RewardSpec.from_source(PROGRAMS)
    t0 = time.perf_counter()
    compiled = compile_spec(spec, task.inputs("pixels"), task.constants("pixels"))
    dsl_compile_s = time.perf_counter() - t0
    figures = completion_figures(compiled)

    chunks = args.n // args.chunk
    keys = jax.random.split(jax.random.key(0), 2 * chunks)
    compile_s, verify_s, rollout_s, fired = 0.0, 0.0, 0.0, np.zeros(len(spec.programs))
    for i, key in enumerate(keys):
        policy = "expert" if i < chunks else "random"
        t0 = time.perf_counter()
        traj = block(collect_rollouts(task, policy, key, args.chunk, args.steps, mode="pixels"))
        rollout_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        if i == 0:  # the first call traces and compiles; time it apart, then time a real run
            block(figures(traj.inputs, traj.valid, 1))
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
        done, _, _ = block(figures(traj.inputs, traj.valid, 1))
        verify_s += time.perf_counter() - t0
        fired += np.asarray(done).sum(axis=0)
        del traj
        print(f"chunk {i + 1}/{len(keys)} ({policy}) verified", file=sys.stderr)

    k, n_traj = len(spec.programs), 2 * args.n
    program_steps = k * n_traj * args.steps
    result = {
        "benchmark": "verify_speed",
        "task": args.task,
        "mode": "pixels",
        "programs": k,
        "trajectories": n_traj,
        "steps_per_trajectory": args.steps,
        "chunk": args.chunk,
        "dsl_compile_seconds": dsl_compile_s,
        "verify_compile_seconds": compile_s,
        "verify_run_seconds": verify_s,
        "verify_total_seconds": dsl_compile_s + compile_s + verify_s,
        "program_steps_per_second": program_steps / verify_s,
        "rollout_collection_seconds": rollout_s,
        "fired_fraction": (fired / n_traj).round(4).tolist(),
        "target_total_seconds": 10.0,
        "machine": machine(),
        "command": command(__file__),
    }
    print(
        f"\nVerification of {k} pixel programs on {n_traj} trajectories x {args.steps} steps ({args.task})"
    )
    print(f"{'DSL compile':<28}{dsl_compile_s:>9.2f} s")
    print(f"{'verification compile':<28}{compile_s:>9.2f} s")
    print(
        f"{'verification run (all)':<28}{verify_s:>9.2f} s   ({program_steps / verify_s / 1e6:.1f}M program-steps/s)"
    )
    print(f"{'total (target < 10 s)':<28}{result['verify_total_seconds']:>9.2f} s")
    print(f"{'(rollout collection)':<28}{rollout_s:>9.2f} s   not part of verification")
    print(f"wrote {write_json(Path(args.out), result)}")


if __name__ == "__main__":
    main()
