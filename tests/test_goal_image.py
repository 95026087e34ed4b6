"""The goal image shows the layout of the initial image: the expert's run from that very reset."""

import jax
import numpy as np

import envs


def test_goal_state_keeps_the_initial_layout():
    task = envs.make("MiniGrid-DoorKey-5x5")
    consts = task.constants("state")
    walls = []
    for seed in range(4):
        key = jax.random.key(seed)
        start = task.observe(task.initial_state(key), "state")
        goal_state = task.goal_state(key)
        goal = task.observe(goal_state, "state")
        assert bool(task.success(goal_state))
        start_walls = np.asarray(start["tiles"]) == consts["WALL"]
        # The walls (the dividing wall moves with the layout) and the goal square stay put.
        np.testing.assert_array_equal(start_walls, np.asarray(goal["tiles"]) == consts["WALL"])
        np.testing.assert_array_equal(
            np.asarray(start["tiles"]) == consts["GOAL"],
            np.asarray(goal["tiles"]) == consts["GOAL"],
        )
        walls.append(start_walls)
    # The check can fail: other resets do give other layouts.
    assert any(not np.array_equal(walls[0], w) for w in walls[1:])
