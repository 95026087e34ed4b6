"""Bring the fingertip onto the red target under control and hold it still there.

Reference programs written by hand, not model output. Each sub-task bounds the joint speed as
well as the distance: with distance alone the arm learned to whirl ever faster (15-55 rad/s)
and sweep its fingertip through the target, which pays every sub-task but the last. Four
milestones close in on the target as the speed bound halves (10, 6, 3, then 2 cm under 4, 2, 1,
then 0.5 rad/s): with three (6 cm, then 2 cm twice) greedy success after 2M steps was 31% on
two seeds, with these four 61% (benchmarks/results/reacher_spec_probes.json).
"""


def heading_in(obs):
    """The fingertip is within five reach thresholds and the joints move under eight rest speeds."""
    return obs.distance < 5 * REACH_THRESHOLD and norm(obs.joint_velocities) < 8 * REST_SPEED


def approached_under_control(obs):
    """The fingertip is within three reach thresholds and the joints move under four rest speeds."""
    return obs.distance < 3 * REACH_THRESHOLD and norm(obs.joint_velocities) < 4 * REST_SPEED


def closing_in_slowly(obs):
    """The fingertip is within 1.5 reach thresholds and the joints move under two rest speeds."""
    return obs.distance < 1.5 * REACH_THRESHOLD and norm(obs.joint_velocities) < 2 * REST_SPEED


def resting_on_target(obs):
    """The fingertip is on the target and the arm's joints are nearly still."""
    return obs.distance < REACH_THRESHOLD and norm(obs.joint_velocities) < REST_SPEED
