"""Pick up the key, unlock the door and reach the green goal square. (Reference programs written by hand, not model output.)"""


def picked_up_key(obs):
    """The inventory cell shows the yellow key."""
    inventory = obs.frame[INVENTORY_ROW * TILE_PX :, :TILE_PX]
    return present(inventory, YELLOW_RGB, min_pixels=3)


def opened_door(obs):
    """No locked door is left: its dark yellow fill is gone from the grid."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :]
    return pixel_count(grid, (115, 115, 0), tol=8) < 8


def reached_goal(obs):
    """The agent covers part of the green goal square."""
    return pixel_count(obs.frame, GREEN_RGB) < (TILE_PX - 1) * (TILE_PX - 1)
