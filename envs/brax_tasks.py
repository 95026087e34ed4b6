"""brax arm tasks: `reacher` and `pusher`, with a sparse success reward as the env reward.

Backend: `spring` for both (the fastest correct brax pipeline on CPU; about 50x faster than
`generalized` for reacher here). The env reward is 1.0 on every step in which the task is solved
and 0.0 otherwise; there is no termination, only the time limit (truncation).

- reacher: success = fingertip within REACH_THRESHOLD (0.02 m) of the target in the plane with
  the joints nearly still (speed norm < REST_SPEED = 0.5 rad/s).
  Expert: inverse kinematics of the two-link arm, then a PD controller on the joint angles.
- pusher: success = object centre within PUSH_THRESHOLD (0.05 m) of the goal in the table plane.
  No scripted expert yet (a 7-joint push is not a few lines): bring expert trajectories from a
  file. Its compile takes long on CPU: it is for accelerator runs and gets smoke tests only.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs import _draw
from envs.base import ActionSpace, InputField, Task
from envs.registry import register

# NOTE: importing brax imports mujoco.mjx, which prints "Failed to import warp: ..." (an optional
# GPU backend we do not use) on stdout; keep that out of the commands' output.
with contextlib.redirect_stdout(io.StringIO()):
    from brax import base
    from brax.envs.pusher import Pusher
    from brax.envs.reacher import Reacher

F32 = "float32"
REACH_THRESHOLD = 0.02
# Passing over the target while flailing is not reaching it: random torques do that in ~16% of
# episodes, so success also asks the arm to be nearly still.
REST_SPEED = 0.5  # rad/s, norm of the two joint velocities
PUSH_THRESHOLD = 0.05
BACKEND = "spring"


@struct.dataclass
class BraxTaskState:
    """A brax env state plus the step count."""

    brax: Any
    time: jax.Array  # int32 scalar


class BraxTask(Task):
    """Shared parts of the brax tasks: no auto-reset, sparse success reward, time limit."""

    family = "brax"
    modes = ("state",)
    obs_dtype = F32
    env: Any = None

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, BraxTaskState]:
        """Start an episode (brax `reset`)."""
        s = self.env.reset(key)
        return s.obs, BraxTaskState(s, jnp.int32(0))

    def step(self, key: jax.Array, state: BraxTaskState, action: jax.Array, params: Any):
        """One control step; reward = 1.0 while solved; truncated at `max_steps`."""
        action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
        s = self.env.step(state.brax, action)
        new = BraxTaskState(s, state.time + 1)
        solved = self.success(new)
        reward = solved.astype(jnp.float32)
        truncated = new.time >= self.max_steps
        return s.obs, new, reward, jnp.bool_(False), truncated, {"solved": solved}

    def time_input(self) -> InputField:
        """The step-count input shared by the brax tasks."""
        return InputField((), "int32", "steps taken so far in this episode", 0, self.max_steps)

    def observe(self, state: BraxTaskState, mode: str) -> dict[str, jax.Array]:
        """The named quantities of one state, with the dtypes of `inputs(mode)`."""
        spec = self.inputs(mode)
        values = {**self._values(state), "time": state.time}
        return {k: jnp.asarray(values[k], spec[k].dtype).reshape(spec[k].shape) for k in spec}

    def _values(self, state: BraxTaskState) -> dict[str, jax.Array]:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------
# reacher

_L1, _L2 = 0.1, 0.11  # shoulder->elbow, elbow->fingertip (m), from brax's reacher.xml


class ReacherTask(BraxTask):
    """reacher: a two-link planar arm moves its fingertip onto a target."""

    id = "reacher"
    action = ActionSpace(
        "continuous", dim=2, low=-1.0, high=1.0, names=("shoulder_torque", "elbow_torque")
    )
    obs_shape = (11,)
    max_steps = 100

    def __init__(self) -> None:
        self.env = Reacher(backend=BACKEND)
        self.params = None
        self.expert = _reacher_expert

    def inputs(self, mode: str) -> dict[str, InputField]:
        """Fingertip, target, joint angles and velocities, distance, time."""
        self.check_mode(mode)
        return {
            "fingertip": InputField(
                (2,), F32, "fingertip x, y in the plane (m), arm base at 0, 0", -0.22, 0.22
            ),
            "target": InputField((2,), F32, "target x, y in the plane (m)", -0.21, 0.21),
            "elbow": InputField((2,), F32, "elbow joint x, y in the plane (m)", -0.11, 0.11),
            "joint_angles": InputField(
                (2,), F32, "shoulder angle (rad, unbounded) and elbow angle (rad)"
            ),
            "joint_velocities": InputField(
                (2,), F32, "shoulder and elbow angular velocities (rad/s)"
            ),
            "distance": InputField((), F32, "fingertip-to-target distance (m)", 0.0, 0.45),
            "time": self.time_input(),
        }

    def _values(self, state: BraxTaskState) -> dict[str, jax.Array]:
        q, qd = state.brax.pipeline_state.q, state.brax.pipeline_state.qd
        elbow, tip, target = _reacher_bodies(state.brax.pipeline_state)
        return {
            "fingertip": tip,
            "target": target,
            "elbow": elbow,
            "joint_angles": q[:2],
            "joint_velocities": qd[:2],
            "distance": jnp.linalg.norm(tip - target),
        }

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """Success threshold and link lengths."""
        self.check_mode(mode)
        return {
            "REACH_THRESHOLD": REACH_THRESHOLD,
            "REST_SPEED": REST_SPEED,
            "LINK1_LENGTH": _L1,
            "LINK2_LENGTH": _L2,
            "MAX_STEPS": self.max_steps,
        }

    def success(self, state: BraxTaskState) -> jax.Array:
        """The fingertip rests on the target: within REACH_THRESHOLD, joints slower than REST_SPEED."""
        qd = state.brax.pipeline_state.qd
        _, tip, target = _reacher_bodies(state.brax.pipeline_state)
        near = jnp.linalg.norm(tip - target) < REACH_THRESHOLD
        still = jnp.linalg.norm(qd[:2]) < REST_SPEED
        return (near & still).reshape(())

    def render(self, state: BraxTaskState) -> np.ndarray:
        """Top-down view: arena, arm links, fingertip and target."""
        elbow, tip, target = (np.asarray(p) for p in _reacher_bodies(state.brax.pipeline_state))
        w = h = 400
        img, draw = _draw.canvas(w, h)
        scale = (w - 60) / 0.6

        def px(p):
            return (w / 2 + p[0] * scale, h / 2 + 15 - p[1] * scale)

        a, b = px((-0.3, 0.3)), px((0.3, -0.3))
        draw.rectangle((*a, *b), fill=(235, 235, 235), outline=_draw.INK, width=3)
        r = REACH_THRESHOLD * scale
        tx, ty = px(target)
        draw.ellipse((tx - r, ty - r, tx + r, ty + r), outline=(210, 40, 40), width=2)
        _draw.disc(draw, (tx, ty), 6, (210, 40, 40))
        draw.line((*px((0, 0)), *px(elbow)), fill=(70, 110, 200), width=8)
        draw.line((*px(elbow), *px(tip)), fill=(70, 160, 90), width=8)
        _draw.disc(draw, px((0, 0)), 6, (60, 60, 60))
        _draw.disc(draw, px(elbow), 5, (240, 200, 0))
        _draw.disc(draw, px(tip), 5, (30, 30, 30))
        d = float(np.linalg.norm(tip - target))
        _draw.caption(
            draw,
            (8, 4),
            f"reacher (top view)  step {int(state.time)}/{self.max_steps}  distance {d:.3f} m",
        )
        _draw.caption(
            draw, (8, 22), "goal: black fingertip inside the red circle around the target"
        )
        return _draw.to_array(img)

    def describe(self) -> str:
        """What the task, actions and inputs mean."""
        return (
            "A two-link arm on a table, seen from above, is fixed at the centre. The task is to put its "
            "fingertip on the red target (distance < REACH_THRESHOLD) and hold it still. Actions: two torques in [-1, 1] "
            "for the shoulder and elbow joints. Inputs: fingertip, target, elbow (x, y in metres), "
            "joint_angles, joint_velocities, distance, time."
        )


def _reacher_bodies(ps: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Elbow, fingertip and target x, y from brax's body transforms (as brax's own observation)."""
    tip = ps.x.take(1).do(base.Transform.create(pos=jnp.array([_L2, 0.0, 0.0]))).pos
    return ps.x.pos[1, :2], tip[:2], ps.x.pos[2, :2]


