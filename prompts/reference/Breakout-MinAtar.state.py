"""Keep the ball in play with the paddle and break BRICKS_TO_WIN bricks.

Reference programs written by hand, not model output.
"""


def broke_first_bricks(obs):
    """At least five bricks of the wall are gone from the image."""
    return count(obs.image[:, :, BRICK]) <= BRICKS_PER_WALL - 5


def broke_two_thirds_of_wall(obs):
    """At most a third of the wall's bricks are still standing."""
    return obs.bricks_left <= BRICKS_PER_WALL // 3


def broke_enough_bricks(obs):
    """BRICKS_TO_WIN bricks have been broken in this episode."""
    return obs.score >= BRICKS_TO_WIN
