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
    """The agent carries a non-key object, the door is open and the room behind it holds no object: the carried one is that room's object, not the blocking ball."""
    room = obs.tiles[:, GRID_WIDTH // 2 + 1 :]
    empty_room = all((room == FLOOR) | (room == WALL))
    carries = obs.carried_tile != KEY and obs.carried_tile != EMPTY
    return contains(obs.tiles, DOOR_OPEN) and carries and empty_room