def _wrap(a: jax.Array) -> jax.Array:
    return jnp.mod(a + jnp.pi, 2 * jnp.pi) - jnp.pi


def _reacher_expert(key: jax.Array, state: BraxTaskState, params: Any) -> jax.Array:
    """Inverse kinematics to joint angles (elbow bend on the current side), then PD control."""
    q, qd = state.brax.pipeline_state.q, state.brax.pipeline_state.qd
    t = q[2:4]
    d2 = jnp.sum(t * t)
    cos2 = jnp.clip((d2 - _L1**2 - _L2**2) / (2 * _L1 * _L2), -1.0, 1.0)
    side = jnp.where(q[1] >= 0, 1.0, -1.0)
    q2 = jnp.clip(side * jnp.arccos(cos2), -3.0, 3.0)  # the elbow joint's limits
    q1 = jnp.arctan2(t[1], t[0]) - jnp.arctan2(_L2 * jnp.sin(q2), _L1 + _L2 * jnp.cos(q2))
    err = jnp.stack([_wrap(q1 - q[0]), q2 - q[1]])
    u = 4.0 * err - 1.2 * qd[:2]  # measured: 256/256 seeds rest on the target
    return jnp.clip(u, -1.0, 1.0).astype(jnp.float32)


# ------------------------------------------------------------------------------------------------
# pusher


