"""Reach the green goal square. (Reference programs written by hand, not model output.)"""


def reached_goal(obs):
    """The agent stands on the green goal square."""
    return cell(obs.tiles, obs.agent_pos) == GOAL
