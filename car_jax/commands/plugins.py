"""`car-jax plugins`: list the plugins found (entry points, $CAR_JAX_PLUGINS, --plugin) and what each registered."""

from __future__ import annotations

import argparse

NAME = "plugins"
HELP = "list the plugins found (entry points, $CAR_JAX_PLUGINS, --plugin) and what each registered"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own (every command takes --plugin)."""


def run(args: argparse.Namespace) -> int:
    """Print one line per plugin source; skipped ones say why (they were also named on stderr)."""
    from car_jax.plugins import ENV_VAR, GROUPS, load_plugins

    # Already loaded by the CLI before this runs: this returns the recorded results.
    results = load_plugins(getattr(args, "plugin", None) or (), quiet=True)
    if not results:
        print(
            f"no plugins: no installed package declares entry points in {' or '.join(GROUPS)}, "
            f"${ENV_VAR} is empty and no --plugin was given"
        )
        return 0
    for r in results:
        print(r.message().removeprefix("car-jax: "))
    return 0
