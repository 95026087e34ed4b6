"""Headline throughput: fused code reward vs env alone vs Farama MiniGrid vs a per-step image encoder.

One run, one machine, one JSON (benchmarks/results/throughput.json), one table. For MiniGrid
DoorKey-8x8 and each number of parallel envs:
  1. the env alone, random actions, auto-reset inside the scan;
  2. the env + the fused code reward (`CodeReward`) in `state` and `pixels` mode, and its ratio to 1;
  3. Farama MiniGrid DoorKey-8x8 with the same sub-task checks as Python functions over the env's
     state, in a Python loop and in gymnasium's vector envs;
  4. a ViT-B/32-sized image encoder (random weights) on every step's 224x224 frame: the cost of
     asking a vision model each step. It measures cost, not reward quality.

    .venv/bin/python benchmarks/throughput.py            # full run (~10 min on 2 CPU cores)
    .venv/bin/python benchmarks/throughput.py --quick    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envs  # noqa: E402
from benchmarks._bench_util import RESULTS, command, fmt_rate, machine, write_json  # noqa: E402
from benchmarks.encoder_baseline import NOTE_ENCODER, bench_encoder  # noqa: E402
from benchmarks.farama_baseline import bench_farama_loop, bench_farama_vector  # noqa: E402
from benchmarks.jax_rollout import (  # noqa: E402
    ROOT,
    TASK_ID,
    bench_interleaved,
    fused_env,
    overhead_analysis,
    paired_ratio,
    prepare_jax,
    scan_length,
    spec_path,
)
from benchmarks.throughput_report import (  # noqa: E402
    check_targets,
    plot_throughput,
    print_table,
    render_markdown,
)


def make_variants(task: Any, modes: list[str], compare: bool) -> dict[str, tuple[Any, str]]:
    """name -> (env, auto-reset mode); the *_step_reset / *_drawn rows are the old ways."""
    variants: dict[str, tuple[Any, str]] = {"env": (task, "pool")}
    for mode in modes:
        variants[f"fused_{mode}"] = (fused_env(task, mode), "pool")
    if compare:
        variants["env_step_reset"] = (task, "step")
        if "pixels" in modes:
            variants["fused_pixels_drawn"] = (fused_env(task, "pixels", lazy=False), "pool")
    return variants


def measure_jax_row(
    variants: dict[str, tuple[Any, str]], n: int, args: argparse.Namespace, lo: int, hi: int
) -> dict[str, Any]:
    """Every variant at `n` envs, timed in interleaved rounds; ratios to the env alone."""
    row: dict[str, Any] = {"num_envs": n}
    preps = {}
    for name, (env, reset_mode) in variants.items():
        # drawn pixels are ~10x slower: a smaller call keeps its repeats affordable
        slow = name == "fused_pixels_drawn"
        target = args.target_steps // (8 if slow else 1)
        t = scan_length(n, target, lo // (4 if slow else 1), hi)
        preps[name] = prepare_jax(env, n, t, reset_mode)
    row.update(bench_interleaved(preps, args.repeats))
    for name in variants:
        r = row[name]
        print(
            f"  {name:18s} envs={n:6d}  {fmt_rate(r['median']):>8s} steps/s  "
            f"compile {r['compile_s']:.1f}s",
            flush=True,
        )
        if name != "env":
            pr = paired_ratio(r, row["env"])
            r["ratio_to_env"] = pr["median"]
            r["ratio_to_env_range"] = [pr["min"], pr["max"]]
    return row


def measure_farama(args: argparse.Namespace) -> dict[str, Any]:
    """The Farama MiniGrid rows: Python loop with and without the checks, vector envs."""
    farama = {
        "loop": bench_farama_loop(args.farama_seconds, args.repeats),
        "loop_no_reward": bench_farama_loop(args.farama_seconds, args.repeats, with_reward=False),
    }
    if args.farama_vector:
        farama["sync_vector"] = bench_farama_vector(
            args.farama_vector, "sync", args.farama_seconds, args.repeats
        )
        farama["async_vector_2"] = bench_farama_vector(
            2, "async", args.farama_seconds, args.repeats
        )
    for k, v in farama.items():
        print(f"  farama {k:16s} {fmt_rate(v['median']):>8s} steps/s", flush=True)
    return farama


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--envs", type=int, nargs="+", default=[1, 16, 256, 4096, 16384], help="parallel env counts"
    )
    ap.add_argument("--modes", nargs="+", default=["state", "pixels"], choices=["state", "pixels"])
    ap.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per point (median reported)"
    )
    ap.add_argument("--target-steps", type=int, default=2**19, help="env steps per timed call")
    ap.add_argument("--farama-seconds", type=float, default=2.0, help="seconds per Farama repeat")
    ap.add_argument(
        "--farama-vector", type=int, default=16, help="envs in the gymnasium vector env (0: skip)"
    )
    ap.add_argument("--encoder-batch", type=int, default=8, help="images per encoder call")
    ap.add_argument("--no-farama", action="store_true", help="skip the Farama MiniGrid part")
    ap.add_argument("--no-encoder", action="store_true", help="skip the image-encoder part")
    ap.add_argument(
        "--no-overhead", action="store_true", help="skip the state-mode overhead analysis"
    )
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    ap.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the side-by-side rows of the old ways (reset every step; drawn pixel frames)",
    )
    ap.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="only redraw the .md table and .png of a saved run",
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run (seconds)")
    ap.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    ap.add_argument(
        "--note",
        default="",
        help="free text stored in the JSON (e.g. 'CPU shared with other jobs')",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    args = build_parser().parse_args(argv)
    if args.render is not None:
        payload = json.loads(args.render.read_text(encoding="utf-8"))
        print(render_markdown(payload))
        args.render.with_suffix(".md").write_text(render_markdown(payload), encoding="utf-8")
        print(f"wrote {plot_throughput(payload, args.render.with_suffix('.png'))}")
        return 0
    if args.quick:
        args.envs = [n for n in args.envs if n <= 16] or [1, 16]
        args.repeats, args.target_steps = 2, 256
        args.farama_seconds, args.farama_vector, args.encoder_batch = 0.2, 2, 1

    task = envs.make(TASK_ID)
    variants = make_variants(task, args.modes, compare=not args.no_compare)
    lo, hi = (8, 64) if args.quick else (32, 2000)
    jax_rows = [measure_jax_row(variants, n, args, lo, hi) for n in args.envs]

    overhead: dict[str, Any] = {}
    if "fused_state" in variants and not args.no_overhead:
        n = 4096 if 4096 in args.envs else args.envs[-1]
        overhead = overhead_analysis(
            task,
            variants["fused_state"][0],
            n,
            scan_length(n, args.target_steps, lo, hi),
            args.repeats,
        )
        overhead["num_envs"] = n
        o = overhead["summary"]
        print(
            f"  overhead at {n} envs: bare step {fmt_rate(overhead['env_no_reset']['median'])} steps/s, "
            f"auto-reset takes {o['auto_reset_share_of_env_time']:.0%} of env time; "
            f"observe+programs cost {o['reward_cost_vs_env_step']:.1%} of a bare step",
            flush=True,
        )

    farama = {} if args.no_farama else measure_farama(args)

    encoder: dict[str, Any] = {}
    if not args.no_encoder:
        encoder = bench_encoder(
            args.encoder_batch, max(2, args.repeats // 2 + 1) if not args.quick else 1
        )
        print(
            f"  encoder ViT-B/32  {fmt_rate(encoder['median']):>8s} images/s  compile {encoder['compile_s']:.1f}s"
        )

    # ratios of the fused reward to the alternatives, at every size
    best_farama = max(
        (v["median"] for k, v in farama.items() if k != "loop_no_reward"), default=None
    )
    for row in jax_rows:
        for mode in args.modes:
            r = row[f"fused_{mode}"]
            if farama:
                r["ratio_to_farama_loop"] = r["median"] / farama["loop"]["median"]
                r["ratio_to_farama_best"] = r["median"] / best_farama
            if encoder:
                r["ratio_to_encoder"] = r["median"] / encoder["median"]

    targets = check_targets(jax_rows, farama, encoder)
    payload = {
        "benchmark": "throughput",
        "task": TASK_ID,
        "command": command(__file__, argv),
        "quick": args.quick,
        "note": args.note,
        "machine": machine(),
        "specs": {m: str(spec_path(m).relative_to(ROOT)) for m in args.modes},
        "method": (
            "JAX rows: jit(scan(vmap(step))) with random actions and auto-reset from a reset pool "
            "drawn once per timed call (car_jax.rl.resets; env_step_reset: a fresh reset of every "
            "env every step, the old way); fused_pixels reads cell ids through the lazy frame "
            "(fused_pixels_drawn: drawn frames, the old way); the scan returns the summed reward "
            "so nothing is dropped. "
            "Compile time (trace+XLA) is reported apart; steady-state times are blocked until ready, "
            "one warm-up call each, then `repeats` rounds timing env, fused state and fused pixels "
            "in turn (interleaved, so they share the machine's load); median and "
            "spread=(max-min)/median; ratio_to_env is the median of per-round ratios. "
            "Farama rows: gymnasium MiniGrid with the same three sub-task checks in Python, random "
            "actions, time-boxed repeats. " + NOTE_ENCODER
        ),
        "jax": jax_rows,
        "farama": farama,
        "encoder": encoder,
        "overhead": overhead,
        "targets": targets,
    }
    print_table(payload, args.modes)
    path = write_json(args.out, payload)
    print(f"\nwrote {path}")
    if not args.no_plot:
        print(f"wrote {plot_throughput(payload, args.out.with_suffix('.png'))}")
    md = args.out.with_suffix(".md")
    md.write_text(render_markdown(payload), encoding="utf-8")
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
