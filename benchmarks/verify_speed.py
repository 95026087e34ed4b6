"""Verification speed: K pixel-mode programs x N expert + N random trajectories x T steps.

Two columns side by side on the same trajectories, both through `verify_spec`'s path (valid steps
only, gathered into fixed-size chunks, then the host-side reduction to per-run figures):
- DRAWN: the trajectories hold the drawn 72x64x3 frames and the programs read pixels;
- LAZY: the trajectories hold the frame's cell ids (`collect_rollouts(..., cells=True)`, what
  `Verifier` and `collect_verification_rollouts` record for sprite-grid tasks) and the programs,
  compiled with the task's sprite sheets, answer vision primitives from per-sprite tables.
The per-step results of both are checked equal, chunk by chunk. Rollouts are collected once, as
cell ids; the drawn frames are the sprite gather of those ids (`draw_frames`, the task's own
frame, as tests/test_verify.py checks), timed apart and not counted as verification.

A third measurement (`--batched K`, default 4): K specs verified in ONE batched evaluation
(`verify_specs`, as `car-jax search` verifies its candidates) vs K calls one by one, lazy path,
compile included in both.

The issue's setting is 8 programs x 1024 expert + 1024 random trajectories x 256 steps on
DoorKey-8x8 in pixels mode (target: under 10 s in all, compile included, on a 2-core CPU).
2048 x 256 drawn frames are 7 GB, so trajectories are verified in chunks of `--chunk`
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
from car_jax.rollout import collect_rollouts, draw_frames  # noqa: E402
from car_jax.spec import RewardSpec, compile_spec  # noqa: E402
from car_jax.sprite_inputs import task_sprite_frames  # noqa: E402
from car_jax.verify import (  # noqa: E402
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
    p.add_argument("--batched", type=int, default=4, help="K specs: one batched call vs K calls")
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
    sheets = task_sprite_frames(task, "pixels")
    t0 = time.perf_counter()
    drawn_spec = compile_spec(spec, task.inputs("pixels"), task.constants("pixels"))
    dsl_compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lazy_spec = compile_spec(
        spec, task.inputs("pixels"), task.constants("pixels"), sprite_frames=sheets
    )
    lazy_dsl_compile_s = time.perf_counter() - t0
    assert all(p.lazy_reads for p in lazy_spec.programs)
    # K copies of the spec, compiled apart (no shared jit cache): one batched call vs K calls.
    copies = [
        compile_spec(spec, task.inputs("pixels"), task.constants("pixels"), sprite_frames=sheets)
        for _ in range(args.batched)
    ]

    chunks = args.n // args.chunk
    keys = jax.random.split(jax.random.key(0), 2 * chunks)
    cols = {name: {"compile": 0.0, "run": 0.0, "reduce": 0.0} for name in ("drawn", "lazy")}
    batch = {"batched_compile": 0.0, "batched_run": 0.0, "one_by_one_compile": 0.0,
             "one_by_one_run": 0.0}  # fmt: skip
    rollout_s, draw_s, fired, steps, valid_steps = 0.0, 0.0, np.zeros(len(spec.programs)), 0, 0
    traj_bytes = {"drawn": 0, "lazy": 0}
    for i, key in enumerate(keys):
        policy = ("expert", "random")[i // chunks]
        t0 = time.perf_counter()
        cells = block(
            collect_rollouts(task, policy, key, args.chunk, args.steps, mode="pixels", cells=True)
        )
        rollout_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        drawn = block(draw_frames(cells, task))
        draw_s += time.perf_counter() - t0
        traj_bytes["drawn"] += int(drawn.inputs["frame"].nbytes)
        traj_bytes["lazy"] += int(cells.inputs["frame"].nbytes)
        size = _chunk_size(cells)
        results = {}
        for name, compiled, traj in (("drawn", drawn_spec, drawn), ("lazy", lazy_spec, cells)):
            col = cols[name]
            t0 = time.perf_counter()
            if i == 0:  # the first call traces and compiles (same chunk size): time it apart
                evaluate_valid_steps(compiled, _head(traj), chunk=size, task=task)
                col["compile"] = time.perf_counter() - t0
                t0 = time.perf_counter()
            done, nan = evaluate_valid_steps(compiled, traj, chunk=size, task=task)
            t1 = time.perf_counter()
            fig = set_figures(done, nan, traj, 1)
            col["run"] += t1 - t0
            col["reduce"] += time.perf_counter() - t1
            results[name] = (done, nan, fig)
        for a, b in zip(results["drawn"], results["lazy"][:2]):
            np.testing.assert_array_equal(a, b)  # bit for bit: the same completion and NaN
        fired += results["lazy"][2].completed.sum(axis=0)
        steps += cells.valid.size
        valid_steps += int(np.asarray(cells.valid).sum())
        if args.batched:
            t0 = time.perf_counter()
            if i == 0:
                evaluate_valid_steps(copies, _head(cells), chunk=size, task=task)
                batch["batched_compile"] = time.perf_counter() - t0
                t0 = time.perf_counter()
            together, _ = evaluate_valid_steps(copies, cells, chunk=size, task=task)
            batch["batched_run"] += time.perf_counter() - t0
            for j, c in enumerate(copies):
                t0 = time.perf_counter()
                if i == 0:
                    evaluate_valid_steps(c, _head(cells), chunk=size, task=task)
                    batch["one_by_one_compile"] += time.perf_counter() - t0
                    t0 = time.perf_counter()
                alone, _ = evaluate_valid_steps(c, cells, chunk=size, task=task)
                batch["one_by_one_run"] += time.perf_counter() - t0
                k = len(c.programs)
                np.testing.assert_array_equal(together[..., j * k : (j + 1) * k], alone)
        del drawn, cells
        print(f"chunk {i + 1}/{len(keys)} ({policy}) verified", file=sys.stderr)

    k, n_traj = len(spec.programs), 2 * args.n
    program_steps = k * n_traj * args.steps
    totals = {
        "drawn": dsl_compile_s + sum(cols["drawn"].values()),
        "lazy": lazy_dsl_compile_s + sum(cols["lazy"].values()),
    }

    def column(name: str, dsl_s: float) -> dict:
        c = cols[name]
        return {
            "dsl_compile_seconds": dsl_s,
            "compile_seconds": c["compile"],
            "run_seconds": c["run"],
            "reduce_seconds": c["reduce"],
            "total_seconds": totals[name],
            "program_steps_per_second": program_steps / c["run"],
            "trajectory_input_bytes": traj_bytes[name],
        }

    result = {
        "benchmark": "verify_speed",
        "task": args.task,
        "mode": "pixels",
        "programs": k,
        "trajectories": n_traj,
        "steps_per_trajectory": args.steps,
        "valid_step_fraction": valid_steps / steps,
        "chunk": args.chunk,
        "drawn_frames": column("drawn", dsl_compile_s),
        "lazy_cell_ids": column("lazy", lazy_dsl_compile_s),
        "speedup_lazy_vs_drawn_total": totals["drawn"] / totals["lazy"],
        "speedup_lazy_vs_drawn_run": cols["drawn"]["run"] / cols["lazy"]["run"],
        "figures_identical": True,  # asserted chunk by chunk above
        "rollout_collection_seconds": rollout_s,
        "drawing_frames_seconds": draw_s,
        "fired_fraction": (fired / n_traj).round(4).tolist(),
        "target_total_seconds": 10.0,
        "target_met": totals["lazy"] <= 10.0,
        "note": args.note,
        "machine": machine(),
        "command": command(__file__),
    }
    if args.batched:
        result["batched_specs"] = {
            "specs": args.batched,
            "programs_each": k,
            "path": "lazy",
            **{f"{key}_seconds": v for key, v in batch.items()},
            "batched_total_seconds": batch["batched_compile"] + batch["batched_run"],
            "one_by_one_total_seconds": batch["one_by_one_compile"] + batch["one_by_one_run"],
        }
    print(
        f"\nVerification of {k} pixel programs on {n_traj} trajectories x {args.steps} steps "
        f"({args.task}); {valid_steps / steps:.0%} of the steps are valid"
    )
    print(f"{'':<34}{'drawn frames':>18}{'lazy (cell ids)':>18}")
    d, z = cols["drawn"], cols["lazy"]
    print(f"{'DSL compile':<34}{dsl_compile_s:>16.2f} s{lazy_dsl_compile_s:>16.2f} s")
    print(f"{'verification compile':<34}{d['compile']:>16.2f} s{z['compile']:>16.2f} s")
    print(f"{'evaluate expert + random':<34}{d['run']:>16.2f} s{z['run']:>16.2f} s")
    print(f"{'reduce to figures (host)':<34}{d['reduce']:>16.2f} s{z['reduce']:>16.2f} s")
    print(f"{'total (target <= 10 s)':<34}{totals['drawn']:>16.2f} s{totals['lazy']:>16.2f} s")
    mb = {n: traj_bytes[n] / 2**20 for n in traj_bytes}
    print(f"{'frame input held (MiB)':<34}{mb['drawn']:>18.0f}{mb['lazy']:>18.1f}")
    print(f"{'(rollout collection, cell ids)':<34}{rollout_s:>16.2f} s   not part of verification")
    if args.batched:
        b = result["batched_specs"]
        print(f"\n{args.batched} specs x {k} programs, lazy path:  one batched call "
              f"{b['batched_compile_seconds']:.2f} s compile + {b['batched_run_seconds']:.2f} s run"
              f"; one by one {b['one_by_one_compile_seconds']:.2f} s compile + "
              f"{b['one_by_one_run_seconds']:.2f} s run")  # fmt: skip
    print(f"wrote {write_json(Path(args.out), result)}")


def _head(traj):
    """The first trajectory only: compiles the same chunk-size program cheaply."""
    return jax.tree.map(lambda a: a[:1], traj)


def sample_sizes(args) -> None:
    """Time the verification `car-jax run` does (feedback + held-out sets) at each -n."""
    from car_jax.verify import Verifier

    task = envs.make(args.task)
    spec = RewardSpec.load(Path(__file__).resolve().parent.parent / "prompts" / "reference"
                           / f"{args.task}.state.py")  # fmt: skip
    rows = []
    for n in [int(x) for x in args.sample_sizes.split(",")]:
        t = [time.perf_counter()]
        verifier = Verifier(task, "state", n=n)
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
