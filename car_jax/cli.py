"""The `car-jax` command line: one subcommand per module in `car_jax/commands/`.

A command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from car_jax.commands._common import add_plugin_option, load_plugins_for
from car_jax.compile_cache import enable_compile_cache
from car_jax.errors import UserError


def _command_modules():
    import car_jax.commands as pkg

    mods = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"car_jax.commands.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="car-jax",
        description="Code as Reward in JAX: generate, verify and train with reward programs.",
        epilog="Compiled programs are cached in $CAR_JAX_CACHE/xla (default ~/.cache/car-jax/xla), "
        "so a repeated run skips most compiling; CAR_JAX_COMPILE_CACHE=DIR moves it, "
        "CAR_JAX_COMPILE_CACHE=off turns it off.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        add_plugin_option(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        enable_compile_cache()
        load_plugins_for(args)  # entry points, $CAR_JAX_PLUGINS, --plugin: before any command
        code = args._run(args)
    except UserError as err:
        print(f"car-jax {args.command}: error: {err}", file=sys.stderr)
        code = err.exit_code
    except KeyboardInterrupt:
        print(f"car-jax {args.command}: interrupted", file=sys.stderr)
        code = 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
