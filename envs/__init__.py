"""Environment tasks behind the Task contract (see envs/base.py). Never imports car_jax."""

from envs.base import ActionSpace, InputField, Task, TaskError
from envs.registry import make, register, registered

# Family modules register their tasks on import; each is one module.
# (Family imports are added here as they land.)
# isort: split
import envs.brax_tasks  # noqa: E402,F401  (reacher, pusher)
import envs.classic  # noqa: E402,F401  (MountainCar, CartPole, Acrobot)
import envs.minatar  # noqa: E402,F401  (Breakout-MinAtar, Freeway-MinAtar)
import envs.minigrid  # noqa: E402,F401  (DoorKey, Unlock, UnlockPickUp, BlockedUnlockPickUp, Empty)

__all__ = ["ActionSpace", "InputField", "Task", "TaskError", "make", "register", "registered"]
