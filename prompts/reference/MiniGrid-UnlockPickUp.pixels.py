"""Unlock the door with the key, then pick up the object in the other room.
Reference programs written by hand, not model output."""


def picked_up_key(obs):
    """The inventory cell shows a key: a bright shaft in the middle with black beside it, whatever its colour."""
    inventory = obs.frame[INVENTORY_ROW * TILE_PX :, :TILE_PX]
    return max(inventory[4, 4]) > 20 and max(inventory[4, 2]) < 10


def opened_door(obs):
    """No locked door is left in the wall column: the dark fill of a locked door (0.45 x its colour) is gone."""
    wall = obs.frame[TILE_PX : (GRID_HEIGHT - 1) * TILE_PX, 5 * TILE_PX : 6 * TILE_PX]
    fills = (
        pixel_count(wall, (115, 0, 0), tol=4)
        + pixel_count(wall, (0, 115, 0), tol=4)
        + pixel_count(wall, (0, 0, 115), tol=4)
        + pixel_count(wall, (50, 18, 88), tol=4)
        + pixel_count(wall, (115, 115, 0), tol=4)
        + pixel_count(wall, (45, 45, 45), tol=4)
    )
    return fills < 8


def picked_up_object(obs):
    """The inventory shows an object that is not a key (bright left of centre), with no locked door left."""
    inventory = obs.frame[INVENTORY_ROW * TILE_PX :, :TILE_PX]
    wall = obs.frame[TILE_PX : (GRID_HEIGHT - 1) * TILE_PX, 5 * TILE_PX : 6 * TILE_PX]
    fills = (
        pixel_count(wall, (115, 0, 0), tol=4)
        + pixel_count(wall, (0, 115, 0), tol=4)
        + pixel_count(wall, (0, 0, 115), tol=4)
        + pixel_count(wall, (50, 18, 88), tol=4)
        + pixel_count(wall, (115, 115, 0), tol=4)
        + pixel_count(wall, (45, 45, 45), tol=4)
    )
    return max(inventory[4, 2]) > 20 and fills < 8
