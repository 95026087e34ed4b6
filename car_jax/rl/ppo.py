"""End-to-end jitted PPO: rollout, GAE and clipped updates in one compiled function.

`make_train(config, env)(key)` trains one seed; `jax.jit(jax.vmap(train))(keys)` trains many in one
program. The env batch of each seed is sharded over all `jax.devices()` (a 1-D mesh named "envs"),
one code path for 1 or many devices. `PPOTrainer` exposes the pieces (`init`, `run` for a chunk of
updates) for host loops such as `car_jax.rl.driver.train_run`.

Every `config.eval_interval` updates (and after the last) the policy is evaluated on fresh
episodes (`car_jax.rl.evaluate`): inside the compiled program by `run` (and `train`), or between
compiled chunks by `evaluate_runner` (the host driver's way, which is faster); both give the same
numbers. Those `eval_*` metrics are the ones to judge a run by. The `train_*` metrics summarise
the training episodes of the sampling policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from car_jax.errors import UserError
from car_jax.rl import losses, networks, obs_norm, resets
from car_jax.rl.config import PPOConfig, PPOHyper
from car_jax.rl.evaluate import Evaluator

ENV_AXIS = "envs"


class Transition(flax.struct.PyTreeNode):
    """One rollout step for the whole env batch (leaves [N, ...]; [T, N, ...] after the scan)."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    final_obs: jax.Array  # observation after the step, before auto-reset (truncation bootstrap)
    episode_return: jax.Array  # return of the episode so far, including this step
    episode_length: jax.Array
    info: dict[str, jax.Array]  # logged info entries ("success", "subtask_done", scalars)


class _LossBatch(flax.struct.PyTreeNode):
    """The rollout fields the PPO loss reads."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array


class EpisodeStats(flax.struct.PyTreeNode):
    """Running return and length of each env's current episode."""

    returns: jax.Array  # [N] float32
    lengths: jax.Array  # [N] int32


