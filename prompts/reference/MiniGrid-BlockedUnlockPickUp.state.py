"""Move the ball blocking the door, unlock the door with the key, then pick up the object in the other room. (Reference programs written by hand, not model output.)"""


def cleared_door(obs):
    """The cell in front of the locked door (on its left) is free floor."""
    door = position_of(obs.tiles, DOOR_LOCKED)
    return cell(obs.tiles, (door[0], door[1] - 1)) == FLOOR or contains(obs.tiles, DOOR_OPEN)


def picked_up_key(obs):
    """The agent carries the key, with the door's front cell cleared."""
    door = position_of(obs.tiles, DOOR_LOCKED)
    return obs.carried_tile == KEY and cell(obs.tiles, (door[0], door[1] - 1)) == FLOOR


def opened_door(obs):
    """The door is open."""
    return contains(obs.tiles, DOOR_OPEN)


def picked_up_object(obs):
    """The agent carries an object that is neither a key nor nothing, with the door open."""
    return contains(obs.tiles, DOOR_OPEN) and obs.carried_tile != KEY and obs.carried_tile != EMPTY
