"""Move the arm's fingertip onto the red target and hold it still there.

Reference programs written by hand, not model output.
"""


def approached_target(obs):
    """The fingertip is close to the target (within 1.5 times the reach threshold)."""
    return obs.distance < 1.5 * REACH_THRESHOLD


def fingertip_on_target(obs):
    """The fingertip is on the target (within the reach threshold)."""
    return obs.distance < REACH_THRESHOLD


def resting_on_target(obs):
    """The fingertip is on the target and the arm's joints are nearly still."""
    return obs.distance < REACH_THRESHOLD and norm(obs.joint_velocities) < REST_SPEED
