"""gymnax classic control as Tasks: MountainCar-v0, MountainCarContinuous-v0, CartPole-v1, Acrobot-v1.

Program inputs ("state" mode) are named physical quantities (scalars); `time` is the step count.
Success (ground truth): MountainCar reaches the flag; CartPole keeps the pole up until the time
limit; Acrobot raises the tip above the goal line. Experts: energy pumping (MountainCar, Acrobot)
and a PD controller (CartPole), all jittable and vmappable.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments.classic_control.acrobot import Acrobot
from gymnax.environments.classic_control.cartpole import CartPole
from gymnax.environments.classic_control.continuous_mountain_car import ContinuousMountainCar
from gymnax.environments.classic_control.mountain_car import MountainCar

from envs import _draw
from envs._gymnax import GymnaxTask, GymnaxTaskState
from envs.base import ActionSpace, InputField
from envs.registry import register

F32 = "float32"


class ClassicTask(GymnaxTask):
    """Shared parts of the classic-control tasks: one `state` mode of named scalars."""

    family = "classic"
    modes = ("state",)
    obs_dtype = F32

    def _fields(self) -> dict[str, InputField]:
        raise NotImplementedError

    def _values(self, state: GymnaxTaskState) -> dict[str, jax.Array]:
        raise NotImplementedError

    def inputs(self, mode: str) -> dict[str, InputField]:
        """Named physical quantities plus the step count `time`."""
        self.check_mode(mode)
        fields = dict(self._fields())
        fields["time"] = InputField(
            (), "int32", "steps taken so far in this episode", 0, self.max_steps
        )
        return fields

    def observe(self, state: GymnaxTaskState, mode: str) -> dict[str, jax.Array]:
        """The named quantities of one state, with the dtypes of `inputs(mode)`."""
        spec = self.inputs(mode)
        values = dict(self._values(state))
        values["time"] = self.time(state)
        return {k: jnp.asarray(values[k], spec[k].dtype).reshape(spec[k].shape) for k in spec}


# ------------------------------------------------------------------------------------------------
# MountainCar (discrete and continuous)


def _hill_height(x):
    return 0.45 * np.sin(3.0 * x) + 0.55


def _render_mountain_car(position: float, velocity: float, goal: float, title: str) -> np.ndarray:
    w, h = 480, 320
    img, draw = _draw.canvas(w, h)
    lo, hi = -1.2, 0.6

    def to_px(x, y):
        return (20 + (x - lo) / (hi - lo) * (w - 40), h - 40 - y * (h - 110))

    xs = np.linspace(lo, hi, 200)
    pts = [to_px(x, _hill_height(x)) for x in xs]
    draw.polygon([*pts, (w - 20, h - 20), (20, h - 20)], fill=(200, 185, 150))
    draw.line(pts, fill=(120, 90, 50), width=3)
    # Goal flag.
    fx, fy = to_px(goal, _hill_height(goal))
    draw.line((fx, fy, fx, fy - 50), fill=_draw.INK, width=3)
    draw.polygon([(fx, fy - 50), (fx + 30, fy - 42), (fx, fy - 34)], fill=(240, 200, 0))
    # Car: a red body tilted along the slope, wheels under it.
    cx, cy = to_px(position, _hill_height(position))
    slope = math.atan(1.35 * math.cos(3.0 * position) * (h - 110) / (w - 40) * (hi - lo))
    dx, dy = math.cos(slope), -math.sin(slope)
    nx, ny = -dy, dx  # normal pointing down in screen coordinates
    corners = [(-18, 4), (18, 4), (18, -14), (-18, -14)]
    body = [(cx + a * dx + b * (-nx), cy + a * dy + b * (-ny)) for a, b in corners]
    draw.polygon(body, fill=(210, 40, 40), outline=_draw.INK)
    for a in (-11, 11):
        _draw.disc(draw, (cx + a * dx + 5 * nx, cy + a * dy + 5 * ny), 5, (60, 60, 60))
    _draw.caption(draw, (10, 8), f"{title}  position={position:+.3f}  velocity={velocity:+.4f}")
    _draw.caption(draw, (10, 28), f"goal: reach the flag at position >= {goal}")
    return _draw.to_array(img)


class MountainCarTask(ClassicTask):
    """MountainCar-v0: three discrete pushes (left, none, right); reach the flag at x >= 0.5."""

    id = "MountainCar-v0"
    action = ActionSpace("discrete", n=3, names=("push_left", "no_push", "push_right"))
    obs_shape = (2,)

    def __init__(self) -> None:
        self.env = MountainCar()
        self.params = self.env.default_params
        super().__init__()
        self.expert = _mountain_car_expert_discrete

    def _fields(self) -> dict[str, InputField]:
        p = self.params
        return {
            "position": InputField(
                (), F32, "car x position along the valley (m)", p.min_position, p.max_position
            ),
            "velocity": InputField(
                (), F32, "car x velocity (m/step), positive = rightwards", -p.max_speed, p.max_speed
            ),
            "height": InputField((), F32, "car height on the hill, 0.45*sin(3x)+0.55", 0.1, 1.0),
        }

    def _values(self, state: GymnaxTaskState) -> dict[str, jax.Array]:
        x = state.env.position
        return {
            "position": x,
            "velocity": state.env.velocity,
            "height": 0.45 * jnp.sin(3.0 * x) + 0.55,
        }

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """Goal position and the track limits."""
        self.check_mode(mode)
        p = self.params
        return {
            "GOAL_POSITION": float(p.goal_position),
            "MIN_POSITION": float(p.min_position),
            "MAX_POSITION": float(p.max_position),
            "MAX_SPEED": float(p.max_speed),
            "VALLEY_POSITION": -math.pi / 6,
            "MAX_STEPS": self.max_steps,
        }

    def success(self, state: GymnaxTaskState) -> jax.Array:
        """The car reached the flag (the env's own termination condition)."""
        return jnp.asarray(self.env.is_terminated(state.env, self.params), bool).reshape(())

    def render(self, state: GymnaxTaskState) -> np.ndarray:
        """The car on the hill, the flag at the goal."""
        return _render_mountain_car(
            float(state.env.position),
            float(state.env.velocity),
            float(self.params.goal_position),
            self.id,
        )

    def describe(self) -> str:
        """What the task, actions and inputs mean."""
        return (
            "An underpowered car sits in a valley between two hills and must reach the flag on top of "
            "the right hill (position >= GOAL_POSITION). The engine is too weak to drive straight up: "
            "the car must swing back and forth to build momentum. Actions: 0 push left, 1 no push, "
            "2 push right. Inputs: position, velocity, height, time."
        )


class MountainCarContinuousTask(MountainCarTask):
    """MountainCarContinuous-v0: one continuous force in [-1, 1]; reach the flag at x >= 0.45."""

    id = "MountainCarContinuous-v0"
    action = ActionSpace("continuous", dim=1, low=-1.0, high=1.0, names=("force",))

    def __init__(self) -> None:
        self.env = ContinuousMountainCar()
        self.params = self.env.default_params
        GymnaxTask.__init__(self)
        self.expert = _mountain_car_expert_continuous

    def describe(self) -> str:
        """What the task, actions and inputs mean."""
        return (
            "An underpowered car sits in a valley between two hills and must reach the flag on top of "
            "the right hill (position >= GOAL_POSITION). The engine is too weak to drive straight up: "
            "the car must swing back and forth to build momentum. Action: one force in [-1, 1] "
            "(positive = push right). Inputs: position, velocity, height, time."
        )


def _mountain_car_expert_discrete(key: jax.Array, state: GymnaxTaskState, params: Any) -> jax.Array:
    """Energy pumping: push in the direction of motion (right when at rest)."""
    return jnp.where(state.env.velocity >= 0.0, 2, 0).astype(jnp.int32)


def _mountain_car_expert_continuous(
    key: jax.Array, state: GymnaxTaskState, params: Any
) -> jax.Array:
    """Energy pumping with full force in the direction of motion."""
    return jnp.where(state.env.velocity >= 0.0, 1.0, -1.0).astype(jnp.float32).reshape(1)


# ------------------------------------------------------------------------------------------------
# CartPole


class CartPoleTask(ClassicTask):
    """CartPole-v1: push the cart left or right to keep the pole up for 500 steps."""

    id = "CartPole-v1"
    action = ActionSpace("discrete", n=2, names=("push_left", "push_right"))
    obs_shape = (4,)

    def __init__(self) -> None:
        self.env = CartPole()
        self.params = self.env.default_params
        super().__init__()
        self.expert = _cartpole_expert

    def _fields(self) -> dict[str, InputField]:
        return {
            "cart_position": InputField((), F32, "cart x position (m), 0 = track centre"),
            "cart_velocity": InputField((), F32, "cart x velocity (m/s)"),
            "pole_angle": InputField(
                (), F32, "pole angle from vertical (rad), positive = leaning right"
            ),
            "pole_angular_velocity": InputField((), F32, "pole angular velocity (rad/s)"),
        }

    def _values(self, state: GymnaxTaskState) -> dict[str, jax.Array]:
        s = state.env
        return {
            "cart_position": s.x,
            "cart_velocity": s.x_dot,
            "pole_angle": s.theta,
            "pole_angular_velocity": s.theta_dot,
        }

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """Failure thresholds and the episode length."""
        self.check_mode(mode)
        return {
            "X_THRESHOLD": float(self.params.x_threshold),
            "ANGLE_THRESHOLD": float(self.params.theta_threshold_radians),
            "MAX_STEPS": self.max_steps,
        }

    def success(self, state: GymnaxTaskState) -> jax.Array:
        """The pole is still up (not terminated) when the time limit is reached."""
        up = ~jnp.asarray(self.env.is_terminated(state.env, self.params), bool)
        return (up & (self.time(state) >= self.max_steps)).reshape(())

    def render(self, state: GymnaxTaskState) -> np.ndarray:
        """Cart on a track with the pole; dashed limits at +-X_THRESHOLD."""
        s = state.env
        x, theta = float(s.x), float(s.theta)
        w, h = 480, 320
        img, draw = _draw.canvas(w, h)
        scale = (w - 40) / (2 * 2.4 + 0.4)
        ground = h - 70

        def px(xw):
            return w / 2 + xw * scale

        draw.line((10, ground, w - 10, ground), fill=_draw.INK, width=2)
        for lim in (-2.4, 2.4):
            for yy in range(ground - 150, ground, 12):
                draw.line((px(lim), yy, px(lim), yy + 6), fill=(200, 60, 60), width=2)
        cx = px(x)
        draw.rectangle(
            (cx - 30, ground - 30, cx + 30, ground - 6), fill=(70, 110, 200), outline=_draw.INK
        )
        length = 2 * float(self.params.length) * scale
        top = (cx + length * math.sin(theta), ground - 30 - length * math.cos(theta))
        draw.line((cx, ground - 30, *top), fill=(200, 130, 40), width=8)
        _draw.disc(draw, (cx, ground - 30), 5, (60, 60, 60))
        t = int(self.time(state))
        _draw.caption(
            draw,
            (10, 8),
            f"{self.id}  step {t}/{self.max_steps}  x={x:+.2f}  angle={theta:+.3f} rad",
        )
        _draw.caption(
            draw, (10, 28), "goal: keep the pole upright and the cart between the red limits"
        )
        return _draw.to_array(img)

    def describe(self) -> str:
        """What the task, actions and inputs mean."""
        return (
            "A pole is hinged on a cart that moves along a track. The episode fails when the pole leans "
            "more than ANGLE_THRESHOLD from vertical or the cart leaves [-X_THRESHOLD, X_THRESHOLD]; "
            "the task is to keep it up for MAX_STEPS steps. Actions: 0 push left, 1 push right. "
            "Inputs: cart_position, cart_velocity, pole_angle, pole_angular_velocity, time."
        )


def _cartpole_expert(key: jax.Array, state: GymnaxTaskState, params: Any) -> jax.Array:
    """PD control of the pole angle, with a weak pull of the cart back to the centre."""
    s = state.env
    u = 10.0 * s.theta + 2.0 * s.theta_dot + 0.5 * s.x + 1.0 * s.x_dot
    return (u > 0.0).astype(jnp.int32)


# ------------------------------------------------------------------------------------------------
# Acrobot


class AcrobotTask(ClassicTask):
    """Acrobot-v1: torque on the elbow joint swings a two-link chain until its tip passes a line."""

    id = "Acrobot-v1"
    action = ActionSpace("discrete", n=3, names=("torque_-1", "torque_0", "torque_+1"))
    obs_shape = (6,)

    def __init__(self) -> None:
        self.env = Acrobot()
        self.params = self.env.default_params
        super().__init__()
        self.expert = _acrobot_expert

    def _fields(self) -> dict[str, InputField]:
        p = self.params
        pi = math.pi
        return {
            "angle1": InputField(
                (), F32, "shoulder angle (rad), 0 = first link hanging down", -pi, pi
            ),
            "angle2": InputField((), F32, "elbow angle relative to the first link (rad)", -pi, pi),
            "angular_velocity1": InputField(
                (),
                F32,
                "shoulder angular velocity (rad/s)",
                -float(p.max_vel_1),
                float(p.max_vel_1),
            ),
            "angular_velocity2": InputField(
                (), F32, "elbow angular velocity (rad/s)", -float(p.max_vel_2), float(p.max_vel_2)
            ),
            "elbow_height": InputField(
                (), F32, "height of the elbow above the pivot (m), -cos(angle1)", -1.0, 1.0
            ),
            "tip_height": InputField((), F32, "height of the tip above the pivot (m)", -2.0, 2.0),
        }

    def _values(self, state: GymnaxTaskState) -> dict[str, jax.Array]:
        s = state.env
        a1, a2 = s.joint_angle1, s.joint_angle2
        return {
            "angle1": a1,
            "angle2": a2,
            "angular_velocity1": s.velocity_1,
            "angular_velocity2": s.velocity_2,
            "elbow_height": -jnp.cos(a1),
            "tip_height": -jnp.cos(a1) - jnp.cos(a1 + a2),
        }

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """The goal line height and link lengths."""
        self.check_mode(mode)
        return {"GOAL_HEIGHT": 1.0, "LINK_LENGTH": 1.0, "MAX_STEPS": self.max_steps}

    def success(self, state: GymnaxTaskState) -> jax.Array:
        """The tip is above the goal line (the env's own termination condition)."""
        return jnp.asarray(self.env.is_terminated(state.env, self.params), bool).reshape(())

    def render(self, state: GymnaxTaskState) -> np.ndarray:
        """The two links hanging from the pivot and the goal line above."""
        s = state.env
        a1, a2 = float(s.joint_angle1), float(s.joint_angle2)
        w = h = 400
        img, draw = _draw.canvas(w, h)
        scale = 80.0
        ox, oy = w / 2, h / 2 + 10

        def px(x, y):
            return (ox + x * scale, oy - y * scale)

        gy = px(0, 1.0)[1]
        draw.line((20, gy, w - 20, gy), fill=(200, 60, 60), width=2)
        _draw.caption(draw, (22, gy - 20), "goal line (tip height 1.0)")
        p1 = (math.sin(a1), -math.cos(a1))
        p2 = (p1[0] + math.sin(a1 + a2), p1[1] - math.cos(a1 + a2))
        draw.line((*px(0, 0), *px(*p1)), fill=(70, 110, 200), width=10)
        draw.line((*px(*p1), *px(*p2)), fill=(70, 160, 90), width=10)
        _draw.disc(draw, px(0, 0), 6, (60, 60, 60))
        _draw.disc(draw, px(*p1), 6, (240, 200, 0))
        _draw.disc(draw, px(*p2), 6, (210, 40, 40))
        t = int(self.time(state))
        _draw.caption(
            draw, (10, 8), f"{self.id}  step {t}/{self.max_steps}  tip height={p2[1]:+.2f}"
        )
        return _draw.to_array(img)

    def describe(self) -> str:
        """What the task, actions and inputs mean."""
        return (
            "Two links hang from a fixed pivot; only the elbow joint is actuated. The task is to swing "
            "the chain so its free tip rises above the goal line (tip_height > GOAL_HEIGHT). "
            "Actions: 0 torque -1, 1 no torque, 2 torque +1 on the elbow. Inputs: angle1, angle2, "
            "angular_velocity1, angular_velocity2, elbow_height, tip_height, time."
        )


def _acrobot_expert(key: jax.Array, state: GymnaxTaskState, params: Any) -> jax.Array:
    """Energy pumping: torque the elbow against the shoulder's swing, which feeds the swing.

    Measured: 100% of 512 seeds above the line, within 234 steps at most (limit 500).
    """
    s = state.env
    return jnp.where(s.velocity_1 < 0.0, 2, 0).astype(jnp.int32)


register("MountainCar-v0", MountainCarTask)
register("MountainCarContinuous-v0", MountainCarContinuousTask)
register("CartPole-v1", CartPoleTask)
register("Acrobot-v1", AcrobotTask)