class RunnerState(flax.struct.PyTreeNode):
    """Everything one seed's training carries from update to update (and into a checkpoint)."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    episode: EpisodeStats
    key: jax.Array
    update: jax.Array  # int32 scalar: updates done so far
    hyper: PPOHyper
    eval_key: jax.Array  # evaluation's own stream: never split for training


class TrainOutput(flax.struct.PyTreeNode):
    """Result of `train(key)`: final network params and per-update metrics ([num_updates, ...])."""

    params: Any
    metrics: dict[str, jax.Array]


def env_mesh() -> Mesh:
    """A 1-D mesh over all devices, axis name "envs" (the env batch is split along it)."""
    return Mesh(np.asarray(jax.devices()), (ENV_AXIS,))


class PPOTrainer:
    """PPO for one env and config; `train(key)` is pure and jittable, `run` does a chunk of updates."""

    def __init__(
        self,
        config: PPOConfig,
        env: Any,
        network: nn.Module | Callable[[PPOConfig, Any], nn.Module] | None = None,
        progress_fn: Callable[[int, dict[str, np.ndarray]], None] | None = None,
        progress_every: int = 1,
    ):
        for attr in ("reset", "step", "params", "action", "obs_shape", "obs_dtype"):
            if not hasattr(env, attr):
                raise UserError(
                    f"PPO needs an env with the Task interface; {type(env).__name__} has no "
                    f"attribute {attr!r}"
                )
        if progress_every < 1:
            raise UserError(f"progress_every must be >= 1, got {progress_every}")
        self.config = config
        self.env = env
        self.action_kind = env.action.kind
        if network is None:
            network = networks.make_network(config, env)
        elif not isinstance(network, nn.Module):
            network = network(config, env)  # a factory (config, env) -> Module
        self.network = network
        self.progress_fn = progress_fn
        self.progress_every = int(progress_every)
        self.mesh = env_mesh()
        n_dev = self.mesh.devices.size
        if config.num_envs % n_dev:
            raise UserError(
                f"PPOConfig.num_envs={config.num_envs} must be divisible by the number of devices "
                f"({n_dev}), since the env batch is sharded over them"
            )
        if config.normalize_obs and not jnp.issubdtype(jnp.dtype(env.obs_dtype), jnp.floating):
            raise UserError(
                f"PPOConfig.normalize_obs needs float observations; {getattr(env, 'id', 'this env')}"
                f" has {env.obs_dtype} ones (integer grids are embedded, not standardised)"
            )
        self._info_keys = self._loggable_info()
        self.evaluator = None
        if config.eval_episodes > 0:
            self.evaluator = Evaluator(
                env,
                self.policy,
                self.action_kind,
                self._env_action,
                config.eval_episodes,
                self._success if "success" in self._info_keys else None,
                num_subtasks=self._info_keys.get("subtask_done", (0,))[0],
            )
        self._compiled: dict[str, Callable] = {}

    # --- helpers ------------------------------------------------------------------------------
    def _loggable_info(self) -> dict[str, tuple[int, ...]]:
        """Info entries to log, found by tracing one env step: success, subtask_done, scalars."""
        env = self.env

        def one_step(key):
            obs, state = env.reset(key, env.params)
            action = jnp.zeros((env.action.dim,), jnp.float32)
            if self.action_kind == "discrete":
                action = jnp.zeros((), jnp.int32)
            return env.step(key, state, action, env.params)

        out = jax.eval_shape(one_step, jax.random.key(0))
        self._success_from_env = False
        if "success" not in (out[5] or {}) and callable(getattr(env, "success", None)):
            try:  # NOTE: fall back to the Task's ground-truth success(state), if it has one.
                jax.eval_shape(env.success, out[1])
                self._success_from_env = True
            except NotImplementedError:
                pass
        obs, info = out[0], out[5]
        if tuple(obs.shape) != tuple(env.obs_shape):
            raise UserError(
                f"env observation shape {tuple(obs.shape)} differs from its declared obs_shape "
                f"{tuple(env.obs_shape)}"
            )
        keep = {}
        for name, leaf in (info or {}).items():
            if not hasattr(leaf, "shape"):
                continue
            if name == "subtask_done" and leaf.ndim == 1:
                keep[name] = tuple(leaf.shape)
            elif leaf.ndim == 0:
                keep[name] = ()
        if self._success_from_env:
            keep["success"] = ()
        return keep

    def _shard(self, tree: Any, axis: int = 0) -> Any:
        """Constrain every leaf's env axis (`axis`) to be split over the device mesh."""
        spec = PartitionSpec(*([None] * axis), ENV_AXIS)
        sharding = NamedSharding(self.mesh, spec)
        # NOTE: under vmap over seeds the seed axis is added unsharded by JAX's batching rule.
        return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)

    def _optimizer(self, hyper: PPOHyper) -> optax.GradientTransformation:
        # NOTE: the learning rate is applied by hand in `_update_minibatch` so it can be traced
        # and annealed from the runner's update count; the state layout does not depend on hyper.
        return optax.chain(
            optax.clip_by_global_norm(hyper.max_grad_norm),
            optax.scale_by_adam(eps=self.config.adam_eps),
        )

    def policy(self, params: Any, obs: jax.Array) -> tuple[Any, jax.Array]:
        """(policy distribution params, value) of `params` for a batch of raw observations.

        With `normalize_obs` the params are `{"net": ..., "obs_norm": ObsNorm}` and the
        observations are standardised here; otherwise this is `network.apply(params, obs)`.
        Training, evaluation and `benchmarks/reacher_policy.py` all call this one function.
        """
        if self.config.normalize_obs:
            return self.network.apply(params["net"], obs_norm.normalize(params["obs_norm"], obs))
        return self.network.apply(params, obs)

    def _env_action(self, action: jax.Array) -> jax.Array:
        if self.action_kind == "continuous":
            return jnp.clip(action, self.env.action.low, self.env.action.high)
        return action

    def _success(self, info: dict, state: Any) -> jax.Array:
        """Ground-truth success after a batched step: info["success"], else the Task's method."""
        if self._success_from_env:
            return jax.vmap(self.env.success)(state)
        return info["success"]

    def env_params(self, hyper: PPOHyper) -> Any:
        """The env params, with the learner's (traced) gamma bound where the env uses one."""
        bind = getattr(self.env, "with_discount", None)
        return self.env.params if bind is None else bind(self.env.params, hyper.gamma)

    # --- init ---------------------------------------------------------------------------------
    def init(self, key: jax.Array, hyper: PPOHyper | None = None) -> RunnerState:
        """Fresh runner state: network params, optimiser state, reset envs."""
        cfg, env = self.config, self.env
        hyper = cfg.hyper() if hyper is None else hyper
        # NOTE: folded from the seed key before the training splits, so turning evaluation on or
        # off leaves training bit for bit the same.
        eval_key = jax.random.fold_in(key, 0x5EED)
        key, k_net, k_reset = jax.random.split(key, 3)
        dummy = jnp.zeros((1, *env.obs_shape), jnp.dtype(env.obs_dtype))
        params = self.network.init(k_net, dummy)
        reset_keys = jax.random.split(k_reset, cfg.num_envs)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, env.params)
        if cfg.normalize_obs:  # the statistics start from the reset observations
            params = {"net": params, "obs_norm": obs_norm.init(obs)}
        opt_state = self._optimizer(hyper).init(params)
        episode = EpisodeStats(
            returns=jnp.zeros((cfg.num_envs,), jnp.float32),
            lengths=jnp.zeros((cfg.num_envs,), jnp.int32),
        )
        env_state, obs, episode = self._shard((env_state, obs, episode))
        return RunnerState(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            episode=episode,
            key=key,
            update=jnp.zeros((), jnp.int32),
            hyper=hyper,
            eval_key=eval_key,
        )

    # --- one update ---------------------------------------------------------------------------
    def update(self, runner: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        """Collect one rollout, compute advantages, run the PPO epochs; returns metrics too."""
        cfg, env = self.config, self.env
        hyper = runner.hyper
        env_params = self.env_params(hyper)

        # COLLECT TRAJECTORIES
        def env_step(carry, _):
            env_state, obs, episode, key, pool = carry
            key, k_act, k_step, k_reset = jax.random.split(key, 4)
            pi, value = self.policy(runner.params, obs)
            action = networks.sample_action(self.action_kind, pi, k_act)
            log_prob = networks.log_prob(self.action_kind, pi, action)
            step_keys = jax.random.split(k_step, cfg.num_envs)
            next_obs, next_state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(step_keys, env_state, self._env_action(action), env_params)
            reward = reward.astype(jnp.float32)
            done = jnp.logical_or(terminated, truncated)
            if self._success_from_env:
                info = {**info, "success": jax.vmap(env.success)(next_state)}

            # Auto-reset finished envs (the transition keeps the pre-reset observation): from the
            # chunk's reset pool, or (reset_mode="step") a fresh reset of every env every step.
            if pool is None:
                new_obs, env_state = resets.reset_every_step(
                    env, k_reset, done, next_obs, next_state
                )
            else:
                new_obs, env_state, pool = resets.take_resets(pool, done, next_obs, next_state)

            ep_return = episode.returns + reward
            ep_length = episode.lengths + 1
            episode = EpisodeStats(
                returns=jnp.where(done, 0.0, ep_return), lengths=jnp.where(done, 0, ep_length)
            )
            transition = Transition(
                obs=obs,
                action=action,
                log_prob=log_prob,
                value=value,
                reward=reward,
                terminated=terminated,
                done=done,
                final_obs=next_obs,
                episode_return=ep_return,
                episode_length=ep_length,
                info={k: info[k] for k in self._info_keys},
            )
            env_state, new_obs, episode = self._shard((env_state, new_obs, episode))
            return (env_state, new_obs, episode, key, pool), transition

        key, k_roll = jax.random.split(runner.key)
        pool = None
        if cfg.reset_mode == "pool":  # NOTE: static: drawn once per rollout, outside the scan
            k_roll, k_pool = jax.random.split(k_roll)
            pool = resets.draw_reset_pool(env, k_pool, cfg.pool_size)
        (env_state, obs, episode, _, pool), traj = jax.lax.scan(
            env_step,
            (runner.env_state, runner.obs, runner.episode, k_roll, pool),
            None,
            length=cfg.num_steps,
        )
        traj = self._shard(traj, axis=1)

        # CALCULATE ADVANTAGE
        if cfg.bootstrap_truncation:
            # V(s_{t+1}) before auto-reset: the bootstrap on truncation, = values[t+1] otherwise.
            flat_final = traj.final_obs.reshape((cfg.batch_size, *env.obs_shape))
            _, next_values = self.policy(runner.params, flat_final)
            next_values = next_values.reshape(cfg.num_steps, cfg.num_envs)
            terminated = traj.terminated
        else:
            # Truncation treated as termination; next value from the following step.
            _, last_value = self.policy(runner.params, obs)
            next_values = jnp.concatenate([traj.value[1:], last_value[None]], axis=0)
            terminated = traj.done
        advantages, targets = losses.compute_gae(
            traj.reward,
            traj.value,
            next_values,
            terminated,
            traj.done,
            hyper.gamma,
            hyper.gae_lambda,
        )

        # UPDATE NETWORK
        frac = 1.0
        if cfg.anneal_lr:
            frac = 1.0 - runner.update.astype(jnp.float32) / cfg.num_updates
        lr = hyper.lr * frac
        optimizer = self._optimizer(hyper)

        def update_minibatch(carry, minibatch):
            params, opt_state = carry
            batch, adv, tgt = minibatch
            grads, parts = jax.grad(losses.ppo_loss, has_aux=True)(
                params,
                self.policy,
                self.action_kind,
                batch,
                adv,
                tgt,
                hyper,
                cfg.clip_value,
                cfg.normalize_advantages,
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
            return (params, opt_state), parts

        def update_epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            perm = jax.random.permutation(k_perm, cfg.batch_size)
            # Only what the loss reads (obs, action, log_prob, value) is shuffled and batched.
            data = (
                _LossBatch(traj.obs, traj.action, traj.log_prob, traj.value),
                advantages,
                targets,
            )
            # NOTE: [T, N, ...] -> [T * N, ...] -> shuffled -> [num_minibatches, minibatch, ...].
            data = jax.tree.map(
                lambda x: jnp.take(x.reshape((cfg.batch_size, *x.shape[2:])), perm, axis=0).reshape(
                    (cfg.num_minibatches, cfg.minibatch_size, *x.shape[2:])
                ),
                data,
            )
            (params, opt_state), parts = jax.lax.scan(update_minibatch, (params, opt_state), data)
            return (params, opt_state, key), parts

        key, k_epochs = jax.random.split(key)
        (params, opt_state, _), parts = jax.lax.scan(
            update_epoch,
            (runner.params, runner.opt_state, k_epochs),
            None,
            length=cfg.update_epochs,
        )

        if cfg.normalize_obs:
            # NOTE: after the epochs, so the loss saw the statistics the rollout was collected
            # with (its log-probs stay those of the acting policy); the next rollout uses these.
            params = {**params, "obs_norm": obs_norm.update(params["obs_norm"], traj.obs)}
        runner = runner.replace(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            episode=episode,
            key=key,
            update=runner.update + 1,
        )
        metrics = {k: v.mean() for k, v in parts.items()}
        metrics.update(self._episode_metrics(traj))
        if pool is not None:
            metrics["reset_pool_shared"] = resets.shared_resets(pool).astype(jnp.float32)
        metrics["lr"] = lr
        metrics["update"] = runner.update
        metrics["env_steps"] = runner.update.astype(jnp.float32) * cfg.batch_size
        return runner, metrics

    def _episode_metrics(self, traj: Transition) -> dict[str, jax.Array]:
        """Means over the training episodes that ended in this rollout (NaN when none ended)."""
        done = traj.done.astype(jnp.float32)
        episodes = done.sum()
        denom = jnp.maximum(episodes, 1.0)

        def at_ends(x):
            x = x.astype(jnp.float32)
            d = done.reshape(done.shape + (1,) * (x.ndim - 2))
            mean = (x * d).sum(axis=(0, 1)) / denom
            return jnp.where(episodes > 0, mean, jnp.nan)

        out = {
            "train_episodes": episodes,
            "train_episode_return": at_ends(traj.episode_return),
            "train_episode_length": at_ends(traj.episode_length),
        }
        for name, shape in self._info_keys.items():
            if name == "success":
                out["train_success_rate"] = at_ends(traj.info[name])
            elif name == "subtask_done":
                out["train_subtask_rate"] = at_ends(traj.info[name])
            elif shape == ():
                out[f"mean_{name}"] = traj.info[name].astype(jnp.float32).mean()
        return out

    # --- many updates -------------------------------------------------------------------------
    def run(
        self,
        runner: RunnerState,
        num_updates: int,
        start: jax.Array | int = 0,
        evaluate: bool = True,
    ) -> tuple[RunnerState, dict[str, jax.Array]]:
        """`num_updates` updates in one `lax.scan`; metrics stacked to [num_updates, ...].

        `start` is the number of updates done before this call (the same for every seed); it
        places the evaluations and progress calls. Updates without an evaluation log NaN `eval_*`.
        With `evaluate=False` every update logs NaN `eval_*`: the caller evaluates the due
        updates itself with `evaluate_runner` (the driver does, between its compiled chunks).
        """

        # NOTE: num_updates is static (a Python int: it fixes the scan length); `start` is traced
        # but must not be batched over seeds, so that the conds below stay real branches.
        def body(runner, i):
            runner, metrics = self.update(runner)
            if self.evaluator is not None:
                done = i + 1
                env_params = self.env_params(runner.hyper)
                eval_key = jax.random.fold_in(runner.eval_key, done)
                if evaluate:
                    metrics.update(
                        jax.lax.cond(
                            self.config.eval_due(done),
                            lambda: self.evaluator(runner.params, env_params, eval_key),
                            lambda: self.evaluator.blank(runner.params, env_params, eval_key),
                        )
                    )
                else:
                    metrics.update(self.evaluator.blank(runner.params, env_params, eval_key))
            if self.progress_fn is not None:
                # NOTE: `i` comes from the scan's xs, so it stays unbatched under vmap over seeds
                # and the cond stays a real branch (the callback fires every progress_every only).
                jax.lax.cond(
                    (i + 1) % self.progress_every == 0,
                    lambda: jax.debug.callback(self._report, runner.update, metrics),
                    lambda: None,
                )
            return runner, metrics

        updates = jnp.asarray(start, jnp.int32) + jnp.arange(num_updates, dtype=jnp.int32)
        return jax.lax.scan(body, runner, updates)

    def evaluate_runner(self, runner: RunnerState) -> dict[str, jax.Array]:
        """The `eval_*` metrics `run` logs after `runner.update` updates, for this runner.

        The same episodes as the in-scan evaluation (the key is folded from the runner's own
        evaluation stream with its update count), so evaluating between chunks or inside one
        gives the same numbers.
        """
        if self.evaluator is None:
            raise UserError("evaluation is off (PPOConfig.eval_episodes=0)")
        eval_key = jax.random.fold_in(runner.eval_key, runner.update)
        return self.evaluator(runner.params, self.env_params(runner.hyper), eval_key)

    def evaluate(self, params: Any, key: jax.Array, hyper: PPOHyper | None = None) -> dict:
        """The `eval_*` metrics of `params` on fresh episodes drawn from `key` (jittable)."""
        if self.evaluator is None:
            raise UserError("evaluation is off (PPOConfig.eval_episodes=0)")
        hyper = self.config.hyper() if hyper is None else hyper
        return self.evaluator(params, self.env_params(hyper), key)

    def batched_init(self) -> Callable[[jax.Array, PPOHyper], RunnerState]:
        """`jit(vmap(init))` over seed keys (hyper shared by all seeds); cached on the trainer."""
        if "init" not in self._compiled:
            self._compiled["init"] = jax.jit(jax.vmap(self.init, in_axes=(0, None)))
        return self._compiled["init"]

    def batched_run(
        self, num_updates: int, evaluate: bool = True
    ) -> Callable[[RunnerState, jax.Array], tuple[RunnerState, dict]]:
        """`jit(vmap(run(., num_updates, start, evaluate)))` over a seed-stacked runner; cached.

        The compiled function takes `(runner, start)`, `start` an int32 scalar shared by all seeds.
        """
        name = f"run{num_updates}" + ("" if evaluate else "-noeval")
        if name not in self._compiled:
            self._compiled[name] = jax.jit(
                jax.vmap(lambda r, s: self.run(r, num_updates, s, evaluate), in_axes=(0, None))
            )
        return self._compiled[name]

    def batched_evaluate(self) -> Callable[[RunnerState], dict[str, jax.Array]]:
        """`jit(vmap(evaluate_runner))` over a seed-stacked runner; cached on the trainer."""
        if "evaluate" not in self._compiled:
            self._compiled["evaluate"] = jax.jit(jax.vmap(self.evaluate_runner))
        return self._compiled["evaluate"]

    def _report(self, update: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        self.progress_fn(int(np.asarray(update)), {k: np.asarray(v) for k, v in metrics.items()})

    def train(self, key: jax.Array, hyper: PPOHyper | None = None) -> TrainOutput:
        """Train one seed for `config.num_updates` updates; pure, so jit/vmap it freely."""
        runner = self.init(key, hyper)
        runner, metrics = self.run(runner, self.config.num_updates)
        return TrainOutput(params=runner.params, metrics=metrics)


def make_train(
    config: PPOConfig,
    env: Any,
    progress_fn: Callable[[int, dict[str, np.ndarray]], None] | None = None,
    progress_every: int = 1,
    network: nn.Module | Callable[[PPOConfig, Any], nn.Module] | None = None,
) -> Callable[..., TrainOutput]:
    """Build the pure `train(key, hyper=None) -> TrainOutput` for `env` (see `PPOTrainer.train`).

    `progress_fn(update, metrics)` is called on the host every `progress_every` updates (once per
    seed under vmap); `network` is a linen Module or a factory `(config, env) -> Module`.
    """
    return PPOTrainer(config, env, network, progress_fn, progress_every).train
