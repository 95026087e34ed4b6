"""Pick up the key and open the locked door. (Reference programs written by hand, not model output.)"""


def picked_up_key(obs):
    """The inventory cell shows something (the key) on its black background."""
    inventory = obs.frame[INVENTORY_ROW * TILE_PX :, :TILE_PX]
    return max(inventory) > 80  # brighter than the grid lines (61), even for a grey key (100)


def opened_door(obs):
    """No locked door is left: the dark fill of a locked door (0.45 x its colour) is gone."""
    grid = obs.frame[: INVENTORY_ROW * TILE_PX, :]
    fills = (
        pixel_count(grid, (115, 0, 0), tol=4)
        + pixel_count(grid, (0, 115, 0), tol=4)
        + pixel_count(grid, (0, 0, 115), tol=4)
        + pixel_count(grid, (50, 18, 88), tol=4)
        + pixel_count(grid, (115, 115, 0), tol=4)
        + pixel_count(grid, (45, 45, 45), tol=4)
    )
    return fills < 8
