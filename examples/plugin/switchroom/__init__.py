"""switchroom: an example car-jax plugin (one DSL primitive, one task). Importing it registers nothing.

Its entry points (see pyproject.toml) name the modules that register: `switchroom.primitives`
(group `car_jax.primitives`) and `switchroom.task` (group `car_jax.tasks`).
"""

__version__ = "0.1.0"
