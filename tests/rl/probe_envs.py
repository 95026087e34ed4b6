"""Tiny probe environments with known answers, in the Task interface (gymnax-free)."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from envs.base import ActionSpace


class ProbeState(flax.struct.PyTreeNode):
    """Step count and a per-episode observation value."""

    t: jax.Array
    x: jax.Array


class Bandit:
    """One step; action 1 pays 1, action 0 pays 0; info marks success and one sub-task."""

    params = None
    max_steps = 1
    action = ActionSpace("discrete", n=2)
    obs_shape = (1,)
    obs_dtype = "float32"

    def reset(self, key, params):
        state = ProbeState(t=jnp.zeros((), jnp.int32), x=jnp.zeros((), jnp.float32))
        return jnp.zeros((1,), jnp.float32), state

    def step(self, key, state, action, params):
        good = action == 1
        info = {"success": good, "subtask_done": jnp.stack([good, jnp.zeros((), bool)])}
        return (
            jnp.zeros((1,), jnp.float32),
            state.replace(t=state.t + 1),
            good.astype(jnp.float32),
            jnp.ones((), bool),
            jnp.zeros((), bool),
            info,
        )


class ValueProbe:
    """One step; observation is +1 or -1 at random and the reward equals it: V(obs) = obs."""

    params = None
    max_steps = 1
    action = ActionSpace("discrete", n=1)
    obs_shape = (1,)
    obs_dtype = "float32"

    def reset(self, key, params):
        x = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        return x[None], ProbeState(t=jnp.zeros((), jnp.int32), x=x)

    def step(self, key, state, action, params):
        return (
            state.x[None],
            state.replace(t=state.t + 1),
            state.x,
            jnp.ones((), bool),
            jnp.zeros((), bool),
            {},
        )


class OffsetValueProbe(ValueProbe):
    """ValueProbe seen through a badly scaled sensor: obs = OFFSET + SCALE * (+-1), V = +-1."""

    OFFSET, SCALE = 50.0, 0.05

    def reset(self, key, params):
        obs, state = super().reset(key, params)
        return self.OFFSET + self.SCALE * obs, state

    def step(self, key, state, action, params):
        obs, *rest = super().step(key, state, action, params)
        return (self.OFFSET + self.SCALE * obs, *rest)


class TimeLimitProbe:
    """Reward 1 every step, never terminates, truncated after `max_steps`; obs is constant.

    With bootstrapping on truncation the value of the (constant) observation is 1 / (1 - gamma);
    treating truncation as termination pulls it down toward a finite-horizon average.
    """

    params = None
    max_steps = 8
    action = ActionSpace("discrete", n=1)
    obs_shape = (1,)
    obs_dtype = "float32"

    def reset(self, key, params):
        return jnp.ones((1,), jnp.float32), ProbeState(t=jnp.zeros((), jnp.int32), x=jnp.zeros(()))

    def step(self, key, state, action, params):
        t = state.t + 1
        return (
            jnp.ones((1,), jnp.float32),
            state.replace(t=t),
            jnp.ones((), jnp.float32),
            jnp.zeros((), bool),
            t >= self.max_steps,
            {},
        )


class ContinuousTarget:
    """One step, 2-D continuous action in [-1, 1]; reward -(a - target)^2 summed, target (0.5, -0.3)."""

    params = None
    max_steps = 1
    action = ActionSpace("continuous", dim=2, low=-1.0, high=1.0)
    obs_shape = (1,)
    obs_dtype = "float32"
    target = (0.5, -0.3)

    def reset(self, key, params):
        return jnp.zeros((1,), jnp.float32), ProbeState(t=jnp.zeros((), jnp.int32), x=jnp.zeros(()))

    def step(self, key, state, action, params):
        reward = -jnp.sum(jnp.square(action - jnp.asarray(self.target)))
        return (
            jnp.zeros((1,), jnp.float32),
            state.replace(t=state.t + 1),
            reward,
            jnp.ones((), bool),
            jnp.zeros((), bool),
            {},
        )


class GridBandit:
    """One step with a uint8 [3, 3, 2] grid observation; the right action is the centre tile id mod 3."""

    params = None
    max_steps = 1
    action = ActionSpace("discrete", n=3)
    obs_shape = (3, 3, 2)
    obs_dtype = "uint8"

    def reset(self, key, params):
        x = jax.random.randint(key, (), 0, 3)
        obs = jnp.zeros((3, 3, 2), jnp.uint8).at[1, 1, 0].set(x.astype(jnp.uint8) + 1)
        return obs, ProbeState(t=jnp.zeros((), jnp.int32), x=x.astype(jnp.float32))

    def step(self, key, state, action, params):
        good = action == state.x.astype(jnp.int32)
        return (
            jnp.zeros((3, 3, 2), jnp.uint8),
            state.replace(t=state.t + 1),
            good.astype(jnp.float32),
            jnp.ones((), bool),
            jnp.zeros((), bool),
            {"success": good},
        )


class Chain:
    """`length` steps in a row: action 1 moves on (the last one succeeds, reward 1), action 0
    ends the episode as a failure. The observation is the position, one-hot.

    The optimal policy is known: always 1, so a trained greedy policy succeeds in every episode
    in exactly `length` steps, while a sampling policy with p(1) = p succeeds with p ** length.
    """

    params = None
    length = 4
    max_steps = 4
    action = ActionSpace("discrete", n=2)
    obs_shape = (4,)
    obs_dtype = "float32"

    def _obs(self, t):
        return jax.nn.one_hot(jnp.minimum(t, self.length - 1), self.length)

    def reset(self, key, params):
        state = ProbeState(t=jnp.zeros((), jnp.int32), x=jnp.zeros((), jnp.float32))
        return self._obs(state.t), state

    def step(self, key, state, action, params):
        t = state.t + 1
        moved = action == 1
        success = moved & (t >= self.length)
        state = ProbeState(t=t, x=success.astype(jnp.float32))
        terminated = ~moved | success
        return self._obs(t), state, success.astype(jnp.float32), terminated, jnp.zeros((), bool), {}

    def success(self, state):
        return state.x > 0
