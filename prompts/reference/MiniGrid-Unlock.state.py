"""Pick up the key and open the locked door. (Reference programs written by hand, not model output.)"""


def picked_up_key(obs):
    """The agent carries the key."""
    return obs.carried_tile == KEY


def opened_door(obs):
    """The door is open."""
    return contains(obs.tiles, DOOR_OPEN)