class PusherTask(BraxTask):
    """pusher: a 7-joint arm pushes a cylinder on a table onto a goal spot."""

    id = "pusher"
    action = ActionSpace("continuous", dim=7, low=-1.0, high=1.0)
    obs_shape = (23,)
    max_steps = 100

    def __init__(self) -> None:
        self.env = Pusher(backend=BACKEND)
        self.params = None
        self.expert = None

    def inputs(self, mode: str) -> dict[str, InputField]:
        """Fingertip, object and goal positions, joint angles/velocities, distance, time."""
        self.check_mode(mode)
        return {
            "fingertip": InputField((3,), F32, "gripper tip x, y, z (m)"),
            "object": InputField((3,), F32, "object (cylinder) centre x, y, z (m)"),
            "goal": InputField((3,), F32, "goal spot x, y, z (m)"),
            "joint_angles": InputField((7,), F32, "the arm's 7 joint angles (rad)"),
            "joint_velocities": InputField(
                (7,), F32, "the arm's 7 joint angular velocities (rad/s)"
            ),
            "object_to_goal": InputField(
                (), F32, "object-to-goal distance in the table plane (m)", 0.0, None
            ),
            "fingertip_to_object": InputField(
                (), F32, "fingertip-to-object distance (m)", 0.0, None
            ),
            "time": self.time_input(),
        }

    def _points(self, state: BraxTaskState) -> tuple[jax.Array, jax.Array, jax.Array]:
        obs = state.brax.obs
        return obs[14:17], obs[17:20], obs[20:23]

    def _values(self, state: BraxTaskState) -> dict[str, jax.Array]:
        tip, obj, goal = self._points(state)
        ps = state.brax.pipeline_state
        return {
            "fingertip": tip,
            "object": obj,
            "goal": goal,
            "joint_angles": ps.q[:7],
            "joint_velocities": ps.qd[:7],
            "object_to_goal": jnp.linalg.norm(obj[:2] - goal[:2]),
            "fingertip_to_object": jnp.linalg.norm(tip - obj),
        }

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """Success threshold."""
        self.check_mode(mode)
        return {"PUSH_THRESHOLD": PUSH_THRESHOLD, "MAX_STEPS": self.max_steps}

    def success(self, state: BraxTaskState) -> jax.Array:
        """The object is within PUSH_THRESHOLD of the goal in the table plane."""
        _, obj, goal = self._points(state)
        return (jnp.linalg.norm(obj[:2] - goal[:2]) < PUSH_THRESHOLD).reshape(())

    def render(self, state: BraxTaskState) -> np.ndarray:
        """Top-down view of the table: goal spot, object and the arm's fingertip."""
        tip, obj, goal = (np.asarray(p) for p in self._points(state))
        w = h = 400
        img, draw = _draw.canvas(w, h)
        scale = (w - 60) / 1.6
        c = np.array([0.0, -0.3])

        def px(p):
            return (w / 2 + (p[0] - c[0]) * scale, h / 2 + 15 - (p[1] - c[1]) * scale)

        draw.rectangle(
            (*px((-0.8, 0.5)), *px((0.8, -1.1))), fill=(235, 235, 235), outline=_draw.INK, width=2
        )
        r = PUSH_THRESHOLD * scale
        gx, gy = px(goal)
        draw.ellipse(
            (gx - r, gy - r, gx + r, gy + r), fill=(250, 200, 200), outline=(210, 40, 40), width=2
        )
        _draw.disc(draw, px(obj), 0.05 * scale, (70, 110, 200))
        shoulder = px((0.0, -0.6))
        draw.line((*shoulder, *px(tip)), fill=(120, 120, 120), width=6)
        _draw.disc(draw, shoulder, 10, (60, 60, 60))
        _draw.disc(draw, px(tip), 6, (30, 30, 30))
        d = float(np.linalg.norm(obj[:2] - goal[:2]))
        _draw.caption(
            draw,
            (8, 4),
            f"pusher (top view)  step {int(state.time)}/{self.max_steps}  object-goal {d:.3f} m",
        )
        _draw.caption(draw, (8, 22), "goal: push the blue object into the red goal circle")
        return _draw.to_array(img)

    def describe(self) -> str:
        """What the task, actions and inputs mean."""
        return (
            "A 7-joint robot arm stands at a table with a blue cylinder and a red goal spot. The task "
            "is to push the cylinder onto the goal (object_to_goal < PUSH_THRESHOLD). Actions: 7 joint "
            "torques in [-1, 1]. Inputs: fingertip, object, goal (x, y, z in metres), joint_angles, "
            "joint_velocities, object_to_goal, fingertip_to_object, time."
        )


register("reacher", ReacherTask)
register("pusher", PusherTask)
