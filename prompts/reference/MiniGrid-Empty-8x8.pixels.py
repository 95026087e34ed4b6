"""Reach the green goal square. (Reference programs written by hand, not model output.)"""


def reached_goal(obs):
    """The agent covers part of the green goal square."""
    return pixel_count(obs.frame, GREEN_RGB) < (TILE_PX - 1) * (TILE_PX - 1)
