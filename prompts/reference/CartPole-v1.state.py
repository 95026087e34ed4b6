"""Keep the pole balanced upright on the moving cart for the whole episode.

Reference programs written by hand, not model output.
"""


def balanced_fifth(obs):
    """The pole is still up and the cart on the track after a fifth of the episode."""
    upright = abs(obs.pole_angle) <= ANGLE_THRESHOLD and abs(obs.cart_position) <= X_THRESHOLD
    return upright and obs.time >= MAX_STEPS // 5


def balanced_half(obs):
    """The pole is still up and the cart on the track after half of the episode."""
    upright = abs(obs.pole_angle) <= ANGLE_THRESHOLD and abs(obs.cart_position) <= X_THRESHOLD
    return upright and obs.time >= MAX_STEPS // 2


def balanced_whole_episode(obs):
    """The pole is still up and the cart on the track when the episode's time runs out."""
    upright = abs(obs.pole_angle) <= ANGLE_THRESHOLD and abs(obs.cart_position) <= X_THRESHOLD
    return upright and obs.time >= MAX_STEPS
