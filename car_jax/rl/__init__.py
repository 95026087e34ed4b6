"""PPO for car-jax: end-to-end jitted training (`make_train`), its config, and the host driver."""

from car_jax.rl.config import FAMILY_DEFAULTS, PPOConfig, PPOHyper
from car_jax.rl.driver import RunResult, train_run
from car_jax.rl.losses import compute_gae, ppo_loss
from car_jax.rl.networks import ActorCritic, make_network
from car_jax.rl.ppo import PPOTrainer, RunnerState, TrainOutput, make_train

__all__ = [
    "FAMILY_DEFAULTS",
    "ActorCritic",
    "PPOConfig",
    "PPOHyper",
    "PPOTrainer",
    "RunResult",
    "RunnerState",
    "TrainOutput",
    "compute_gae",
    "make_network",
    "make_train",
    "ppo_loss",
    "train_run",
]
