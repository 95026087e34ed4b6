"""What a trained reacher policy does: distance to the target and joint speed along greedy episodes.

Reads a training folder (`<run>/<reward>/` of `car-jax train`/`run` or of
`sample_efficiency.py --work-dir`: its run.json and last checkpoint), plays greedy episodes
from fresh resets for every seed, and reports per seed how often the fingertip is on the
target, how fast the joints turn there and at the end, and the task's success. It is how the
whirling of the first reacher spec's policy was measured (docs/training.md).

    python benchmarks/reacher_policy.py RUN_DIR [RUN_DIR ...] --episodes 32 --out results/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import RESULTS, command, machine, write_json  # noqa: E402

import envs  # noqa: E402
from car_jax.experiment import make_env  # noqa: E402
from car_jax.rl import checkpoints, networks  # noqa: E402
from car_jax.rl.config import PPOConfig  # noqa: E402
from car_jax.rl.ppo import PPOTrainer  # noqa: E402
from car_jax.spec import RewardSpec, compile_spec  # noqa: E402
from envs.brax_tasks import REACH_THRESHOLD  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1] / "prompts" / "reference" / "reacher.state.py"


def load_policy(run: Path, task):
    """(trainer, seed-stacked params, seeds) of the last checkpoint in `run`."""
    meta_path = run / "run.json"
    if not meta_path.is_file():
        raise SystemExit(f"reacher_policy: {run} has no run.json (not a training folder)")
    meta = json.loads(meta_path.read_text())
    if meta.get("env") != task.id or any(meta.get("observation", {}).values()):
        raise SystemExit(
            f"reacher_policy: {run} trained {meta.get('env')!r} with observation "
            f"{meta.get('observation')}; expected reacher with the task's own observation"
        )
    config = PPOConfig.from_dict(meta["config"])
    # The checkpoint holds the code-reward wrapper's state (any spec: the state is the same).
    spec = RewardSpec.load(REFERENCE)
    compiled = compile_spec(spec, task.inputs("state"), task.constants("state"))
    env = make_env(task, compiled, "state", "car", progress_obs=False, carried_obs=False)
    trainer = PPOTrainer(config.replace(eval_episodes=0), env)
    seeds = meta["seeds"]
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    template = trainer.batched_init()(keys, config.hyper())
    manager = checkpoints.open_manager((run / "checkpoints").absolute())
    step = manager.latest_step()
    if step is None:
        raise SystemExit(f"reacher_policy: {run} holds no checkpoint")
    runner = checkpoints.restore(manager, step, template)
    return trainer, runner.params, seeds, step


def greedy_episodes(trainer, task, params, key, episodes: int):
    """Per episode and step: fingertip distance, joint speed; per episode: success."""

    def one(key):
        obs, state = task.reset(key, task.params)

        def step(carry, k):
            obs, state, solved = carry
            pi, _ = trainer.policy(params, obs[None])
            action = jnp.clip(networks.greedy_action("continuous", pi)[0], -1.0, 1.0)
            obs, state, *_ = task.step(k, state, action, task.params)
            v = task.observe(state, "state")
            speed = jnp.linalg.norm(v["joint_velocities"])
            return (obs, state, solved | task.success(state)), (v["distance"], speed)

        keys = jax.random.split(key, task.max_steps)
        (_, _, solved), (dist, speed) = jax.lax.scan(step, (obs, state, jnp.bool_(False)), keys)
        return dist, speed, solved

    return jax.jit(jax.vmap(one))(jax.random.split(key, episodes))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="training folders (run.json + checkpoints/)")
    p.add_argument("--episodes", type=int, default=32)
    p.add_argument("--out", default=str(RESULTS / "reacher_policy.json"))
    p.add_argument("--note", default="")
    args = p.parse_args()
    task = envs.make("reacher")
    rows = []
    for run in map(Path, args.runs):
        trainer, params, seeds, step = load_policy(run, task)
        for i, seed in enumerate(seeds):
            seed_params = jax.tree.map(lambda x, i=i: x[i], params)
            dist, speed, solved = map(
                np.asarray,
                greedy_episodes(trainer, task, seed_params, jax.random.key(7), args.episodes),
            )
            on = dist < REACH_THRESHOLD
            row = {
                "run": str(run),
                "update": step,
                "seed": seed,
                "greedy_success": float(solved.mean()),
                "steps_on_target": float(on.mean()),
                "joint_speed_on_target_median": float(np.median(speed[on])) if on.any() else None,
                "joint_speed_median": float(np.median(speed)),
                "joint_speed_final_median": float(np.median(speed[:, -1])),
                "distance_final_median": float(np.median(dist[:, -1])),
            }
            rows.append(row)
            print(
                f"{run} seed {seed}: success {row['greedy_success']:.0%}, on target "
                f"{row['steps_on_target']:.1%} of steps, joint speed median "
                f"{row['joint_speed_median']:.1f} rad/s (at the end "
                f"{row['joint_speed_final_median']:.1f})"
            )
    write_json(
        Path(args.out),
        {
            "benchmark": "reacher_policy",
            "what": (
                f"greedy episodes ({args.episodes} per seed, fresh resets from key 7, "
                f"{task.max_steps} steps) of the last checkpoint of each run: fingertip-target "
                f"distance and joint speed norm per step; on target = distance < "
                f"{REACH_THRESHOLD} m"
            ),
            "rows": rows,
            "note": args.note,
            "machine": machine(),
            "command": command(__file__),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
