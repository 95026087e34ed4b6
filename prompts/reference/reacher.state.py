"""Bring the fingertip onto the red target under control and hold it still there.

Reference programs written by hand, not model output. Each sub-task bounds the joint speed as
well as the distance: with distance alone the arm learned to whirl ever faster (15-55 rad/s)
and sweep its fingertip through the target, which pays every sub-task but the last.
"""


def approached_under_control(obs):
    """The fingertip is within three reach thresholds and the joints move under four rest speeds."""
    return obs.distance < 3 * REACH_THRESHOLD and norm(obs.joint_velocities) < 4 * REST_SPEED


def on_target_and_slowing(obs):
    """The fingertip is on the target and the joints move under two rest speeds."""
    return obs.distance < REACH_THRESHOLD and norm(obs.joint_velocities) < 2 * REST_SPEED


def resting_on_target(obs):
    """The fingertip is on the target and the arm's joints are nearly still."""
    return obs.distance < REACH_THRESHOLD and norm(obs.joint_velocities) < REST_SPEED
