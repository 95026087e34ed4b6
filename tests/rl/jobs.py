"""Training jobs the rl tests run in subprocesses (a killed run; a 4-device run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

RESUME_SEEDS = (3, 7)
CHUNK = 3
CHECKPOINT_EVERY = 6
KILL_AFTER = 9  # updates; the last checkpoint before the kill is at update 6


def resume_config():
    """A tiny bandit run: 12 updates in chunks of 3."""
    from car_jax.rl.config import PPOConfig

    return PPOConfig(
        num_envs=8,
        num_steps=4,
        total_timesteps=8 * 4 * 12,
        num_minibatches=2,
        update_epochs=2,
        lr=1e-2,
    )


def run_resumable(out_dir, resume=False, kill=False, trainer=None):
    """Train the bandit with `train_run`; with `kill`, die hard after update KILL_AFTER."""
    from probe_envs import Bandit

    from car_jax.rl.driver import train_run

    def die(update, summary):
        if kill and update >= KILL_AFTER:
            os._exit(17)  # no cleanup, no flush beyond what the driver already did

    return train_run(
        resume_config(),
        Bandit(),
        RESUME_SEEDS,
        out_dir,
        resume=resume,
        chunk_updates=CHUNK,
        checkpoint_every=CHECKPOINT_EVERY,
        progress=False,
        chunk_callback=die,
        trainer=trainer,
    )


def run_sharded():
    """jit(vmap(init)), jit(vmap(run)) over 2 seeds on the bandit; metrics, params, obs sharding."""
    import jax
    import numpy as np
    from probe_envs import Bandit

    from car_jax.rl.config import PPOConfig
    from car_jax.rl.ppo import PPOTrainer

    cfg = PPOConfig(
        num_envs=8,
        num_steps=4,
        total_timesteps=8 * 4 * 6,
        num_minibatches=2,
        update_epochs=2,
        lr=1e-2,
    )
    trainer = PPOTrainer(cfg, Bandit())
    keys = jax.random.split(jax.random.key(0), 2)
    runner = trainer.batched_init()(keys, cfg.hyper())
    sharding = runner.obs.sharding
    runner, metrics = trainer.batched_run(cfg.num_updates)(runner)
    arrays = {f"m_{k}": np.asarray(v) for k, v in metrics.items()}
    arrays.update({f"p_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(runner.params))})
    arrays["obs_devices"] = np.asarray(len(sharding.device_set))
    arrays["obs_shard_rows"] = np.asarray(sharding.shard_shape(runner.obs.shape)[1])
    return arrays


if __name__ == "__main__":
    job = sys.argv[1]
    if job == "killed":
        run_resumable(sys.argv[2], kill=True)
        sys.exit(0)  # not reached: the run is killed first
    if job == "sharded":
        import numpy as np

        np.savez(sys.argv[2], **run_sharded())
