"""Verification speed: K pixel-mode programs x N expert + N random trajectories x T steps.

Two columns side by side on the same trajectories: the OLD path (every step, padding after an
episode's end included, one dense `vmap(vmap(...))`) and the NEW path of `verify_spec` (valid
steps only, gathered into fixed-size chunks, then the host-side reduction that also computes the
new checks: whole-task timing against per-step ground truth, ties, near-miss negatives). The
new checks also evaluate one more set, N epsilon-expert (near-miss) runs: its cost is a row of
its own. The figures of both paths are checked equal.

The issue's setting is 8 programs x 1024 expert + 1024 random trajectories x 256 steps on
DoorKey-8x8 in pixels mode (target: under 10 s in all on a 2-core CPU). 2048 x 256 frames of
72x64x3 bytes are 7 GB, so trajectories are collected and verified in chunks of `--chunk`
trajectories: one compiled verification function serves every chunk (same shapes), and its
compile time is reported apart from the steady-state time summed over all chunks.

    python benchmarks/verify_speed.py            # the issue's setting
    python benchmarks/verify_speed.py --quick    # a small run
    python benchmarks/verify_speed.py --sample-sizes 128,256   # the `make run` path per -n
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
from car_jax.verify import (  # noqa: E402
    completion_figures,
    evaluate_valid_steps,
    set_figures,
    wilson_interval,
)

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
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine busy)")
    p.add_argument(
        "--sample-sizes",
        default="",
        help="instead: time `car-jax run`'s verification (state mode, reference spec, feedback "
        "and held-out sets) at these comma-separated -n values",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.sample_sizes:
        sample_sizes(args)
        return
    args.out = args.out or str(RESULTS / "verify_speed.json")
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
    keys = jax.random.split(jax.random.key(0), 3 * chunks)
    old = {"compile": 0.0, "run": 0.0}
    new = {"compile": 0.0, "run": 0.0, "reduce": 0.0, "near_miss": 0.0}
    rollout_s, fired, steps, valid_steps = 0.0, np.zeros(len(spec.programs)), 0, 0
    for i, key in enumerate(keys):
        policy = ("expert", "random", "epsilon-expert")[i // chunks]
        t0 = time.perf_counter()
        traj = block(collect_rollouts(task, policy, key, args.chunk, args.steps, mode="pixels"))
        rollout_s += time.perf_counter() - t0
        if policy != "epsilon-expert":
            # OLD: every step. The first call traces and compiles; time it apart.
            t0 = time.perf_counter()
            if i == 0:
                block(figures(traj.inputs, traj.valid, 1))
                old["compile"] = time.perf_counter() - t0
                t0 = time.perf_counter()
            done_old, first_old, _ = block(figures(traj.inputs, traj.valid, 1))
            old["run"] += time.perf_counter() - t0
            fired += np.asarray(done_old).sum(axis=0)
            steps += traj.valid.size
            valid_steps += int(np.asarray(traj.valid).sum())
        # NEW: valid steps only, then the host-side reduction with the new checks.
        t0 = time.perf_counter()
        if i == 0:
            small = jax.tree.map(lambda a: a[:1], traj)  # compiles the same chunk-size program
            evaluate_valid_steps(compiled, small, chunk=_chunk_size(traj))
            new["compile"] = time.perf_counter() - t0
            t0 = time.perf_counter()
        done, nan = evaluate_valid_steps(compiled, traj, chunk=_chunk_size(traj))
        t1 = time.perf_counter()
        fig = set_figures(done, nan, traj, 1)
        t2 = time.perf_counter()
        if policy == "epsilon-expert":
            new["near_miss"] += t2 - t0
        else:
            new["run"] += t1 - t0
            new["reduce"] += t2 - t1
            np.testing.assert_array_equal(fig.completed, np.asarray(done_old))
            np.testing.assert_array_equal(fig.first, np.asarray(first_old))
        del traj
        print(f"chunk {i + 1}/{len(keys)} ({policy}) verified", file=sys.stderr)

    k, n_traj = len(spec.programs), 2 * args.n
    program_steps = k * n_traj * args.steps
    old_total = dsl_compile_s + old["compile"] + old["run"]
    new_total = dsl_compile_s + new["compile"] + new["run"] + new["reduce"]
    result = {
        "benchmark": "verify_speed",
        "task": args.task,
        "mode": "pixels",
        "programs": k,
        "trajectories": n_traj,
        "steps_per_trajectory": args.steps,
        "valid_step_fraction": valid_steps / steps,
        "chunk": args.chunk,
        "dsl_compile_seconds": dsl_compile_s,
        "old_every_step": {
            "compile_seconds": old["compile"],
            "run_seconds": old["run"],
            "total_seconds": old_total,
            "program_steps_per_second": program_steps / old["run"],
        },
        "new_valid_steps_only": {
            "compile_seconds": new["compile"],
            "run_seconds": new["run"],
            "reduce_new_checks_seconds": new["reduce"],
            "total_seconds": new_total,
            "near_miss_set_seconds": new["near_miss"],
            "total_with_near_miss_seconds": new_total + new["near_miss"],
        },
        "figures_identical": True,  # asserted chunk by chunk above
        "rollout_collection_seconds": rollout_s,
        "fired_fraction": (fired / n_traj).round(4).tolist(),
        "target_total_seconds": 10.0,
        "note": args.note,
        "machine": machine(),
        "command": command(__file__),
    }
    print(
        f"\nVerification of {k} pixel programs on {n_traj} trajectories x {args.steps} steps "
        f"({args.task}); {valid_steps / steps:.0%} of the steps are valid"
    )
    print(f"{'':<34}{'old: every step':>18}{'new: valid only':>18}")
    print(f"{'DSL compile':<34}{dsl_compile_s:>16.2f} s{dsl_compile_s:>16.2f} s")
    print(f"{'verification compile':<34}{old['compile']:>16.2f} s{new['compile']:>16.2f} s")
    print(f"{'evaluate expert + random':<34}{old['run']:>16.2f} s{new['run']:>16.2f} s")
    print(f"{'reduce + new checks (host)':<34}{'—':>18}{new['reduce']:>16.2f} s")
    print(f"{'total (target < 10 s)':<34}{old_total:>16.2f} s{new_total:>16.2f} s")
    print(f"{'+ near-miss set (new check)':<34}{'—':>18}{new['near_miss']:>16.2f} s")
    print(f"{'(rollout collection)':<34}{rollout_s:>16.2f} s   not part of verification")
    print(f"wrote {write_json(Path(args.out), result)}")


def sample_sizes(args) -> None:
    """Time the verification `car-jax run` does (feedback + held-out sets) at each -n."""
    from car_jax.verify import make_verifier

    task = envs.make(args.task)
    spec = RewardSpec.load(Path(__file__).resolve().parent.parent / "prompts" / "reference"
                           / f"{args.task}.state.py")  # fmt: skip
    rows = []
    for n in [int(x) for x in args.sample_sizes.split(",")]:
        t = [time.perf_counter()]
        verifier = make_verifier(task, "state", n=n)
        verifier.rollouts()  # the first size also pays the rollout compiles
        t.append(time.perf_counter())
        verifier.held_out_rollouts()
        t.append(time.perf_counter())
        verifier(spec)  # a feedback round (compiles the spec's evaluation)
        t.append(time.perf_counter())
        final = verifier.final(spec)
        t.append(time.perf_counter())
        neg = {x.kind: x.fired.n for x in final.whole_task.negatives}
        rows.append({
            "n": n,
            "feedback_rollouts_seconds": t[1] - t[0],
            "held_out_rollouts_seconds": t[2] - t[1],
            "feedback_verdict_seconds": t[3] - t[2],
            "final_verdict_seconds": t[4] - t[3],
            "total_seconds": t[4] - t[0],
            "passed": final.passed,
            "failed_near_miss_runs": neg.get("epsilon-expert", 0),
            "random_rate_ci_width_at_10pct": float(np.subtract(*wilson_interval(n // 10, n)[::-1])),
        })  # fmt: skip
        r = rows[-1]
        print(f"n={n:>5}: rollouts {r['feedback_rollouts_seconds']:.1f} s + held-out "
              f"{r['held_out_rollouts_seconds']:.1f} s, verdicts {r['feedback_verdict_seconds']:.2f}"
              f" + {r['final_verdict_seconds']:.2f} s, total {r['total_seconds']:.1f} s; "
              f"failed near misses {r['failed_near_miss_runs']}; 95% CI width at 10%: "
              f"{r['random_rate_ci_width_at_10pct']:.3f}")  # fmt: skip
    result = {
        "benchmark": "verify_sample_sizes",
        "task": args.task,
        "mode": "state",
        "rows": rows,
        "note": args.note,
        "machine": machine(),
        "command": command(__file__),
    }
    out = Path(args.out or RESULTS / "verify_sample_sizes.json")
    print(f"wrote {write_json(out, result)}")


def _chunk_size(traj) -> int:
    """The chunk size `evaluate_valid_steps` uses for sets this large (one compile for all)."""
    from car_jax.verify import chunk_size

    return chunk_size(int(traj.valid.size))


if __name__ == "__main__":
    main()
