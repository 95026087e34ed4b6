"""Subcommands of the `car-jax` CLI, one module each (see `car_jax.cli`)."""
