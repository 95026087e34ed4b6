"""Move the ball blocking the door, unlock the door with the key, then pick up the object in the other room.
Reference programs written by hand, not model output."""


def cleared_door(obs):
    """The cell left of the door (found as the non-wall cell of the wall column) shows only floor or the agent, or the door is unlocked."""
    wall = obs.frame[TILE_PX : (GRID_HEIGHT - 1) * TILE_PX, 5 * TILE_PX : 6 * TILE_PX]
    front = obs.frame[TILE_PX : (GRID_HEIGHT - 1) * TILE_PX, 4 * TILE_PX : 5 * TILE_PX]
    door = ~colour_mask(wall, GREY_RGB)
    r = sum(where(door, front[:, :, 0], 0))
    g = sum(where(door, front[:, :, 1], 0))
    b = sum(where(door, front[:, :, 2], 0))
    free = g < 700 and b < 700 and (r < 700 or 4200 < r < 4500)  # floor: 593 per channel; agent: red 4339
    fills = (
        pixel_count(wall, (115, 0, 0), tol=4)
        + pixel_count(wall, (0, 115, 0), tol=4)
        + pixel_count(wall, (0, 0, 115), tol=4)
        + pixel_count(wall, (50, 18, 88), tol=4)
        + pixel_count(wall, (115, 115, 0), tol=4)
        + pixel_count(wall, (45, 45, 45), tol=4)
    )
    return free or fills < 8


def picked_up_key(obs):
    """The inventory cell shows a key, with the cell left of the door showing only floor or the agent."""
    inventory = obs.frame[INVENTORY_ROW * TILE_PX :, :TILE_PX]
    wall = obs.frame[TILE_PX : (GRID_HEIGHT - 1) * TILE_PX, 5 * TILE_PX : 6 * TILE_PX]
    front = obs.frame[TILE_PX : (GRID_HEIGHT - 1) * TILE_PX, 4 * TILE_PX : 5 * TILE_PX]
    door = ~colour_mask(wall, GREY_RGB)
    r = sum(where(door, front[:, :, 0], 0))
    g = sum(where(door, front[:, :, 1], 0))
    b = sum(where(door, front[:, :, 2], 0))
    free = g < 700 and b < 700 and (r < 700 or 4200 < r < 4500)
    return max(inventory[4, 4]) > 20 and max(inventory[4, 2]) < 10 and free


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
    """The inventory shows an object that is not a key (bright left of centre), no locked door is left, and the room behind the door shows only floor or the agent: the carried object is that room's, not the blocker."""
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
    room = obs.frame[TILE_PX : (GRID_HEIGHT - 1) * TILE_PX, 6 * TILE_PX : (GRID_WIDTH - 1) * TILE_PX]
    cells = (GRID_HEIGHT - 2) * (GRID_WIDTH - 7)
    r = sum(room[:, :, 0])
    g = sum(room[:, :, 1])
    b = sum(room[:, :, 2])
    # floor: 593 per channel and cell; the agent adds red only (4339 in its cell); every object
    # adds to green or blue, or to red by another amount (red key 3355, ball 5537, box 4673).
    bare = g == 593 * cells and b == 593 * cells
    empty_room = bare and (r == 593 * cells or r == 593 * (cells - 1) + 4339)
    return max(inventory[4, 2]) > 20 and fills < 8 and empty_room
