"""Pick up the key, unlock the door and reach the green goal square. (Reference programs written by hand, not model output.)"""


def picked_up_key(obs):
    """The agent carries the yellow key."""
    return obs.carried_tile == KEY and obs.carried_color == YELLOW


def opened_door(obs):
    """The door is open."""
    return contains(obs.tiles, DOOR_OPEN)


def reached_goal(obs):
    """The agent stands on the green goal square."""
    return cell(obs.tiles, obs.agent_pos) == GOAL
