"""Unlock the door with the key, then pick up the object in the other room. (Reference programs written by hand, not model output.)"""


def picked_up_key(obs):
    """The agent carries the key."""
    return obs.carried_tile == KEY


def opened_door(obs):
    """The door is open."""
    return contains(obs.tiles, DOOR_OPEN)


def picked_up_object(obs):
    """The agent carries an object that is neither a key nor nothing, with the door open."""
    return contains(obs.tiles, DOOR_OPEN) and obs.carried_tile != KEY and obs.carried_tile != EMPTY
