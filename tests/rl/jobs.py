"""Training jobs the rl tests run in subprocesses (a killed run; a 4-device run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

RESUME_SEEDS = (3, 7)
BANDIT_LRS = (1e-2, 1e-2, 0.0)  # three runs in one program; the last must not move
CHUNK = 3
CHECKPOINT_EVERY = 6
KILL_AFTER = 9  # updates; the last checkpoint before the kill is at update 6


def small_config():
    """The probe-task config shared by the PPO and sharding tests."""
    from car_jax.rl.config import PPOConfig

    return PPOConfig(
        num_envs=16,
        num_steps=4,
        total_timesteps=16 * 4 * 12,
        num_minibatches=2,
        update_epochs=4,
        lr=1e-2,
    )


def run_bandit(progress_fn=None):
    """jit(vmap(train)) over 3 seeds with traced learning rates BANDIT_LRS, on the bandit."""
    import jax
    import jax.numpy as jnp
    from probe_envs import Bandit

    from car_jax.rl.ppo import PPOTrainer

    cfg = small_config()
    trainer = PPOTrainer(cfg, Bandit(), progress_fn=progress_fn, progress_every=4)
    keys = jax.random.split(jax.random.key(0), len(BANDIT_LRS))
    hypers = jax.vmap(lambda lr: cfg.hyper(lr=lr))(jnp.asarray(BANDIT_LRS))
    out = jax.jit(jax.vmap(trainer.train))(keys, hypers)
    return trainer, keys, hypers, out


def resume_config():
    """A tiny bandit run: 12 updates in chunks of 3, evaluated every 3 (between the chunks)."""
    from car_jax.rl.config import PPOConfig

    return PPOConfig(
        num_envs=8,
        num_steps=4,
        total_timesteps=8 * 4 * 12,
        num_minibatches=2,
        update_epochs=2,
        lr=1e-2,
        eval_every=3,
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
    """A short grid-bandit run over 2 seeds, plus where the env batch lives; as numpy arrays.

    Short on purpose: once a policy is near-deterministic its advantages are near-constant, and
    normalising them magnifies float rounding, so bitwise-different reduction orders (1 vs 4
    devices) would then legitimately drift apart.
    """
    import jax
    from probe_envs import GridBandit

    from car_jax.rl.ppo import PPOTrainer

    cfg = small_config().replace(total_timesteps=16 * 4 * 6)
    trainer = PPOTrainer(cfg, GridBandit())
    keys = jax.random.split(jax.random.key(0), 2)
    runner = trainer.batched_init()(keys, cfg.hyper())
    sharding, obs_shape = runner.obs.sharding, runner.obs.shape
    out = jax.jit(jax.vmap(trainer.train))(keys)
    return to_arrays(out, sharding, obs_shape)


def to_arrays(out, sharding, obs_shape):
    """Metrics and params of a TrainOutput, and the obs sharding's device and row counts."""
    import jax
    import numpy as np

    arrays = {f"m_{k}": np.asarray(v) for k, v in out.metrics.items()}
    arrays.update({f"p_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(out.params))})
    arrays["obs_devices"] = np.asarray(len(sharding.device_set))
    arrays["obs_shard_rows"] = np.asarray(sharding.shard_shape(obs_shape)[1])
    return arrays


if __name__ == "__main__":
    job = sys.argv[1]
    if job == "killed":
        run_resumable(sys.argv[2], kill=True)
        sys.exit(0)  # not reached: the run is killed first
    if job == "sharded":
        import numpy as np

        np.savez(sys.argv[2], **run_sharded())
