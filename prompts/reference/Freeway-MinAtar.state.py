"""Guide the chicken across the road through the traffic CROSSINGS_TO_WIN times.

Reference programs written by hand, not model output.
"""


def crossed_half_the_road(obs):
    """The chicken is in the upper half of the road (row 4 or above)."""
    return any(obs.image[0:5, CHICKEN_COL, CHICKEN])


def first_crossing(obs):
    """The chicken has crossed the road once."""
    return obs.score >= 1


def crossed_enough_times(obs):
    """The chicken has crossed the road CROSSINGS_TO_WIN times."""
    return obs.score >= CROSSINGS_TO_WIN
