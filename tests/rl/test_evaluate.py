"""Evaluation inside the compiled program: fresh episodes, greedy vs stochastic, ground truth."""

import jax
import numpy as np
import pytest
from probe_envs import Chain

from car_jax.rl.config import PPOConfig
from car_jax.rl.ppo import PPOTrainer

CHAIN = PPOConfig(
    num_envs=16,
    num_steps=8,
    total_timesteps=16 * 8 * 30,
    num_minibatches=2,
    update_epochs=4,
    lr=1e-2,
    eval_every=10,
    eval_episodes=16,
)


@pytest.fixture(scope="module")
def chain_runs():
    """The chain probe trained twice from one seed: with evaluation, and with it turned off."""
    with_eval = PPOTrainer(CHAIN, Chain())
    without = PPOTrainer(CHAIN.replace(eval_episodes=0), Chain())
    key = jax.random.key(0)
    return with_eval, jax.jit(with_eval.train)(key), jax.jit(without.train)(key)


def test_greedy_policy_gets_the_known_optimal_success(chain_runs):
    trainer, out, _ = chain_runs
    m = {k: np.asarray(v) for k, v in out.metrics.items()}
    evaluated = np.isfinite(m["eval_greedy_success"])
    # Every eval_every updates and never in between (the last update is a multiple here).
    np.testing.assert_array_equal(np.nonzero(evaluated)[0] + 1, [10, 20, 30])
    # Optimal: always move on; greedy succeeds in every episode, in exactly `length` steps.
    assert m["eval_greedy_success"][-1] == 1.0
    assert m["eval_greedy_length"][-1] == Chain.length
    assert m["eval_greedy_return"][-1] == 1.0
    # The sampling policy succeeds with p(1) ** length: below 1 while it still explores.
    logits, _ = trainer.network.apply(out.params, jax.nn.one_hot(np.arange(4), 4))
    p_all = float(np.prod(jax.nn.softmax(logits)[:, 1]))
    assert m["eval_stochastic_success"][-1] == pytest.approx(p_all, abs=0.3)
    assert m["eval_stochastic_length"][-1] <= Chain.length


def test_evaluation_never_touches_training(chain_runs):
    _, with_eval, without = chain_runs
    assert not any(k.startswith("eval_") for k in without.metrics)
    for name, value in without.metrics.items():
        np.testing.assert_array_equal(with_eval.metrics[name], value, err_msg=name)
    for a, b in zip(
        jax.tree.leaves(with_eval.params), jax.tree.leaves(without.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_evaluation_is_deterministic_for_a_key_and_fresh_per_key(chain_runs):
    trainer, out, _ = chain_runs
    untrained = trainer.init(jax.random.key(1)).params
    evaluate = jax.jit(trainer.evaluate)
    first = evaluate(untrained, jax.random.key(7))
    again = evaluate(untrained, jax.random.key(7))
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    # The untrained sampling policy (p(1) about 1/2) succeeds about 1/16 of the time; over
    # keys the estimates vary, so episodes really are drawn from the key.
    rates = [
        float(evaluate(untrained, jax.random.key(k))["eval_stochastic_success"]) for k in range(6)
    ]
    assert len(set(rates)) > 1 and np.mean(rates) < 0.3
