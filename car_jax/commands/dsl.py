"""`car-jax dsl`: print the reward-program DSL reference (the text the prompts embed)."""

from __future__ import annotations

import argparse

NAME = "dsl"
HELP = "Print the reward-program DSL reference (markdown, generated from the primitive registry)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `car-jax dsl`."""
    parser.add_argument(
        "--errors", action="store_true", help="also list the error codes the compiler reports"
    )


def run(args: argparse.Namespace) -> int:
    """Print the reference; always succeeds."""
    from car_jax.dsl import reference_markdown

    print(reference_markdown(with_errors=args.errors), end="")
    return 0
