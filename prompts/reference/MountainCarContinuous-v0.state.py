"""Drive the underpowered car (continuous force) up the right hill to the flag by swinging back and forth.

Reference programs written by hand, not model output.
"""


def swung_up_left_slope(obs):
    """The car has swung back high up the left slope to gain momentum."""
    return obs.position < -0.9


def gained_speed(obs):
    """The car rushes rightwards at high speed."""
    return obs.velocity > 0.04


def reached_flag(obs):
    """The car has reached the flag on top of the right hill."""
    return obs.position >= GOAL_POSITION
