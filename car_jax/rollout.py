"""Batched rollouts of a Task and the versioned `.npz` trajectory file format.

`collect_rollouts` runs `n` episodes for `horizon` steps in ONE jitted call (`lax.scan` over
steps, `vmap` over episodes). Row `t` of a trajectory holds:

- `inputs[name][:, t]`: the program inputs of state s_t (s_0 is the reset state);
- `actions[:, t]`: the action the policy chose in s_t;
- `reward[:, t]`: the env reward of the transition s_t -> s_{t+1} (0 where none happened);
- `valid[:, t]`: s_t belongs to the episode. The state that ends the episode (terminated or
  truncated) is the last valid row; after it the state is frozen and `valid` is False (no reset).

- `solved[:, t]`: `task.success(s_t)` held in s_t and the row is valid (per-step ground truth).

`success[n]` is True where `task.success` held in some valid state of the episode.

`cells=True` records every sprite-grid input the task declares (`task.sprite_frames(mode)`, e.g.
the MiniGrid `frame`) as its cell ids uint16 [N, T, rows, cols] instead of the drawn frame
(`Trajectories.cell_inputs` names them): 2 bytes per cell instead of px*px*3 (96x smaller for
8-pixel tiles). Programs compiled with the task's sprite sheets read them as they are (lazily,
bit for bit the drawn values); `draw_frames` turns them back into frames, as files hold.

File schema (version 2; version-1 files, without `solved`, still load with `solved=None`), one `.npz` written with `numpy.savez_compressed`, no pickles:

| key | dtype | shape | meaning |
|---|---|---|---|
| `schema_version` | int64 | () | 2 (1 accepted) |
| `task_id` | str | () | registered task id |
| `mode` | str | () | program input mode |
| `input_names` | str | (K,) | names of the input arrays, in spec order |
| `inputs/<name>` | spec dtype | (N, T, *spec shape) | one per input name |
| `actions` | int32 / float32 | (N, T) / (N, T, dim) | discrete / continuous actions |
| `reward` | float32 | (N, T) | env reward |
| `valid` | bool | (N, T) | state belongs to the episode |
| `success` | bool | (N,) | task solved during the episode |
| `solved` | bool | (N, T) | task solved in this row's state (version 2; absent in version 1) |
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from car_jax.errors import UserError
from car_jax.sprite_inputs import observe_cells, task_sprite_frames

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
ROLLOUT_CHUNK = 64  # steps per compiled piece of `collect_rollouts(..., until_done=True)`
EPSILON = 0.25  # share of random actions of the "epsilon-expert" policy (near-miss negatives)

Policy = Callable[[jax.Array, Any, Any], jax.Array]


class Trajectories(struct.PyTreeNode):
    """Program inputs [N, T, ...], actions, env reward, valid [N, T], success [N], solved [N, T].

    `solved` is the per-step ground truth; None for version-1 files that lack it.
    """

    inputs: dict[str, jax.Array]
    actions: jax.Array
    reward: jax.Array
    valid: jax.Array
    success: jax.Array
    solved: jax.Array | None = None
    mode: str = struct.field(pytree_node=False, default="state")
    # Inputs recorded as sprite cell ids [N, T, rows, cols] instead of drawn frames (cells=True).
    cell_inputs: tuple[str, ...] = struct.field(pytree_node=False, default=())

    @property
    def n(self) -> int:
        """Number of episodes."""
        return int(self.valid.shape[0])

    @property
    def horizon(self) -> int:
        """Number of rows (states) per episode."""
        return int(self.valid.shape[1])


def _action_dtype(task: Any) -> str:
    return "int32" if task.action.kind == "discrete" else "float32"


def _action_shape(task: Any) -> tuple[int, ...]:
    return () if task.action.kind == "discrete" else (task.action.dim,)


def _resolve_policy(task: Any, policy: str | Policy) -> Policy:
    if callable(policy):
        return policy
    if policy == "random":
        return lambda key, state, params: task.action.sample(key)
    if policy in ("expert", "epsilon-expert"):
        if task.expert is None:
            raise UserError(
                f"task {task.id!r} has no scripted expert; bring expert trajectories from a file "
                "(see docs/verification.md, 'Bring your own trajectories')"
            )
        return task.expert
    raise UserError(
        f"unknown policy {policy!r}; expected 'expert', 'epsilon-expert', 'random' or a callable"
    )


def _cell_dtype(sheet: Any) -> Any:
    """The smallest unsigned dtype that holds every sprite index of `sheet`."""
    return jnp.uint8 if len(sheet.sprites) <= 256 else jnp.uint16


def _episode_parts(task: Any, policy: str | Policy, mode: str, cells: bool):
    """(start(key) -> carry, body(carry, epsilon) -> (carry, row)) of one episode's scan.

    The carry holds the key the next row splits from, so a rollout scanned in pieces gives the
    same rows as one scanned at once.
    """
    act = _resolve_policy(task, policy)
    mixed = policy == "expert"
    a_dtype = _action_dtype(task)
    sheets = task_sprite_frames(task, mode) if cells else {}

    def observe(state):
        if not sheets:
            return task.observe(state, mode)
        # NOTE: under jit the drawn frames `observe` also computes are unused and compiled away.
        obs = observe_cells(task, state, mode)
        return {k: v.astype(_cell_dtype(sheets[k])) if k in sheets else v for k, v in obs.items()}

    def start(key: jax.Array):
        key, k_reset = jax.random.split(key)
        _, state0 = task.reset(k_reset, task.params)
        return (state0, jnp.bool_(False), jnp.bool_(False), key)

    def body(carry, epsilon: jax.Array):
        state, terminal, ended, key = carry
        key, k_act, k_step = jax.random.split(key, 3)
        valid = ~ended
        obs = observe(state)
        succ = task.success(state) & valid
        action = jnp.asarray(act(k_act, state, task.params)).astype(a_dtype)
        if mixed:
            k_coin, k_rand = jax.random.split(jax.random.fold_in(k_act, 1))
            rand = jnp.asarray(task.action.sample(k_rand)).astype(a_dtype)
            action = jnp.where(jax.random.uniform(k_coin) < epsilon, rand, action)
        _, stepped, reward, term, trunc, _ = task.step(k_step, state, action, task.params)
        moves = ~terminal
        # NOTE: jnp.where over the whole state pytree freezes it once the episode ended.
        new_state = jax.tree.map(lambda a, b: jnp.where(moves, a, b), stepped, state)
        reward = jnp.where(moves, jnp.asarray(reward, jnp.float32), 0.0)
        new_terminal = terminal | (moves & (term | trunc))
        row = (obs, action, reward, valid, succ)
        return (new_state, new_terminal, terminal, key), row

    return start, body, tuple(sheets)


def _scan(body, carry, epsilon, length: int):
    """`length` rows of one episode from `carry`: (carry, rows)."""
    return jax.lax.scan(lambda c, _: body(c, epsilon), carry, None, length=length)


def _trajectories(rows, mode: str, cell_inputs: tuple[str, ...]) -> Trajectories:
    obs, actions, reward, valid, solved = rows
    return Trajectories(obs, actions, reward, valid, solved.any(axis=1), solved, mode=mode,
                        cell_inputs=cell_inputs)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _build(task: Any, policy: str | Policy, n: int, horizon: int, mode: str, cells: bool = False):
    # NOTE: task, policy, n, horizon, mode and cells are static: one compiled program per combination,
    # cached here so repeated calls (new keys) do not recompile. The expert and the
    # epsilon-expert share one program: `epsilon` (the share of random actions) is traced.
    start, body, cell_inputs = _episode_parts(task, policy, mode, cells)

    def episode(key: jax.Array, epsilon: jax.Array):
        return _scan(body, start(key), epsilon, horizon)[1]

    @jax.jit
    def run(key: jax.Array, epsilon: jax.Array) -> Trajectories:
        keys = jax.random.split(key, n)
        return _trajectories(jax.vmap(episode, (0, None))(keys, epsilon), mode, cell_inputs)

    return run


@functools.lru_cache(maxsize=64)
def _build_chunked(task: Any, policy: str | Policy, n: int, chunk: int, mode: str, cells: bool):
    """(start(key) -> carries, advance(carries, epsilon) -> (carries, rows of `chunk` steps))."""
    start, body, cell_inputs = _episode_parts(task, policy, mode, cells)

    @jax.jit
    def begin(key: jax.Array):
        return jax.vmap(start)(jax.random.split(key, n))

    @jax.jit
    def advance(carries, epsilon: jax.Array):
        return jax.vmap(lambda c: _scan(body, c, epsilon, chunk), (0,))(carries)

    return begin, advance, cell_inputs


def collect_rollouts(
    task: Any,
    policy: str | Policy,
    key: jax.Array,
    n: int,
    horizon: int | None = None,
    mode: str = "state",
    *,
    cells: bool = False,
    until_done: bool = False,
    chunk: int = ROLLOUT_CHUNK,
) -> Trajectories:
    """Run `n` episodes of `horizon` steps (default: the task's time limit + 1) in one jitted call.

    With `until_done`, the steps are scanned `chunk` at a time and collection stops after the
    first chunk at whose end every episode has ended: the same rows as the full rollout (same
    key), without the trailing rows where no episode is valid. An expert that solves
    DoorKey-16x16 in ~50 steps then costs one 64-step chunk, not its 2,560-step time limit.

    Args:
        task: a registered Task (`envs.make(id)`).
        policy: "expert", "random", "epsilon-expert" (the expert with a share `EPSILON` of random
            actions) or a jittable callable(key, state, params) -> action.
        key: a JAX random key.
        n: number of episodes (rows).
        horizon: number of states per episode; `task.max_steps + 1` covers a whole episode.
        mode: the program input mode recorded in `inputs`.
        cells: record the task's sprite-grid inputs as cell ids, not drawn frames (see the
            module docstring); no effect where the task declares none for `mode`.
        until_done: stop at the first `chunk` boundary where every episode has ended; the
            trajectories then hold a multiple of `chunk` rows, or `horizon` if that is fewer.
        chunk: steps per compiled piece under `until_done`.
    """
    if n < 1:
        raise UserError(f"number of episodes must be >= 1, got {n}")
    horizon = task.max_steps + 1 if horizon is None else int(horizon)
    if horizon < 1:
        raise UserError(f"horizon must be >= 1, got {horizon}")
    if mode not in task.modes:
        raise UserError(
            f"task {task.id!r} has no input mode {mode!r}; its modes are {', '.join(task.modes)}"
        )
    epsilon = EPSILON if policy == "epsilon-expert" else 0.0
    if policy == "epsilon-expert":
        policy = "expert"
    cells = bool(cells and task_sprite_frames(task, mode))
    if not until_done:
        return _build(task, policy, int(n), horizon, mode, cells)(key, jnp.float32(epsilon))
    if chunk < 1:
        raise UserError(f"chunk must be >= 1 step, got {chunk}")
    begin, advance, cell_inputs = _build_chunked(
        task, policy, int(n), min(int(chunk), horizon), mode, cells
    )
    carries, pieces, rows = begin(key), [], 0
    while rows < horizon:
        carries, piece = advance(carries, jnp.float32(epsilon))
        pieces.append(piece)
        rows += piece[3].shape[1]
        if bool(jnp.all(carries[2])):  # every episode ended: no later row is valid
            break
    joined = jax.tree.map(lambda *a: jnp.concatenate(a, axis=1)[:, :horizon], *pieces)
    return _trajectories(joined, mode, cell_inputs)


def draw_frames(traj: Trajectories, task: Any) -> Trajectories:
    """`traj` with every input recorded as cell ids drawn as its frame (what files hold)."""
    if not traj.cell_inputs:
        return traj
    sheets = task_sprite_frames(task, traj.mode)
    inputs = dict(traj.inputs)
    for name in traj.cell_inputs:
        draw = jax.jit(jax.vmap(jax.vmap(sheets[name].draw)))
        inputs[name] = draw(jnp.asarray(inputs[name], jnp.int32))
    return traj.replace(inputs=inputs, cell_inputs=())


# ------------------------------------------------------------------------------------------------
# Files


def save_trajectories(path: str | os.PathLike, traj: Trajectories, task_id: str) -> None:
    """Write `traj` as a schema-versioned `.npz` (see the module docstring for the schema)."""
    if traj.cell_inputs:
        raise UserError(
            f"these trajectories hold cell ids for {', '.join(traj.cell_inputs)}, not drawn "
            "frames; files hold frames: save `car_jax.rollout.draw_frames(traj, task)` instead"
        )
    names = list(traj.inputs)
    arrays: dict[str, np.ndarray] = {
        "schema_version": np.asarray(SCHEMA_VERSION, np.int64),
        "task_id": np.asarray(task_id),
        "mode": np.asarray(traj.mode),
        "input_names": np.asarray(names, dtype=np.str_),
        "actions": np.asarray(traj.actions),
        "reward": np.asarray(traj.reward),
        "valid": np.asarray(traj.valid),
        "success": np.asarray(traj.success),
    }
    if traj.solved is not None:
        arrays["solved"] = np.asarray(traj.solved)
    else:
        arrays["schema_version"] = np.asarray(1, np.int64)  # no per-step truth: a version-1 file
    for name in names:
        arrays[f"inputs/{name}"] = np.asarray(traj.inputs[name])
    # NOTE: np.savez appends ".npz" to names without it; write through a file object instead.
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _fail(path: Any, what: str) -> UserError:
    return UserError(f"trajectory file {str(path)!r}: {what}")


def _check_array(
    path: Any,
    key: str,
    arr: np.ndarray,
    shape: tuple[int, ...],
    dtype: str,
    low: float | None = None,
    high: float | None = None,
) -> None:
    if arr.dtype != np.dtype(dtype):
        raise _fail(
            path, f"array {key!r} has dtype {arr.dtype}, expected {dtype} (nothing is cast)"
        )
    if tuple(arr.shape) != tuple(shape):
        raise _fail(path, f"array {key!r} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if arr.size and (low is not None or high is not None):
        ok = np.ones(arr.shape, bool)
        if low is not None:
            ok &= arr >= low
        if high is not None:
            ok &= arr <= high
        if not ok.all():
            bad = np.argwhere(~ok)[0]
            raise _fail(
                path,
                f"array {key!r} has value {arr[tuple(bad)]!r} at index {tuple(int(i) for i in bad)}, "
                f"outside the known range [{low}, {high}]",
            )


def _scalar_str(path: Any, data: Any, key: str) -> str:
    arr = data[key]
    if arr.shape != () or arr.dtype.kind != "U":
        raise _fail(
            path, f"array {key!r} must be a string scalar, got dtype {arr.dtype} shape {arr.shape}"
        )
    return str(arr)


def load_trajectories(path: str | os.PathLike, task: Any, mode: str = "state") -> Trajectories:
    """Read a trajectory `.npz` and check every array against `task.inputs(mode)`; refuse mismatches."""
    if not os.path.exists(path):
        raise UserError(f"trajectory file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise _fail(
            path, "is not an .npz archive (expected a zip of .npy arrays written by numpy.savez)"
        )
    if mode not in task.modes:
        raise UserError(
            f"task {task.id!r} has no input mode {mode!r}; its modes are {', '.join(task.modes)}"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except ValueError as err:
        raise _fail(path, f"holds an array that needs pickle or is unreadable ({err})") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise _fail(path, f"is not a readable .npz archive ({err})") from None

    required = [
        "schema_version",
        "task_id",
        "mode",
        "input_names",
        "actions",
        "reward",
        "valid",
        "success",
    ]
    for key in required:
        if key not in data:
            raise _fail(
                path,
                f"missing array {key!r} (schema version {SCHEMA_VERSION} requires {', '.join(required)})",
            )

    version = data["schema_version"]
    if (
        version.shape != ()
        or version.dtype.kind not in "iu"
        or int(version) not in READABLE_VERSIONS
    ):
        raise _fail(
            path,
            f"array 'schema_version' is {version!r}, expected the integer {SCHEMA_VERSION} "
            f"(or 1, without per-step 'solved')",
        )
    version = int(version)
    if version >= 2 and "solved" not in data:
        raise _fail(
            path, "missing array 'solved' (schema version 2 requires it; or write version 1)"
        )
    if version == 1 and "solved" in data:
        raise _fail(path, "has an array 'solved' but says schema version 1; write 2")
    file_task = _scalar_str(path, data, "task_id")
    if file_task != task.id:
        raise _fail(path, f"array 'task_id' is {file_task!r}, expected {task.id!r}")
    file_mode = _scalar_str(path, data, "mode")
    if file_mode != mode:
        raise _fail(path, f"array 'mode' is {file_mode!r}, expected {mode!r}")

    spec = task.inputs(mode)
    names_arr = data["input_names"]
    if names_arr.ndim != 1 or (names_arr.size and names_arr.dtype.kind != "U"):
        raise _fail(
            path,
            f"array 'input_names' must be a 1-D string array, got dtype {names_arr.dtype} shape {names_arr.shape}",
        )
    names = [str(x) for x in names_arr]
    if sorted(names) != sorted(spec):
        missing = sorted(set(spec) - set(names))
        extra = sorted(set(names) - set(spec))
        raise _fail(
            path,
            f"array 'input_names' lists {names}, expected the inputs of {task.id!r} mode {mode!r}: "
            f"{list(spec)} (missing {missing}, unexpected {extra})",
        )
    stray = sorted(k for k in data if k.startswith("inputs/") and k[len("inputs/") :] not in spec)
    if stray:
        raise _fail(
            path, f"unexpected arrays {stray}; the inputs of mode {mode!r} are {list(spec)}"
        )

    valid = data["valid"]
    if valid.ndim != 2:
        raise _fail(path, f"array 'valid' has shape {valid.shape}, expected (N, T)")
    n, t = valid.shape
    _check_array(path, "valid", valid, (n, t), "bool")
    _check_array(path, "success", data["success"], (n,), "bool")
    _check_array(path, "reward", data["reward"], (n, t), "float32")
    solved = None
    if version >= 2:
        _check_array(path, "solved", data["solved"], (n, t), "bool")
        solved = data["solved"] & valid
        if not np.array_equal(solved.any(axis=1), data["success"]):
            bad = int(np.flatnonzero(solved.any(axis=1) != data["success"])[0])
            raise _fail(
                path,
                f"row {bad}: 'success' is {bool(data['success'][bad])} but 'solved' is "
                f"{'True on some' if solved[bad].any() else 'False on every'} valid step; "
                "success must be True exactly where the task is solved on some valid step",
            )
        solved = jnp.asarray(solved)
    a = task.action
    if a.kind == "discrete":
        _check_array(path, "actions", data["actions"], (n, t), "int32", 0, a.n - 1)
    else:
        _check_array(path, "actions", data["actions"], (n, t, a.dim), "float32", a.low, a.high)

    inputs = {}
    for name, field in spec.items():
        key = f"inputs/{name}"
        if key not in data:
            raise _fail(path, f"missing array {key!r} (input {name!r}: {field.doc})")
        _check_array(path, key, data[key], (n, t, *field.shape), field.dtype, field.low, field.high)
        inputs[name] = jnp.asarray(data[key])

    return Trajectories(
        inputs=inputs,
        actions=jnp.asarray(data["actions"]),
        reward=jnp.asarray(data["reward"]),
        valid=jnp.asarray(valid),
        success=jnp.asarray(data["success"]),
        solved=solved,
        mode=mode,
    )
