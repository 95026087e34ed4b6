"""`car-jax run`: the main job. Generate reward programs, verify them, train with them.

Stage 1 asks a VLM (replayed reference answers by default, offline) for the task's sub-tasks and
one program each, with feedback rounds; stage 2 verifies them on expert and random rollouts and
stops with the verdict if they are rejected; stage 3 trains PPO with the code reward and with
the sparse reward side by side. Everything lands in one run directory.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from car_jax.commands._common import compile_for, load_spec, load_task, out_dir, resolve_mode
from car_jax.commands.train import add_training_arguments, train_and_report, training_config

NAME = "run"
HELP = "The main job: VLM -> reward programs -> verification -> PPO with code vs sparse reward."


def add_arguments(p) -> None:
    from car_jax.verify import DEFAULT_N
    from car_jax.vlm.select import add_vlm_arguments

    p.add_argument("task", metavar="ID", help="task id (see `car-jax envs`)")
    p.add_argument("--mode", default="state", help="program input mode: state (default) or pixels")
    p.add_argument("--spec", default=None, help="skip stage 1 and use this reward spec file")
    p.add_argument("--out", default=None, help="run directory (default runs/<ID>-<time>)")
    p.add_argument("--verify-n", type=int, default=DEFAULT_N,
                   help=f"expert, random and near-miss runs each for verification ({DEFAULT_N})")  # fmt: skip
    add_training_arguments(p)
    add_vlm_arguments(p)


def _stage1(args, task, mode, run_dir: Path):
    """Generate (or load) the spec; returns (spec, verdict, note) or None when rejected."""
    from car_jax.verify import Verifier
    from car_jax.vlm import generate_spec
    from car_jax.vlm.loop import task_images
    from car_jax.vlm.select import choose_backend, make_cache

    verifier = Verifier(task, mode, n=args.verify_n)
    if args.spec:
        spec = load_spec(args.spec)
        compile_for(spec, task, mode)
        initial, goal = task_images(task)
        (run_dir / "initial.png").write_bytes(initial)
        (run_dir / "goal.png").write_bytes(goal)
        t0 = time.perf_counter()
        verdict = verifier.final(spec)  # held-out rollouts, feedback verdict recorded
        args.verify_seconds = time.perf_counter() - t0
        return spec, verdict, f"Spec read from `{args.spec}` (stage 1 skipped)."

    backend, note = choose_backend(args)
    if note:
        print(note, file=sys.stderr)
    print(f"stage 1: asking {backend.name} ({backend.model}) for reward programs ...")
    result = generate_spec(
        task,
        mode,
        backend,
        verifier,
        rounds=args.rounds,
        run_dir=run_dir / "stage1",
        cache=make_cache(args),
        prompt_dir=args.prompt_dir,
        progress=lambda line: print(f"  {line}"),
    )
    for name in ("initial.png", "goal.png"):
        src = run_dir / "stage1" / name
        if src.exists():
            shutil.copyfile(src, run_dir / name)
    labels = sorted(set(result.labels)) if getattr(result, "labels", None) else []
    how = f"Programs from the `{backend.name}` backend (model `{backend.model}`)"
    if labels:
        how += f"; answers labelled: {', '.join(labels)}"
    how += f". {len(result.records)} request(s), {result.cache_hits} served from the cache."
    if note:
        how += f" {note}."
    if result.spec is None:
        print(result.summary(), file=sys.stderr)
        return None, None, how
    return result.spec, result.verdict, how


def run(args) -> int:
    from car_jax.experiment import curves
    from car_jax.report import run_report

    t_start = time.perf_counter()
    args.verify_seconds = None
    task = load_task(args.task)
    mode = resolve_mode(task, args.mode)
    training_config(args, task)  # refuse bad training flags now, not after stages 1 and 2
    run_dir = out_dir(args, task.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory: {run_dir}")

    t_stage12 = time.perf_counter()
    spec, verdict, how = _stage1(args, task, mode, run_dir)
    stage12_seconds = time.perf_counter() - t_stage12
    if spec is None:
        print("stage 1 produced no spec that compiles; see the records in", run_dir / "stage1")
        return 1
    spec.save(run_dir / "spec.py")
    (run_dir / "verdict.json").write_text(json.dumps(verdict.to_dict(), indent=2))
    (run_dir / "verdict.md").write_text(verdict.to_markdown())
    print("stage 2: verification")
    print(verdict.to_markdown())
    if not verdict.passed:
        report = run_report(task.id, mode, spec.to_source(), verdict.to_markdown(), {}, how,
                            "Not run: the programs were rejected.")  # fmt: skip
        (run_dir / "report.md").write_text(report)
        print(f"programs rejected: stopping before training; see {run_dir / 'verdict.md'}")
        return 1

    print("stage 3: training")
    compiled = compile_for(spec, task, mode)
    out = train_and_report(args, task, mode, compiled, run_dir, f"{task.id} ({mode} mode)")
    cfg = out["config"]
    note = (
        f"PPO, {len(out['results'][next(iter(out['results']))].seeds)} seed(s) per reward, "
        f"{cfg.num_envs} envs x {cfg.num_steps} steps per update, {cfg.num_updates} updates "
        f"({cfg.num_updates * cfg.batch_size:,} env steps per seed); reward {args.bonus} per "
        f"sub-task ({args.shaping}{', progress in the observation' if args.progress_obs else ''})"
        f"{'; both rewards see the carried object' if args.carried_obs else ''}. "
        f"Success is judged by evaluation: every {cfg.eval_interval} updates and after the last, "
        f"{cfg.eval_episodes} fresh episodes of the greedy policy (argmax) from their own resets, "
        "scored by the task's ground-truth success. IQM over seeds with a 95% stratified-bootstrap "
        "interval; steps to 90% count, per seed, from the first evaluation after which success "
        "stays at or above 90% to the end."
    )
    report = run_report(
        task.id, mode, spec.to_source(), verdict.to_markdown(), curves(out["results"]), how, note
    )
    (run_dir / "report.md").write_text(report)
    print(f"wrote {run_dir / 'report.md'}")
    verify_s = args.verify_seconds
    stage12 = (
        f"verification {verify_s:.1f} s" if verify_s is not None
        else f"stage 1 + verification {stage12_seconds:.1f} s"
    )  # fmt: skip
    print(
        f"wall clock {time.perf_counter() - t_start:.1f} s: {stage12}, training compile "
        f"{out['compile_seconds']:.1f} s, training {out['train_seconds']:.1f} s"
    )
    return 0
