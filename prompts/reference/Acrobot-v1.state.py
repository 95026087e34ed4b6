"""Swing the two-link chain so that its free tip rises above the goal line.

Reference programs written by hand, not model output.
"""


def elbow_above_pivot(obs):
    """The first link has swung above horizontal: the elbow is higher than the pivot."""
    return obs.elbow_height > 0.0


def tip_above_pivot(obs):
    """The free tip of the chain is higher than the pivot."""
    return obs.tip_height > 0.0


def tip_above_goal_line(obs):
    """The free tip is above the goal line."""
    return obs.tip_height > GOAL_HEIGHT
