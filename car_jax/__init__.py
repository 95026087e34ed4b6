"""car-jax: Code as Reward (VLM-CaR) in JAX."""

__version__ = "0.1.0"
