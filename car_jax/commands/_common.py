"""Helpers shared by the CLI commands: tasks, specs and modes with clear errors."""

from __future__ import annotations

from pathlib import Path

from car_jax.errors import UserError


def load_task(task_id: str):
    """`envs.make(task_id)`, with an unknown id turned into a UserError."""
    import envs

    try:
        return envs.make(task_id)
    except envs.TaskError as err:
        raise UserError(str(err)) from None


def resolve_mode(task, mode: str | None) -> str:
    """The requested input mode, or the task's first one; refuse a mode the task lacks."""
    if mode is None:
        return task.modes[0]
    if mode not in task.modes:
        raise UserError(
            f"task {task.id!r} has no input mode {mode!r}; its modes: {', '.join(task.modes)}"
        )
    return mode


def load_spec(path: str | Path):
    """Read a RewardSpec file; a missing file or a file that does not parse is a UserError."""
    from car_jax.dsl import DSLCompileError
    from car_jax.spec import RewardSpec

    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {str(path)!r} does not exist")
    try:
        return RewardSpec.load(path)
    except DSLCompileError as err:
        lines = "\n  ".join(str(e) for e in err.errors)
        raise UserError(f"spec file {str(path)!r} cannot be read:\n  {lines}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise UserError(f"spec file {str(path)!r} cannot be read: {err}") from None


def compile_for(spec, task, mode: str):
    """Compile `spec` against `task`'s inputs of `mode`; refused programs become a UserError."""
    from car_jax.dsl import DSLCompileError
    from car_jax.spec import compile_spec
    from car_jax.sprite_inputs import task_sprite_frames

    try:
        # With the task's sprite tables the programs also read cell ids (lazy frames, no drawing).
        sheets = task_sprite_frames(task, mode)
        return compile_spec(spec, task.inputs(mode), task.constants(mode), sprite_frames=sheets)
    except DSLCompileError as err:
        lines = "\n  ".join(str(e) for e in err.errors)
        raise UserError(
            f"{len(err.errors)} error(s) compiling the spec for {task.id} ({mode} mode):\n  {lines}",
            exit_code=1,
        ) from None


def out_dir(args, prefix: str) -> Path:
    """--out, or runs/<prefix>-<timestamp>; --resume needs an existing --out."""
    import time

    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR, the run directory to continue")
    if args.out:
        path = Path(args.out)
        if args.resume and not path.is_dir():
            raise UserError(f"--resume: run directory {str(path)!r} does not exist")
        return path
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def add_plugin_option(p) -> None:
    """`--plugin MODULE` (repeatable), which every command takes; see car_jax/plugins.py."""
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE as a car-jax plugin (its primitives and tasks); repeatable. "
        "Installed plugins (entry points) and $CAR_JAX_PLUGINS load without it",
    )


def load_plugins_for(args) -> None:
    """Load every plugin before a command runs; a broken one is skipped with one line on stderr."""
    from car_jax.plugins import load_plugins

    load_plugins(getattr(args, "plugin", None) or ())
